"""Attestation document format: COSE_Sign1 framing and payload limits."""

from __future__ import annotations

import re
from typing import Any

import cbor2
import pytest
from attestation_factory import (
    NOW,
    Pki,
    encode_sign1,
    make_document,
    make_pki,
    payload_fields,
    sign_payload,
)

from enclave import cose
from enclave.attestation import Policy, verify_document
from enclave.attestation_document import parse_document
from enclave.cose import FormatError, decode_sign1


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def encode_payload(pki: Pki, **overrides: Any) -> bytes:
    return cbor2.dumps(payload_fields(pki, **overrides))


def sign1(**fields: Any) -> bytes:
    """Encode a tagged COSE_Sign1 with fields replaced; the signature is filler."""
    message = cose.CoseSign1(
        protected=cbor2.dumps({1: -35}),
        unprotected={},
        payload=b"\xa0",
        signature=bytes(96),
        tagged=True,
    )
    values = {
        "protected": message.protected,
        "unprotected": message.unprotected,
        "payload": message.payload,
        "signature": message.signature,
        **fields,
    }
    return cbor2.dumps(
        cbor2.CBORTag(
            18,
            [
                values["protected"],
                values["unprotected"],
                values["payload"],
                values["signature"],
            ],
        )
    )


def test_parse_document_fields(pki: Pki) -> None:
    document = parse_document(encode_payload(pki))

    assert document.module_id.startswith("i-")
    assert document.digest == "SHA384"
    assert document.timestamp.isoformat() == "2025-01-15T11:59:50+00:00"
    assert len(document.pcrs) == 16
    assert document.certificate == pki.leaf.der
    assert document.cabundle == tuple(pki.cabundle)
    assert document.user_data == b"test user data"


def test_optional_fields_absent(pki: Pki) -> None:
    payload = encode_payload(pki, public_key=None, user_data=None, nonce=None)
    document = parse_document(payload)

    assert document.public_key is None
    assert document.user_data is None
    assert document.nonce is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"module_id": None}, "payload has no module_id"),
        ({"digest": None}, "payload has no digest"),
        ({"timestamp": None}, "payload has no timestamp"),
        ({"pcrs": None}, "payload has no pcrs"),
        ({"certificate": None}, "payload has no certificate"),
        ({"cabundle": None}, "payload has no cabundle"),
        ({"module_id": ""}, "module_id is empty"),
        ({"module_id": b"i-0"}, "module_id is a byte string, expected text"),
        ({"digest": "SHA256"}, "digest is 'SHA256', expected 'SHA384'"),
        ({"digest": 384}, "digest is an integer, expected text"),
        ({"timestamp": 0}, "timestamp is 0"),
        ({"timestamp": -1}, "timestamp is -1"),
        ({"timestamp": True}, "timestamp is a boolean"),
        ({"timestamp": 1.5}, "timestamp is a float"),
        ({"timestamp": 2**64}, "timestamp is 18446744073709551616"),
        ({"pcrs": {}}, "pcrs has 0 entries"),
        ({"pcrs": [bytes(48)]}, "pcrs is an array of 1 items, expected a map"),
        ({"pcrs": {i: bytes(48) for i in range(33)}}, "pcrs has 33 entries"),
        ({"pcrs": {32: bytes(48)}}, "pcrs index 32 is outside 0 to 31"),
        ({"pcrs": {-1: bytes(48)}}, "pcrs index -1 is outside 0 to 31"),
        ({"pcrs": {"0": bytes(48)}}, "pcrs key '0' is a text string"),
        ({"pcrs": {0: bytes(47)}}, "PCR0 is 47 bytes, expected 32, 48 or 64"),
        ({"pcrs": {3: bytes(49)}}, "PCR3 is 49 bytes"),
        ({"pcrs": {0: "00" * 48}}, "PCR0 is a text string, expected bytes"),
        ({"certificate": b""}, "certificate is 0 bytes, expected 1 to 1024"),
        ({"certificate": bytes(1025)}, "certificate is 1025 bytes"),
        ({"certificate": "pem"}, "certificate is a text string"),
        ({"cabundle": []}, "cabundle is empty"),
        ({"cabundle": b"der"}, "cabundle is a byte string, expected an array"),
        ({"cabundle": [b"x", bytes(1025)]}, "cabundle[1] is 1025 bytes"),
        ({"cabundle": [b"x", 5]}, "cabundle[1] is an integer, expected bytes"),
        ({"public_key": bytes(1025)}, "public_key is 1025 bytes, above the max"),
        ({"user_data": bytes(1025)}, "user_data is 1025 bytes, above the max"),
        ({"nonce": bytes(1025)}, "nonce is 1025 bytes, above the max"),
        ({"nonce": "abc"}, "nonce is a text string, expected bytes"),
        ({"extra": 1}, "payload has unknown field 'extra'"),
    ],
)
def test_payload_rejected(pki: Pki, overrides: dict[str, Any], message: str) -> None:
    payload = encode_payload(pki, **overrides)

    with pytest.raises(FormatError, match=re.escape(message)):
        parse_document(payload)


