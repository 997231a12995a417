"""Tasks for the verify stage: check an enclave's attestation document."""

from __future__ import annotations

import json as json_module
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from invoke import Exit

from enclave.attestation import (
    Policy,
    VerificationReport,
    expected_pcrs,
    verify_document,
)
from enclave.cose import MAX_DOCUMENT_SIZE
from enclave.manifest import ReleaseManifest
from infra.cli import CONFIG_HELP, connect, notary_task, open_config, print_json
from infra.errors import UserError
from infra.releases import resolve_release

DEFAULT_MAX_AGE_SECONDS = 300
# Base64 of the largest accepted document, with room for line breaks.
MAX_INPUT_BYTES = MAX_DOCUMENT_SIZE * 2


def read_document(path: str) -> bytes:
    """Read at most MAX_INPUT_BYTES + 1 bytes: the verifier rejects the excess."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(MAX_INPUT_BYTES + 1)
    except OSError as error:
        raise UserError(
            f"cannot read document {path}: {error.strerror}: check --document"
        ) from None


def load_expected_file(path: str) -> dict[int, bytes]:
    """Read `{"pcr0": hex, "pcr1": hex, "pcr2": hex}` from a JSON file."""
    try:
        values = json_module.loads(Path(path).read_text())
    except OSError as error:
        raise UserError(f"cannot read --expected {path}: {error.strerror}") from None
    except json_module.JSONDecodeError as error:
        raise UserError(f"--expected {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise UserError(
            f'--expected {path} must be a JSON object such as {{"pcr0": "<hex>"}}'
        )
    pcrs = parse_pcrs(values, source=f"--expected {path}")
    missing = [f"pcr{index}" for index in (0, 1, 2) if index not in pcrs]
    if missing:
        raise UserError(f"--expected {path} lacks {', '.join(missing)}: add them")
    return pcrs


def parse_pcrs(values: dict[str, Any], *, source: str) -> dict[int, bytes]:
    try:
        return expected_pcrs(values)
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None


def manifest_pcrs(manifest: ReleaseManifest, *, source: str) -> dict[int, bytes]:
    """Return the PCRs a release manifest pins: PCR0-2, and PCR8 when signed."""
    values = {"pcr0": manifest.pcr0, "pcr1": manifest.pcr1, "pcr2": manifest.pcr2}
    if manifest.pcr8:
        values["pcr8"] = manifest.pcr8
    return parse_pcrs(values, source=source)


def load_release_pcrs(release: str, *, config_path: str | None) -> dict[int, bytes]:
    """Read the PCRs from a manifest file, or else from a release's AMI tags."""
    path = Path(release)
    if path.is_file():
        try:
            manifest = ReleaseManifest.load(path)
        except (
            json_module.JSONDecodeError,
            UnicodeDecodeError,
            TypeError,
            AttributeError,
        ) as error:
            raise UserError(
                f"--release {release} is not a release manifest: {error}"
            ) from None
        return manifest_pcrs(manifest, source=f"manifest {release}")
    if release.endswith(".json"):
        raise UserError(f"release manifest {release} not found: check --release")
    aws = connect(open_config(config_path))
    image = resolve_release(aws, release)
    try:
        manifest = ReleaseManifest.from_image_tags(image.tags)
    except KeyError as error:
        raise UserError(
            f"AMI {image.image_id} in {image.region} lacks tag {error.args[0]}: "
            "re-run invoke bake for this release"
        ) from None
    return manifest_pcrs(manifest, source=f"AMI {image.image_id} tags")


def parse_hex(value: str | None, *, option: str) -> bytes | None:
    if value is None:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise UserError(f"{option} {value!r} is not hex: pass hex digits") from None


def parse_time(value: str | None) -> datetime | None:
    """Parse ISO 8601; a time without an offset is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"--at {value!r} is not ISO 8601: use a form such as 2024-09-06T04:34:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def print_report(report: VerificationReport) -> None:
    for check in report.checks:
        status = "PASS" if check.passed else "FAIL"
        print(f"{status}  {check.name:<11} {check.detail}")
    failed = report.failed
    if failed:
        names = ", ".join(check.name for check in failed)
        print(f"verification failed: {len(failed)} of {len(report.checks)} ({names})")
    else:
        print(f"verified: all {len(report.checks)} checks passed")


@notary_task(
    help={
        "document": "attestation document file, raw CBOR or base64 (required)",
        "release": "release whose PCRs to expect: a release manifest JSON file, "
        "or a release id whose AMI tags are read through --config",
        "expected": 'JSON file {"pcr0": hex, "pcr1": hex, "pcr2": hex} with the '
        "expected PCRs, instead of --release",
        "config": CONFIG_HELP + ", read only for a release id",
        "nonce": "hex nonce the document must carry (default: not checked)",
        "max_age": "maximum document age in seconds at the verification time "
        f"(default {DEFAULT_MAX_AGE_SECONDS})",
        "at": "verification time, ISO 8601; UTC when no offset is given (default: now)",
        "public_key": "hex public_key the document must carry (default: not checked)",
        "user_data": "hex user_data the document must carry (default: not checked)",
        "json": "print the checks as JSON (default off)",
    }
)
def verify(
    context: Any,
    document: str = "",
    release: str | None = None,
    expected: str | None = None,
    config: str | None = None,
    nonce: str | None = None,
    max_age: int = DEFAULT_MAX_AGE_SECONDS,
    at: str | None = None,
    public_key: str | None = None,
    user_data: str | None = None,
    json: bool = False,
) -> None:
    """Verify an enclave's attestation document against a release's PCRs."""
    if not document:
        raise UserError("missing --document FILE: the attestation document to verify")
    if release is not None and expected is not None:
        raise UserError("pass --release or --expected, not both")
    if max_age <= 0:
        raise UserError(f"--max-age {max_age} must be a positive number of seconds")
    if release is not None:
        pcrs = load_release_pcrs(release, config_path=config)
    elif expected is not None:
        pcrs = load_expected_file(expected)
    else:
        raise UserError("pass --release or --expected to set the expected PCRs")
    policy = Policy(
        pcrs=pcrs,
        nonce=parse_hex(nonce, option="--nonce"),
        max_age=timedelta(seconds=max_age),
        public_key=parse_hex(public_key, option="--public-key"),
        user_data=parse_hex(user_data, option="--user-data"),
    )
    clock = parse_time(at) or datetime.now(UTC)
    report = verify_document(read_document(document), policy=policy, at=clock)
    if json:
        print_json({**report.to_dict(), "at": clock.isoformat()})
    else:
        print_report(report)
    if not report.ok:
        raise Exit(code=1)


# The tasks this module adds to the command line.
TASKS: list[Any] = [verify]
