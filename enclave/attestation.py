"""Verify a Nitro attestation document: format, signature, chain and policy.

The steps follow docs/attestation_process.md in
github.com/aws/aws-nitro-enclaves-nsm-api. The verifier decodes the
COSE_Sign1 and checks the payload's fields. It builds the chain from the leaf
certificate through the cabundle (root first) to the pinned AWS Nitro
Enclaves Root-G1 certificate, and checks each certificate's validity window,
basic constraints and key usage. It verifies the ES384 signature with the
leaf's key. Policy checks then compare the PCRs, nonce, timestamp and
optional fields with the expected values. Every check runs and lands in the
report, so one run shows every reason a document fails.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from enclave import cose
from enclave.attestation_document import AttestationDocument, parse_document
from enclave.cose import FormatError

log = logging.getLogger(__name__)

ROOT_CERTIFICATE_PATH = Path(__file__).resolve().parent / "aws_nitro_root.pem"
# SHA-256 of the DER Root-G1 certificate, the fingerprint AWS publishes for it.
# attestation_process.md gives the SHA-256 of the zip file that carries the
# certificate instead (8cf60e2b...), which is a different value.
ROOT_CERTIFICATE_SHA256 = (
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
)
# The PCRs a release pins: the EIF image, the kernel and boot ramdisk, and
# the user application.
RELEASE_PCRS = (0, 1, 2)
PCR_KEY = re.compile(r"pcr([0-9]{1,2})")
BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/_-]+={0,2}")
DEFAULT_MAX_AGE = timedelta(minutes=5)
# How far a document's timestamp may run ahead of the verification clock.
DEFAULT_CLOCK_SKEW = timedelta(seconds=30)


@dataclass(frozen=True)
class Check:
    """One verification step's outcome; `detail` names what was compared."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class VerificationReport:
    """The checks in the order they ran; the document when it parsed."""

    checks: list[Check]
    document: AttestationDocument | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def check(self, name: str) -> Check:
        """Return the check called `name`; raise KeyError if it did not run."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [check.to_dict() for check in self.checks]}


@dataclass(frozen=True)
class Policy:
    """The expected values a document must match beyond its signature and chain.

    `pcrs` maps a PCR index to its expected bytes. A None field is not
    checked. PCR0, PCR1 and PCR2 must never be all zeros (debug mode),
    whatever `pcrs` contains.
    """

    pcrs: Mapping[int, bytes] = field(default_factory=dict)
    nonce: bytes | None = None
    max_age: timedelta | None = DEFAULT_MAX_AGE
    max_clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    public_key: bytes | None = None
    user_data: bytes | None = None


class ChainError(Exception):
    """A chain that does not lead to the pinned root; the message names where."""


@dataclass(frozen=True)
class ParsedMessage:
    message: cose.CoseSign1
    document: AttestationDocument
    leaf: x509.Certificate
    cabundle: list[x509.Certificate]


@cache
def load_root_certificate(path: Path = ROOT_CERTIFICATE_PATH) -> x509.Certificate:
    """Load the pinned AWS Nitro Enclaves Root-G1 certificate (PEM)."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def certificate_sha256(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(Encoding.DER)).hexdigest()


def decode_document_encoding(data: bytes) -> bytes:
    """Return raw COSE bytes from raw CBOR or base64 (standard or URL-safe).

    Input made only of base64 characters and white space is base64. A
    COSE_Sign1 in CBOR never is, because its first byte is 0xd2 (tag 18),
    0xd8 (a longer tag form) or 0x84 (an array of 4).
    """
    text = b"".join(data.split())
    if not text or BASE64_TEXT.fullmatch(text) is None:
        return data
    if len(text) > cose.MAX_DOCUMENT_SIZE * 4 // 3 + 4:
        raise FormatError(
            f"document is {len(text)} base64 characters, above the maximum "
            f"for {cose.MAX_DOCUMENT_SIZE} bytes"
        )
    alphabet = b"-_" if b"-" in text or b"_" in text else b"+/"
    try:
        return base64.b64decode(text, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError) as error:
        raise FormatError(f"document is not valid base64: {error}") from None


def parse_message(data: bytes) -> ParsedMessage:
    """Decode the COSE_Sign1, its payload and its certificates."""
    message = cose.decode_sign1(data)
    document = parse_document(message.payload)
    leaf = load_certificate(document.certificate, what="certificate")
    cabundle = [
        load_certificate(der, what=f"cabundle[{position}]")
        for position, der in enumerate(document.cabundle)
    ]
    return ParsedMessage(message, document, leaf, cabundle)


