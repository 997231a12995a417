"""Attestation verification: signature, chain and policy on test documents."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta

import cbor2
import pytest
from attestation_factory import (
    INTERMEDIATE_SPECS,
    LEAF_SPEC,
    NONCE,
    NOW,
    RELEASE_PCRS,
    Authority,
    Pki,
    make_certificate,
    make_document,
    make_pki,
    payload_fields,
    sign_payload,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from enclave.attestation import (
    Policy,
    VerificationReport,
    expected_pcrs,
    verify_document,
)

POLICY = Policy(pcrs=RELEASE_PCRS, nonce=NONCE)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def verify(
    pki: Pki, data: bytes, *, policy: Policy = POLICY, at=NOW
) -> VerificationReport:
    return verify_document(data, policy=policy, root=pki.root.certificate, at=at)


def failed_names(report: VerificationReport) -> list[str]:
    return [check.name for check in report.failed]


def test_valid_document_passes(pki: Pki) -> None:
    report = verify(pki, make_document(pki))

    assert report.ok
    assert [check.name for check in report.checks] == [
        "format",
        "signature",
        "chain",
        "pcr0",
        "pcr1",
        "pcr2",
        "debug-mode",
        "nonce",
        "timestamp",
    ]


def test_untagged_document_accepted(pki: Pki) -> None:
    report = verify(pki, make_document(pki, tagged=False))

    assert report.ok
    assert "untagged" in report.check("format").detail


@pytest.mark.parametrize("altchars", [b"+/", b"-_"])
def test_base64_document_accepted(pki: Pki, altchars: bytes) -> None:
    encoded = base64.b64encode(make_document(pki), altchars=altchars)
    wrapped = b"\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))

    assert verify(pki, wrapped).ok


def test_bad_signature_fails(pki: Pki) -> None:
    data = bytearray(make_document(pki))
    data[-1] ^= 0x01
    report = verify(pki, bytes(data))

    assert failed_names(report) == ["signature"]


def test_signature_by_other_key_fails(pki: Pki) -> None:
    payload = cbor2.dumps(payload_fields(pki))
    data = sign_payload(payload, ec.generate_private_key(ec.SECP384R1()))
    report = verify(pki, data)

    assert failed_names(report) == ["signature"]


def test_leaf_p256_key_fails_signature(pki: Pki) -> None:
    leaf_spec = replace(LEAF_SPEC, curve=ec.SECP256R1())
    other = make_pki(root=pki.root, leaf_spec=leaf_spec)
    report = verify(other, make_document(other))

    assert failed_names(report) == ["signature"]
    assert "P-384" in report.check("signature").detail


def test_foreign_root_fails_chain(pki: Pki) -> None:
    foreign = make_pki()
    report = verify(pki, make_document(foreign))

    assert failed_names(report) == ["chain"]
    assert "not the pinned root" in report.check("chain").detail


def test_default_root_is_aws(pki: Pki) -> None:
    report = verify_document(make_document(pki), policy=POLICY, at=NOW)

    assert failed_names(report) == ["chain"]
    assert "not the pinned root" in report.check("chain").detail


def test_expired_leaf_fails_chain(pki: Pki) -> None:
    at = NOW + timedelta(hours=3)
    policy = replace(POLICY, max_age=None)
    report = verify(pki, make_document(pki), policy=policy, at=at)

    assert failed_names(report) == ["chain"]
    assert report.check("chain").detail.startswith("certificate ")
    assert "not at" in report.check("chain").detail


def test_leaf_not_yet_valid_fails_chain(pki: Pki) -> None:
    at = NOW - timedelta(hours=2)
    policy = replace(POLICY, max_clock_skew=timedelta(days=1))
    report = verify(pki, make_document(pki), policy=policy, at=at)

    assert failed_names(report) == ["chain"]


def test_expired_intermediate_fails_chain(pki: Pki) -> None:
    expired = replace(INTERMEDIATE_SPECS[1], not_after=NOW - timedelta(seconds=1))
    specs = (INTERMEDIATE_SPECS[0], expired, INTERMEDIATE_SPECS[2])
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert failed_names(report) == ["chain"]
    assert report.check("chain").detail.startswith("cabundle[2] ")


def test_intermediate_without_ca_flag_fails(pki: Pki) -> None:
    not_ca = replace(INTERMEDIATE_SPECS[1], ca=False, path_length=None)
    specs = (INTERMEDIATE_SPECS[0], not_ca, INTERMEDIATE_SPECS[2])
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert failed_names(report) == ["chain"]
    assert "cabundle[2] is not a CA certificate" in report.check("chain").detail


def test_intermediate_without_constraints_fails(pki: Pki) -> None:
    bare = replace(INTERMEDIATE_SPECS[0], with_constraints=False)
    specs = (bare, *INTERMEDIATE_SPECS[1:])
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert "cabundle[1] is not a CA certificate" in report.check("chain").detail


def test_noncritical_constraints_fail(pki: Pki) -> None:
    lax = replace(INTERMEDIATE_SPECS[2], critical_constraints=False)
    specs = (*INTERMEDIATE_SPECS[:2], lax)
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert "not marked critical" in report.check("chain").detail


def test_intermediate_without_cert_sign_fails(pki: Pki) -> None:
    no_sign = replace(INTERMEDIATE_SPECS[2], key_cert_sign=False)
    specs = (*INTERMEDIATE_SPECS[:2], no_sign)
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert "cabundle[3] key usage lacks keyCertSign" in report.check("chain").detail


def test_path_length_exceeded_fails(pki: Pki) -> None:
    short = replace(INTERMEDIATE_SPECS[0], path_length=0)
    specs = (short, *INTERMEDIATE_SPECS[1:])
    other = make_pki(root=pki.root, intermediate_specs=specs)
    report = verify(other, make_document(other))

    assert "cabundle[1] allows 0 intermediates" in report.check("chain").detail


def test_leaf_ca_fails_chain(pki: Pki) -> None:
    other = make_pki(root=pki.root, leaf_spec=replace(LEAF_SPEC, ca=True))
    report = verify(other, make_document(other))

    assert "certificate is a CA certificate" in report.check("chain").detail


def test_leaf_without_digital_signature_fails(pki: Pki) -> None:
    leaf_spec = replace(LEAF_SPEC, digital_signature=False)
    other = make_pki(root=pki.root, leaf_spec=leaf_spec)
    report = verify(other, make_document(other))

    assert "lacks digitalSignature" in report.check("chain").detail


def test_cabundle_swapped_intermediates_fails(pki: Pki) -> None:
    root, first, second, third = pki.cabundle
    report = verify(pki, make_document(pki, cabundle=[root, second, first, third]))

    assert failed_names(report) == ["chain"]
    assert "is not issued by" in report.check("chain").detail


def test_cabundle_leaf_first_fails(pki: Pki) -> None:
    report = verify(pki, make_document(pki, cabundle=pki.cabundle[::-1]))

    assert failed_names(report) == ["chain"]
    assert "cabundle[0]" in report.check("chain").detail


def test_cabundle_without_intermediate_fails(pki: Pki) -> None:
    report = verify(pki, make_document(pki, cabundle=pki.cabundle[:3]))

    assert failed_names(report) == ["chain"]


def test_leaf_from_other_chain_fails(pki: Pki) -> None:
    other = make_pki(root=pki.root)
    data = make_document(other, cabundle=pki.cabundle)
    report = verify(pki, data)

    assert failed_names(report) == ["chain"]


def test_pcr_mismatch_fails(pki: Pki) -> None:
    pcrs = {index: bytes([0xB0 + index]) * 48 for index in range(3)}
    report = verify(pki, make_document(pki, pcrs=pcrs))

    assert failed_names(report) == ["pcr0", "pcr1", "pcr2"]
    assert "expected a0a0" in report.check("pcr0").detail


def test_missing_pcr_fails(pki: Pki) -> None:
    pcrs = {0: RELEASE_PCRS[0], 1: RELEASE_PCRS[1]}
    report = verify(pki, make_document(pki, pcrs=pcrs))

    assert failed_names(report) == ["pcr2"]
    assert report.check("pcr2").detail == "document has no PCR2"


def test_debug_mode_zeros_fail(pki: Pki) -> None:
    zeros = {index: bytes(48) for index in range(3)}
    policy = replace(POLICY, pcrs=zeros)
    report = verify(pki, make_document(pki, pcrs=zeros), policy=policy)

    assert failed_names(report) == ["debug-mode"]
    assert "PCR0, PCR1, PCR2" in report.check("debug-mode").detail


def test_one_zero_pcr_fails_debug_mode(pki: Pki) -> None:
    pcrs = {**RELEASE_PCRS, 2: bytes(48)}
    report = verify(pki, make_document(pki, pcrs=pcrs))

    assert failed_names(report) == ["pcr2", "debug-mode"]


def test_stale_timestamp_fails(pki: Pki) -> None:
    stale = int((NOW - timedelta(minutes=6)).timestamp() * 1000)
    report = verify(pki, make_document(pki, timestamp=stale))

    assert failed_names(report) == ["timestamp"]
    assert "360 s old" in report.check("timestamp").detail


def test_max_age_is_settable(pki: Pki) -> None:
    stale = int((NOW - timedelta(minutes=6)).timestamp() * 1000)
    policy = replace(POLICY, max_age=timedelta(minutes=10))

    assert verify(pki, make_document(pki, timestamp=stale), policy=policy).ok


def test_future_timestamp_fails(pki: Pki) -> None:
    future = int((NOW + timedelta(minutes=1)).timestamp() * 1000)
    report = verify(pki, make_document(pki, timestamp=future))

    assert failed_names(report) == ["timestamp"]
    assert "after the verification time" in report.check("timestamp").detail


def test_wrong_nonce_fails(pki: Pki) -> None:
    report = verify(pki, make_document(pki, nonce=bytes(20)))

    assert failed_names(report) == ["nonce"]


def test_missing_nonce_fails(pki: Pki) -> None:
    report = verify(pki, make_document(pki, nonce=None))

    assert failed_names(report) == ["nonce"]
    assert report.check("nonce").detail == "document has no nonce"


def test_nonce_unchecked_without_policy(pki: Pki) -> None:
    policy = replace(POLICY, nonce=None)
    report = verify(pki, make_document(pki, nonce=None), policy=policy)

    assert report.ok
    assert "nonce" not in [check.name for check in report.checks]


def test_public_key_and_user_data_match(pki: Pki) -> None:
    policy = replace(POLICY, public_key=b"test public key", user_data=b"test user data")
    report = verify(pki, make_document(pki), policy=policy)

    assert report.ok
    assert report.check("public-key").passed
    assert report.check("user-data").passed


def test_public_key_and_user_data_mismatch(pki: Pki) -> None:
    policy = replace(POLICY, public_key=b"other key", user_data=b"x" * 40)
    report = verify(pki, make_document(pki), policy=policy)

    assert failed_names(report) == ["public-key", "user-data"]
    assert "40 bytes with SHA-256" in report.check("user-data").detail


def test_truncated_cbor_fails_format(pki: Pki) -> None:
    data = make_document(pki)
    report = verify(pki, data[: len(data) // 2])

    assert not report.ok
    assert len(report.checks) == 1
    assert report.check("format").passed is False
    assert "not valid CBOR" in report.check("format").detail


def test_empty_input_fails_format(pki: Pki) -> None:
    report = verify(pki, b"")

    assert failed_names(report) == ["format"]


def test_garbage_text_fails_format(pki: Pki) -> None:
    report = verify(pki, b"not a document!")

    assert failed_names(report) == ["format"]
    assert report.check("format").detail.startswith("document ")


def test_bad_base64_padding_fails_format(pki: Pki) -> None:
    report = verify(pki, b"hEShATgioA=")

    assert "not valid base64" in report.check("format").detail


def test_long_tag_form_accepted(pki: Pki) -> None:
    # 0xd8 0x12 encodes tag 18 in two bytes, a valid if unusual CBOR form.
    data = make_document(pki)
    report = verify(pki, b"\xd8\x12" + data[1:])

    assert report.ok


def test_invalid_certificate_der_fails_format(pki: Pki) -> None:
    report = verify(pki, make_document(pki, certificate=b"\x30\x03\x02\x01\x01"))

    assert failed_names(report) == ["format"]
    assert "certificate is not a DER X.509" in report.check("format").detail


def test_naive_clock_rejected(pki: Pki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(pki, make_document(pki), at=NOW.replace(tzinfo=None))


def test_report_to_dict(pki: Pki) -> None:
    result = verify(pki, make_document(pki, nonce=bytes(20))).to_dict()

    assert result["ok"] is False
    assert result["checks"][0] == {
        "name": "format",
        "passed": True,
        "detail": result["checks"][0]["detail"],
    }
    assert {"name", "passed", "detail"} == set(result["checks"][7])


def test_expected_pcrs_parses_hex() -> None:
    pcrs = expected_pcrs({"pcr0": "a0" * 48, "pcr8": "08" * 48})

    assert pcrs == {0: bytes([0xA0]) * 48, 8: bytes([0x08]) * 48}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pcr32": "00" * 48}, "not pcr0 to pcr31"),
        ({"PCR0": "00" * 48}, "not pcr0 to pcr31"),
        ({"pcr0": "zz" * 48}, "not hex"),
        ({"pcr0": "00" * 32}, "expected 48"),
        ({"pcr0": 5}, "not a hex string"),
    ],
)
def test_expected_pcrs_rejects(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_pcrs(values)


def test_p256_intermediate_chain_verifies(pki: Pki) -> None:
    # The chain check accepts any curve cryptography verifies; only the
    # signing leaf must be P-384.
    spec = replace(INTERMEDIATE_SPECS[0], curve=ec.SECP256R1())
    other = make_pki(root=pki.root, intermediate_specs=(spec, *INTERMEDIATE_SPECS[1:]))

    assert verify(other, make_document(other)).ok


def test_self_signed_leaf_rejected(pki: Pki) -> None:
    leaf = make_certificate("lonely", LEAF_SPEC, issuer=None)
    lone = Pki(pki.root, pki.intermediates, leaf)
    report = verify(pki, make_document(lone))

    assert failed_names(report) == ["chain"]


def test_malformed_extension_fails_chain(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    issuer = pki.intermediates[-1]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bad")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x00"),
            critical=True,
        )
        .sign(issuer.key, hashes.SHA384())
    )
    broken = Pki(pki.root, pki.intermediates, Authority(certificate, key))
    report = verify(pki, make_document(broken))

    assert failed_names(report) == ["chain"]
    assert "invalid certificate in the chain" in report.check("chain").detail
