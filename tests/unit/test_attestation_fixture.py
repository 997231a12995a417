"""A real attestation document from an AWS Nitro Enclave, and the pinned root.

The document came from a debug-mode enclave in us-east-1 on 2024-09-06. Its
leaf certificate is valid from 04:33:09Z to 07:33:12Z that day, so the
tests fix the verification clock.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import cbor2
import pytest
from attestation_factory import make_pki
from cryptography.hazmat.primitives.serialization import Encoding

from enclave.attestation import (
    ROOT_CERTIFICATE_PATH,
    ROOT_CERTIFICATE_SHA256,
    Policy,
    VerificationReport,
    load_root_certificate,
    verify_document,
)
from enclave.attestation_document import parse_document
from enclave.cose import decode_sign1
from infra.config import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "attestation"
DOCUMENT = FIXTURE / "aws-nitro-debug-2024-09-06.cose"
# The SHA-256 AWS publishes for the DER Root-G1 certificate.
PUBLISHED_ROOT_SHA256 = (
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
)
INSIDE_WINDOW = datetime(2024, 9, 6, 4, 34, tzinfo=UTC)
AFTER_WINDOW = datetime(2024, 9, 6, 7, 34, tzinfo=UTC)
BEFORE_WINDOW = datetime(2024, 9, 6, 4, 33, tzinfo=UTC)
NONCE = bytes(19) + b"\x01"
POLICY = Policy(pcrs={index: bytes([0xA0 + index]) * 48 for index in range(3)})

pytestmark = pytest.mark.skipif(
    not DOCUMENT.exists(), reason=f"fixture {DOCUMENT} is missing"
)


@pytest.fixture(scope="module")
def document() -> bytes:
    return DOCUMENT.read_bytes()


def verify(
    data: bytes, *, policy: Policy = POLICY, at: datetime = INSIDE_WINDOW
) -> VerificationReport:
    return verify_document(data, policy=policy, at=at)


def test_root_fingerprint_is_published() -> None:
    der = load_root_certificate().public_bytes(Encoding.DER)

    assert hashlib.sha256(der).hexdigest() == PUBLISHED_ROOT_SHA256
    assert ROOT_CERTIFICATE_SHA256 == PUBLISHED_ROOT_SHA256


def test_root_is_aws_root_g1() -> None:
    root = load_root_certificate()

    assert root.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    assert root.not_valid_before_utc.year == 2019
    assert root.not_valid_after_utc.year == 2049
    assert ROOT_CERTIFICATE_PATH.name == "aws_nitro_root.pem"


def test_root_matches_fixture_cabundle(document: bytes) -> None:
    cabundle = parse_document(decode_sign1(document).payload).cabundle
    der = load_root_certificate().public_bytes(Encoding.DER)

    assert cabundle[0] == der


def test_fixture_inside_window(document: bytes) -> None:
    report = verify(document, policy=replace(POLICY, nonce=NONCE))

    assert report.check("format").passed
    assert report.check("signature").passed
    assert report.check("chain").passed
    assert report.check("nonce").passed
    assert report.check("timestamp").passed
    assert not report.check("debug-mode").passed
    assert not report.check("pcr0").passed
    assert not report.ok


def test_fixture_is_untagged(document: bytes) -> None:
    report = verify(document)

    assert report.check("format").detail.startswith("untagged ")


def test_fixture_tagged_copy_verifies(document: bytes) -> None:
    tagged = cbor2.dumps(cbor2.CBORTag(18, cbor2.loads(document)))
    report = verify(tagged)

    assert report.check("format").detail.startswith("tagged ")
    assert report.check("signature").passed
    assert report.check("chain").passed


def test_fixture_base64_verifies(document: bytes) -> None:
    report = verify(base64.b64encode(document) + b"\n")

    assert report.check("signature").passed
    assert report.check("chain").passed


def test_fixture_after_window_fails_chain(document: bytes) -> None:
    report = verify(document, at=AFTER_WINDOW)

    assert report.check("signature").passed
    assert not report.check("chain").passed
    assert "not at 2024-09-06T07:34:00+00:00" in report.check("chain").detail


def test_fixture_before_window_fails_chain(document: bytes) -> None:
    report = verify(document, at=BEFORE_WINDOW)

    assert not report.check("chain").passed


def test_fixture_stale_by_default_clock(document: bytes) -> None:
    report = verify_document(document, policy=POLICY)

    assert not report.check("chain").passed
    assert not report.check("timestamp").passed


def test_fixture_flipped_byte_fails_signature(document: bytes) -> None:
    pcr3 = parse_document(decode_sign1(document).payload).pcrs[3]
    tampered = bytearray(document)
    tampered[document.index(pcr3)] ^= 0x01
    report = verify(bytes(tampered))

    assert report.check("format").passed
    assert not report.check("signature").passed
    assert report.check("chain").passed


def test_fixture_swapped_cabundle_fails_chain(document: bytes) -> None:
    protected, unprotected, payload, signature = cbor2.loads(document)
    fields = cbor2.loads(payload)
    fields["cabundle"][1], fields["cabundle"][2] = (
        fields["cabundle"][2],
        fields["cabundle"][1],
    )
    tampered = cbor2.dumps([protected, unprotected, cbor2.dumps(fields), signature])
    report = verify(tampered)

    assert not report.check("chain").passed
    assert "is not issued by" in report.check("chain").detail
    assert not report.check("signature").passed


def test_fixture_foreign_root_fails_chain(document: bytes) -> None:
    protected, unprotected, payload, signature = cbor2.loads(document)
    fields = cbor2.loads(payload)
    fields["cabundle"][0] = make_pki().root.der
    tampered = cbor2.dumps([protected, unprotected, cbor2.dumps(fields), signature])
    report = verify(tampered)

    assert not report.check("chain").passed
    assert "not the pinned root" in report.check("chain").detail


def test_fixture_truncated_fails_format(document: bytes) -> None:
    report = verify(document[:-1])

    assert [check.name for check in report.failed] == ["format"]