def load_certificate(der: bytes, *, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise FormatError(f"{what} is not a DER X.509 certificate: {error}") from None


def verify_document(
    data: bytes,
    *,
    policy: Policy,
    root: x509.Certificate | None = None,
    at: datetime | None = None,
) -> VerificationReport:
    """Verify an attestation document and return every check's outcome.

    `data` is raw CBOR or base64. `root` defaults to the pinned AWS root and
    `at`, the verification clock, to now; `at` must carry a time zone.
    """
    if at is None:
        at = datetime.now(UTC)
    elif at.tzinfo is None:
        raise ValueError("at must be timezone-aware, such as datetime.now(UTC)")
    if root is None:
        root = load_root_certificate()
    try:
        parsed = parse_message(decode_document_encoding(data))
    except FormatError as error:
        log.debug("attestation document rejected: %s", error)
        return VerificationReport([Check("format", False, str(error))])
    checks = [
        describe_format(parsed),
        check_signature(parsed),
        check_chain(parsed.leaf, parsed.cabundle, root=root, at=at),
        *check_policy(parsed.document, policy, at=at),
    ]
    return VerificationReport(checks, parsed.document)


def describe_format(parsed: ParsedMessage) -> Check:
    form = "tagged" if parsed.message.tagged else "untagged"
    document = parsed.document
    return Check(
        "format",
        True,
        f"{form} COSE_Sign1, ES384, module {document.module_id}, "
        f"{len(document.pcrs)} PCRs, {len(document.cabundle)} CA certificates",
    )


def check_signature(parsed: ParsedMessage) -> Check:
    """Verify the COSE signature with the leaf certificate's P-384 key."""
    try:
        public_key = parsed.leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        return Check("signature", False, f"leaf certificate key is invalid: {error}")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP384R1
    ):
        return Check("signature", False, "leaf certificate key is not an EC P-384 key")
    try:
        cose.verify_es384(parsed.message, public_key)
    except InvalidSignature:
        return Check("signature", False, "ES384 signature does not match the leaf key")
    return Check("signature", True, "ES384 signature verifies with the leaf key")


def check_chain(
    leaf: x509.Certificate,
    cabundle: list[x509.Certificate],
    *,
    root: x509.Certificate,
    at: datetime,
) -> Check:
    """Check the chain leaf, cabundle[-1], ..., cabundle[1], pinned root."""
    try:
        chain = build_chain(leaf, cabundle, root=root)
        check_chain_signatures(chain)
        check_validity(chain, at=at)
        check_constraints(chain)
    except ChainError as error:
        return Check("chain", False, str(error))
    except (ValueError, UnsupportedAlgorithm) as error:
        # cryptography parses names, keys and extensions on first access.
        return Check("chain", False, f"invalid certificate in the chain: {error}")
    return Check(
        "chain",
        True,
        f"{len(chain)} certificates up to {root.subject.rfc4514_string()}, "
        f"valid at {at.isoformat()}",
    )


def build_chain(
    leaf: x509.Certificate,
    cabundle: list[x509.Certificate],
    *,
    root: x509.Certificate,
) -> list[tuple[str, x509.Certificate]]:
    """Return (label, certificate) pairs from the leaf up to the pinned root.

    The cabundle lists the root first; its first entry must be the pinned
    root itself, byte for byte.
    """
    if cabundle[0].public_bytes(Encoding.DER) != root.public_bytes(Encoding.DER):
        raise ChainError(
            f"cabundle[0] ({cabundle[0].subject.rfc4514_string()}, SHA-256 "
            f"{certificate_sha256(cabundle[0])}) is not the pinned root "
            f"(SHA-256 {certificate_sha256(root)})"
        )
    intermediates = [
        (f"cabundle[{position}]", certificate)
        for position, certificate in enumerate(cabundle)
        if position > 0
    ]
    return [("certificate", leaf), *reversed(intermediates), ("pinned root", root)]


def check_chain_signatures(chain: list[tuple[str, x509.Certificate]]) -> None:
    for (label, certificate), (issuer_label, issuer) in itertools.pairwise(chain):
        try:
            certificate.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as error:
            reason = str(error) or type(error).__name__
            raise ChainError(
                f"{label} ({certificate.subject.rfc4514_string()}) is not issued "
                f"by {issuer_label} ({issuer.subject.rfc4514_string()}): {reason}"
            ) from None


def check_validity(chain: list[tuple[str, x509.Certificate]], *, at: datetime) -> None:
    for label, certificate in chain:
        start = certificate.not_valid_before_utc
        end = certificate.not_valid_after_utc
        if not start <= at <= end:
            raise ChainError(
                f"{label} ({certificate.subject.rfc4514_string()}) is valid from "
                f"{start.isoformat()} to {end.isoformat()}, not at {at.isoformat()}"
            )


def check_constraints(chain: list[tuple[str, x509.Certificate]]) -> None:
    """Check basic constraints and key usage as RFC 5280 section 4.2.1 sets."""
    leaf_label, leaf = chain[0]
    leaf_constraints = extension(leaf, x509.BasicConstraints)
    if leaf_constraints is not None and leaf_constraints.value.ca:
        raise ChainError(f"{leaf_label} is a CA certificate, expected an end entity")
    leaf_usage = extension(leaf, x509.KeyUsage)
    if leaf_usage is None or not leaf_usage.value.digital_signature:
        raise ChainError(f"{leaf_label} key usage lacks digitalSignature")
    # The CA at chain position n has n - 1 intermediates below it.
    for position, (label, certificate) in enumerate(chain[1:], start=1):
        constraints = extension(certificate, x509.BasicConstraints)
        if constraints is None or not constraints.value.ca:
            raise ChainError(f"{label} is not a CA certificate (basic constraints)")
        if not constraints.critical:
            raise ChainError(f"{label} basic constraints are not marked critical")
        path_length = constraints.value.path_length
        if path_length is not None and position - 1 > path_length:
            raise ChainError(
                f"{label} allows {path_length} intermediates below it, "
                f"found {position - 1}"
            )
        usage = extension(certificate, x509.KeyUsage)
        if usage is None or not usage.value.key_cert_sign:
            raise ChainError(f"{label} key usage lacks keyCertSign")