@pytest.mark.parametrize("name", ["public_key", "user_data", "nonce"])
def test_null_optional_field_rejected(pki: Pki, name: str) -> None:
    fields = payload_fields(pki)
    fields[name] = None

    with pytest.raises(FormatError, match=f"{name} is null"):
        parse_document(cbor2.dumps(fields))


@pytest.mark.parametrize(
    "overrides",
    [
        {"public_key": bytes(1024), "user_data": bytes(1024), "nonce": bytes(1024)},
        {"user_data": b"", "nonce": b""},
        {"pcrs": {0: bytes(32), 31: bytes(64)}},
        {"pcrs": {i: bytes(48) for i in range(32)}},
        {"certificate": bytes(1024)},
    ],
)
def test_payload_limits_accepted(pki: Pki, overrides: dict[str, Any]) -> None:
    document = parse_document(encode_payload(pki, **overrides))

    assert document.module_id


def test_payload_not_a_map() -> None:
    with pytest.raises(FormatError, match="payload is an array of 2 items"):
        parse_document(cbor2.dumps([1, 2]))


def test_payload_trailing_bytes(pki: Pki) -> None:
    with pytest.raises(FormatError, match="1 bytes after its CBOR item"):
        parse_document(encode_payload(pki) + b"\x00")


def test_decode_tagged_and_untagged(pki: Pki) -> None:
    tagged = decode_sign1(make_document(pki, tagged=True))
    untagged = decode_sign1(make_document(pki, tagged=False))

    assert tagged.tagged
    assert not untagged.tagged
    assert tagged.payload == untagged.payload


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cbor2.dumps({"a": 1}), "not a COSE_Sign1 array of 4 items"),
        (cbor2.dumps([b"", {}, b"x"]), "not a COSE_Sign1 array of 4 items"),
        (cbor2.dumps(cbor2.CBORTag(98, [])), "CBOR tag 98, expected 18"),
        (sign1(protected={1: -35}), "protected header is a map, expected bytes"),
        (sign1(unprotected=b""), "unprotected header is a byte string"),
        (sign1(payload="text"), "payload is a text string, expected bytes"),
        (sign1(payload=b""), "payload is 0 bytes, expected 1 to 16384"),
        (sign1(payload=bytes(16385)), "payload is 16385 bytes, expected 1 to 16384"),
        (sign1(signature=bytes(64)), "signature is 64 bytes, expected 96"),
        (sign1(signature=None), "signature is null, expected bytes"),
        (sign1(protected=cbor2.dumps({1: -7})), "alg is -7, expected -35"),
        (sign1(protected=cbor2.dumps({1: -35.0})), "alg is -35.0"),
        (sign1(protected=cbor2.dumps({4: b"kid"})), "has no alg"),
        (sign1(protected=b""), "has no alg"),
        (sign1(protected=cbor2.dumps([1, -35])), "protected header is an array"),
        (sign1(protected=b"\xa1\x01"), "protected header is not valid CBOR"),
        (sign1() + b"\x00", "document has 1 bytes after its CBOR item"),
        (b"\x84\x44", "document is not valid CBOR"),
        (b"\x9f" * 20000, "above the maximum"),
    ],
)
def test_sign1_rejected(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_sign1(data)


def test_deep_nesting_rejected() -> None:
    data = b"\x81" * 15000 + b"\x00"

    with pytest.raises(FormatError, match="not a COSE_Sign1|not valid CBOR"):
        decode_sign1(data)


def test_format_error_becomes_check(pki: Pki) -> None:
    payload = encode_payload(pki, digest="SHA256")
    data = sign_payload(payload, pki.leaf.key)
    report = verify_document(data, policy=Policy(), root=pki.root.certificate, at=NOW)

    assert not report.ok
    assert [check.name for check in report.checks] == ["format"]
    assert report.checks[0].detail == "digest is 'SHA256', expected 'SHA384'"
    assert report.document is None


def test_wrong_algorithm_becomes_check(pki: Pki) -> None:
    message = decode_sign1(make_document(pki))
    data = encode_sign1(
        cose.CoseSign1(
            protected=cbor2.dumps({1: -7}),
            unprotected={},
            payload=message.payload,
            signature=message.signature,
            tagged=True,
        )
    )
    report = verify_document(data, policy=Policy(), root=pki.root.certificate, at=NOW)

    assert report.check("format").passed is False
    assert "expected -35 (ES384)" in report.check("format").detail
