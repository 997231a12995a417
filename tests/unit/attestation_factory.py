"""Build test PKIs and signed attestation documents shaped like AWS's.

A P-384 test root replaces the AWS Nitro Enclaves root. As in AWS
documents, the chain has three intermediates (path lengths 2, 1 and 0) and
a leaf that signs the document, so verifying one takes five ECDSA P-384
verifications.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from enclave import cose

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
RELEASE_PCRS = {0: bytes([0xA0]) * 48, 1: bytes([0xA1]) * 48, 2: bytes([0xA2]) * 48}
NONCE = bytes(range(20))


@dataclass(frozen=True)
class Authority:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class CertificateSpec:
    """How one certificate of a test chain differs from the usual."""

    ca: bool = True
    path_length: int | None = None
    critical_constraints: bool = True
    key_cert_sign: bool = True
    digital_signature: bool = True
    with_constraints: bool = True
    not_before: datetime = NOW - timedelta(days=1)
    not_after: datetime = NOW + timedelta(days=1)
    curve: ec.EllipticCurve = field(default_factory=ec.SECP384R1)


def make_certificate(
    name: str, spec: CertificateSpec, *, issuer: Authority | None
) -> Authority:
    """Make a certificate; self-signed when `issuer` is None."""
    key = ec.generate_private_key(spec.curve)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=spec.digital_signature,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=spec.key_cert_sign,
                crl_sign=spec.ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if spec.with_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=spec.ca, path_length=spec.path_length),
            critical=spec.critical_constraints,
        )
    signing_key = issuer.key if issuer else key
    return Authority(builder.sign(signing_key, hashes.SHA384()), key)


ROOT_SPEC = CertificateSpec(
    not_before=NOW - timedelta(days=3650), not_after=NOW + timedelta(days=3650)
)
INTERMEDIATE_SPECS = (
    CertificateSpec(path_length=2),
    CertificateSpec(path_length=1),
    CertificateSpec(path_length=0, digital_signature=False),
)
LEAF_SPEC = CertificateSpec(
    ca=False,
    key_cert_sign=False,
    not_before=NOW - timedelta(hours=1),
    not_after=NOW + timedelta(hours=2),
)


@dataclass(frozen=True)
class Pki:
    """A root, intermediates from the root down, and a leaf."""

    root: Authority
    intermediates: list[Authority]
    leaf: Authority

    @property
    def cabundle(self) -> list[bytes]:
        """The cabundle as AWS orders it: root first."""
        return [self.root.der, *(authority.der for authority in self.intermediates)]


def make_pki(
    *,
    root: Authority | None = None,
    intermediate_specs: tuple[CertificateSpec, ...] = INTERMEDIATE_SPECS,
    leaf_spec: CertificateSpec = LEAF_SPEC,
) -> Pki:
    """Make a chain under `root`, or under a new test root."""
    root = root or make_certificate("test-root.nitro-enclaves", ROOT_SPEC, issuer=None)
    issuer = root
    intermediates = []
    for position, spec in enumerate(intermediate_specs, start=1):
        issuer = make_certificate(f"intermediate-{position}", spec, issuer=issuer)
        intermediates.append(issuer)
    leaf = make_certificate("i-0123456789abcdef0-enc01.test", leaf_spec, issuer=issuer)
    return Pki(root, intermediates, leaf)


def payload_fields(pki: Pki, **overrides: Any) -> dict[str, Any]:
    """Return a valid payload map; an override of None removes the field."""
    pcrs = {index: bytes(48) for index in range(16)}
    pcrs.update(RELEASE_PCRS)
    fields: dict[str, Any] = {
        "module_id": "i-0123456789abcdef0-enc0123456789abcdef",
        "digest": "SHA384",
        "timestamp": int((NOW - timedelta(seconds=10)).timestamp() * 1000),
        "pcrs": pcrs,
        "certificate": pki.leaf.der,
        "cabundle": pki.cabundle,
        "public_key": b"test public key",
        "user_data": b"test user data",
        "nonce": NONCE,
    }
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not None}


def sign_payload(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey,
    *,
    tagged: bool = True,
    protected: bytes = cbor2.dumps({1: -35}),
) -> bytes:
    """Sign `payload` as an ES384 COSE_Sign1 and encode it."""
    message = cose.CoseSign1(
        protected=protected,
        unprotected={},
        payload=payload,
        signature=b"",
        tagged=tagged,
    )
    der_signature = key.sign(cose.sig_structure(message), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der_signature)
    signed = replace(message, signature=r.to_bytes(48, "big") + s.to_bytes(48, "big"))
    return encode_sign1(signed)


def encode_sign1(message: cose.CoseSign1) -> bytes:
    item: Any = [
        message.protected,
        message.unprotected,
        message.payload,
        message.signature,
    ]
    if message.tagged:
        item = cbor2.CBORTag(cose.COSE_SIGN1_TAG, item)
    return cbor2.dumps(item)


def make_document(pki: Pki, *, tagged: bool = True, **overrides: Any) -> bytes:
    """Return a signed document from `pki` with payload fields overridden."""
    payload = cbor2.dumps(payload_fields(pki, **overrides))
    return sign_payload(payload, pki.leaf.key, tagged=tagged)