def extension(certificate: x509.Certificate, kind: type[Any]) -> Any:
    """Return the certificate's extension of type `kind`, or None."""
    try:
        return certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def check_policy(
    document: AttestationDocument, policy: Policy, *, at: datetime
) -> list[Check]:
    """Compare the document with the policy; one check per rule."""
    checks = [
        check_pcr(document, index, expected)
        for index, expected in sorted(policy.pcrs.items())
    ]
    checks.append(check_debug_mode(document))
    if policy.nonce is not None:
        checks.append(check_bytes_field("nonce", document.nonce, policy.nonce))
    checks.append(check_timestamp(document, policy, at=at))
    if policy.public_key is not None:
        checks.append(
            check_bytes_field("public-key", document.public_key, policy.public_key)
        )
    if policy.user_data is not None:
        checks.append(
            check_bytes_field("user-data", document.user_data, policy.user_data)
        )
    return checks


def check_pcr(document: AttestationDocument, index: int, expected: bytes) -> Check:
    name = f"pcr{index}"
    actual = document.pcrs.get(index)
    if actual is None:
        return Check(name, False, f"document has no PCR{index}")
    if actual != expected:
        return Check(
            name, False, f"PCR{index} is {actual.hex()}, expected {expected.hex()}"
        )
    return Check(name, True, f"PCR{index} is {actual.hex()}")


def check_debug_mode(document: AttestationDocument) -> Check:
    """Reject an all-zero PCR0, PCR1 or PCR2, which marks a debug-mode enclave."""
    zeroed = [
        f"PCR{index}"
        for index in RELEASE_PCRS
        if index in document.pcrs and not any(document.pcrs[index])
    ]
    if zeroed:
        verb = "is" if len(zeroed) == 1 else "are"
        return Check(
            "debug-mode",
            False,
            f"{', '.join(zeroed)} {verb} all zeros, so the enclave ran in debug mode",
        )
    return Check("debug-mode", True, "PCR0, PCR1 and PCR2 are not all zeros")


def check_bytes_field(name: str, actual: bytes | None, expected: bytes) -> Check:
    if actual is None:
        return Check(name, False, f"document has no {name.replace('-', '_')}")
    if actual != expected:
        return Check(
            name,
            False,
            f"{describe_bytes(actual)} differs from the expected "
            f"{describe_bytes(expected)}",
        )
    return Check(name, True, f"{describe_bytes(actual)} matches")


def describe_bytes(value: bytes) -> str:
    """Show short values in hex and long ones by size and SHA-256."""
    if len(value) <= 32:
        return value.hex() or "empty"
    return f"{len(value)} bytes with SHA-256 {hashlib.sha256(value).hexdigest()}"


def check_timestamp(
    document: AttestationDocument, policy: Policy, *, at: datetime
) -> Check:
    stamp = document.timestamp
    age = at - stamp
    if -age > policy.max_clock_skew:
        return Check(
            "timestamp",
            False,
            f"timestamp {stamp.isoformat()} is {-age.total_seconds():.0f} s after "
            f"the verification time {at.isoformat()}",
        )
    if policy.max_age is not None and age > policy.max_age:
        return Check(
            "timestamp",
            False,
            f"timestamp {stamp.isoformat()} is {age.total_seconds():.0f} s old, "
            f"above the maximum age of {policy.max_age.total_seconds():.0f} s",
        )
    limit = (
        f"maximum {policy.max_age.total_seconds():.0f} s"
        if policy.max_age is not None
        else "no maximum age"
    )
    return Check(
        "timestamp",
        True,
        f"timestamp {stamp.isoformat()} is {age.total_seconds():.0f} s old ({limit})",
    )


def expected_pcrs(values: Mapping[str, str]) -> dict[int, bytes]:
    """Parse `{"pcr0": hex, ...}` into PCR indexes and bytes.

    Raise ValueError naming the key when a key or value is invalid.
    """
    pcrs: dict[int, bytes] = {}
    for key, value in values.items():
        match = PCR_KEY.fullmatch(key)
        if match is None or int(match[1]) > 31:
            raise ValueError(f"key {key!r} is not pcr0 to pcr31")
        if not isinstance(value, str):
            raise ValueError(f"{key} is not a hex string")
        try:
            content = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"{key} {value!r} is not hex") from None
        if len(content) != 48:
            raise ValueError(
                f"{key} is {len(content)} bytes, expected 48 (SHA-384, 96 hex digits)"
            )
        pcrs[int(match[1])] = content
    return pcrs
