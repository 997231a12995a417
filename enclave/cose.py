"""COSE_Sign1 (RFC 9052) as Nitro attestation documents use it: decode, verify.

A document is a CBOR array `[protected, unprotected, payload, signature]`,
tagged with CBOR tag 18 or untagged. The protected header is a serialized
CBOR map whose key 1 (alg) must be -35 (ES384). The sizes below come from
docs/attestation_process.md in github.com/aws/aws-nitro-enclaves-nsm-api.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
ALG_ES384 = -35
# ES384 signatures are r || s, each a 48-byte big-endian integer (RFC 9053).
# NOTE: attestation_process.md writes the signature as bstr .size (32/48/64),
# which no ES384 signature fits; AWS documents carry 96 bytes.
ES384_SIGNATURE_SIZE = 96
# The payload is bstr .size (1..16384) in attestation_process.md.
MAX_PAYLOAD_SIZE = 16384
# Room for the array, the headers and the signature around the payload.
MAX_DOCUMENT_SIZE = MAX_PAYLOAD_SIZE + 1024


class FormatError(ValueError):
    """A malformed document; the message names the field and what is wrong."""


@dataclass(frozen=True)
class CoseSign1:
    """A decoded COSE_Sign1 message; `protected` keeps the signed bytes."""

    protected: bytes
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool


def decode_cbor(data: bytes, *, what: str) -> Any:
    """Decode one CBOR item that must span all of `data`."""
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, RecursionError, ValueError, TypeError) as error:
        raise FormatError(f"{what} is not valid CBOR: {error}") from None
    if stream.tell() != len(data):
        extra = len(data) - stream.tell()
        raise FormatError(f"{what} has {extra} bytes after its CBOR item")
    return item


def decode_sign1(data: bytes) -> CoseSign1:
    """Decode a tagged or untagged COSE_Sign1 and check its ES384 header."""
    if len(data) > MAX_DOCUMENT_SIZE:
        raise FormatError(
            f"document is {len(data)} bytes, above the maximum {MAX_DOCUMENT_SIZE}"
        )
    item = decode_cbor(data, what="document")
    tagged = isinstance(item, cbor2.CBORTag)
    if tagged:
        if item.tag != COSE_SIGN1_TAG:
            raise FormatError(
                f"document has CBOR tag {item.tag}, expected {COSE_SIGN1_TAG} "
                "(COSE_Sign1)"
            )
        item = item.value

    # cbor2 decodes arrays inside a tag as tuples and maps as frozendicts.
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise FormatError(
            f"document is not a COSE_Sign1 array of 4 items (got {describe_type(item)})"
        )
    protected, unprotected, payload, signature = item
    check_protected_header(protected)
    if not isinstance(unprotected, Mapping):
        raise FormatError(
            f"unprotected header is {describe_type(unprotected)}, expected a map"
        )

    if not isinstance(payload, bytes):
        raise FormatError(f"payload is {describe_type(payload)}, expected bytes")
    if not 1 <= len(payload) <= MAX_PAYLOAD_SIZE:
        raise FormatError(
            f"payload is {len(payload)} bytes, expected 1 to {MAX_PAYLOAD_SIZE}"
        )

    if not isinstance(signature, bytes):
        raise FormatError(f"signature is {describe_type(signature)}, expected bytes")
    if len(signature) != ES384_SIGNATURE_SIZE:
        raise FormatError(
            f"signature is {len(signature)} bytes, expected {ES384_SIGNATURE_SIZE} "
            "for ES384"
        )
    return CoseSign1(
        protected=protected,
        unprotected=unprotected,
        payload=payload,
        signature=signature,
        tagged=tagged,
    )


def check_protected_header(protected: object) -> None:
    """Check that the protected header is a serialized CBOR map with alg ES384."""
    if not isinstance(protected, bytes):
        raise FormatError(
            f"protected header is {describe_type(protected)}, expected bytes"
        )
    # An empty byte string stands for an empty map (RFC 9052 section 3).
    header = decode_cbor(protected, what="protected header") if protected else {}
    if not isinstance(header, Mapping):
        raise FormatError(
            f"protected header is {describe_type(header)}, expected a map"
        )
    if HEADER_ALG not in header:
        raise FormatError("protected header has no alg (key 1), expected ES384")
    alg = header[HEADER_ALG]
    if type(alg) is not int or alg != ALG_ES384:
        raise FormatError(f"protected header alg is {alg!r}, expected -35 (ES384)")


def sig_structure(message: CoseSign1) -> bytes:
    """Return the bytes ES384 signs: the COSE Sig_structure for Signature1."""
    return cbor2.dumps(["Signature1", message.protected, b"", message.payload])


def verify_es384(message: CoseSign1, public_key: ec.EllipticCurvePublicKey) -> None:
    """Verify the message's signature; raise InvalidSignature if it fails."""
    half = ES384_SIGNATURE_SIZE // 2
    r = int.from_bytes(message.signature[:half], "big")
    s = int.from_bytes(message.signature[half:], "big")
    der_signature = encode_dss_signature(r, s)
    public_key.verify(der_signature, sig_structure(message), ec.ECDSA(hashes.SHA384()))


def describe_type(value: object) -> str:
    """Name a decoded CBOR value's type in CBOR terms, for error messages."""
    if isinstance(value, cbor2.CBORTag):
        return f"CBOR tag {value.tag}"
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a text string",
        bytes: "a byte string",
        type(None): "null",
    }
    if isinstance(value, list | tuple):
        return f"an array of {len(value)} items"
    if isinstance(value, Mapping):
        return "a map"
    return names.get(type(value), type(value).__name__)
