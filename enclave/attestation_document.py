"""The Nitro attestation document: the CBOR map inside the COSE_Sign1 payload.

Fields, types and limits follow docs/attestation_process.md in
github.com/aws/aws-nitro-enclaves-nsm-api (sections 2.2 and 3.2.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from enclave.cose import FormatError, decode_cbor, describe_type

REQUIRED_FIELDS = (
    "module_id",
    "digest",
    "timestamp",
    "pcrs",
    "certificate",
    "cabundle",
)
OPTIONAL_FIELDS = ("public_key", "user_data", "nonce")
DIGEST = "SHA384"
PCR_COUNT_MAX = 32
PCR_INDEX_MAX = 31
PCR_SIZES = (32, 48, 64)
CERTIFICATE_SIZE_MAX = 1024
# NOTE: the CDDL in section 2.2 allows 0..1024 bytes for public_key,
# user_data and nonce, while section 3.2.2.2 lists 1..1024 for public_key and
# 0..512 for user_data and nonce. This parser takes the CDDL, the looser one.
OPTIONAL_FIELD_SIZE_MAX = 1024
# The timestamp is `uint .size 8`: milliseconds since the Unix epoch. Values
# past 9999-12-31T23:59:59.999Z fit the CBOR type but not a Python datetime.
TIMESTAMP_MAX = 253_402_300_799_999


@dataclass(frozen=True)
class AttestationDocument:
    """The fields of a parsed attestation document; certificates are DER."""

    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None = None
    user_data: bytes | None = None
    nonce: bytes | None = None

    @property
    def timestamp(self) -> datetime:
        """The time the Nitro hypervisor made the document, in UTC."""
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            milliseconds=self.timestamp_ms
        )


def parse_document(payload: bytes) -> AttestationDocument:
    """Parse and check the CBOR payload; raise FormatError naming the field."""
    fields = decode_cbor(payload, what="payload")
    if not isinstance(fields, Mapping):
        raise FormatError(f"payload is {describe_type(fields)}, expected a map")
    unknown = [key for key in fields if key not in REQUIRED_FIELDS + OPTIONAL_FIELDS]
    if unknown:
        raise FormatError(f"payload has unknown field {unknown[0]!r}")
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise FormatError(f"payload has no {name}")
    return AttestationDocument(
        module_id=parse_module_id(fields["module_id"]),
        digest=parse_digest(fields["digest"]),
        timestamp_ms=parse_timestamp(fields["timestamp"]),
        pcrs=parse_pcrs(fields["pcrs"]),
        certificate=parse_certificate(fields["certificate"], what="certificate"),
        cabundle=parse_cabundle(fields["cabundle"]),
        public_key=parse_optional_bytes(fields, "public_key"),
        user_data=parse_optional_bytes(fields, "user_data"),
        nonce=parse_optional_bytes(fields, "nonce"),
    )


def parse_module_id(value: Any) -> str:
    if not isinstance(value, str):
        raise FormatError(f"module_id is {describe_type(value)}, expected text")
    if not value:
        raise FormatError("module_id is empty")
    return value


def parse_digest(value: Any) -> str:
    if not isinstance(value, str):
        raise FormatError(f"digest is {describe_type(value)}, expected text")
    if value != DIGEST:
        raise FormatError(f"digest is {value!r}, expected {DIGEST!r}")
    return value


def parse_timestamp(value: Any) -> int:
    if not is_integer(value):
        raise FormatError(f"timestamp is {describe_type(value)}, expected an integer")
    if not 0 < value <= TIMESTAMP_MAX:
        raise FormatError(f"timestamp is {value}, expected 1 to {TIMESTAMP_MAX}")
    return int(value)


def parse_pcrs(value: Any) -> dict[int, bytes]:
    if not isinstance(value, Mapping):
        raise FormatError(f"pcrs is {describe_type(value)}, expected a map")
    if not 1 <= len(value) <= PCR_COUNT_MAX:
        raise FormatError(
            f"pcrs has {len(value)} entries, expected 1 to {PCR_COUNT_MAX}"
        )
    pcrs: dict[int, bytes] = {}
    for index, content in value.items():
        if not is_integer(index):
            raise FormatError(
                f"pcrs key {index!r} is {describe_type(index)}, expected an integer"
            )
        if not 0 <= index <= PCR_INDEX_MAX:
            raise FormatError(f"pcrs index {index} is outside 0 to {PCR_INDEX_MAX}")
        if not isinstance(content, bytes):
            raise FormatError(f"PCR{index} is {describe_type(content)}, expected bytes")
        if len(content) not in PCR_SIZES:
            raise FormatError(
                f"PCR{index} is {len(content)} bytes, expected 32, 48 or 64"
            )
        pcrs[int(index)] = content
    return pcrs


def parse_certificate(value: Any, *, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError(f"{what} is {describe_type(value)}, expected bytes")
    if not 1 <= len(value) <= CERTIFICATE_SIZE_MAX:
        raise FormatError(
            f"{what} is {len(value)} bytes, expected 1 to {CERTIFICATE_SIZE_MAX}"
        )
    return value


def parse_cabundle(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple):
        raise FormatError(f"cabundle is {describe_type(value)}, expected an array")
    if not value:
        raise FormatError("cabundle is empty, expected at least the root certificate")
    return tuple(
        parse_certificate(entry, what=f"cabundle[{position}]")
        for position, entry in enumerate(value)
    )


def parse_optional_bytes(fields: Mapping[Any, Any], name: str) -> bytes | None:
    """Return an optional byte-string field, None when absent; null is invalid."""
    if name not in fields:
        return None
    value = fields[name]
    if not isinstance(value, bytes):
        raise FormatError(f"{name} is {describe_type(value)}, expected bytes")
    if len(value) > OPTIONAL_FIELD_SIZE_MAX:
        raise FormatError(
            f"{name} is {len(value)} bytes, above the maximum {OPTIONAL_FIELD_SIZE_MAX}"
        )
    return value


def is_integer(value: Any) -> bool:
    """Return whether a decoded CBOR value is an integer (a boolean is not)."""
    return isinstance(value, int) and not isinstance(value, bool)
