"""Copy a release's AMI from the home region to other regions.

Each destination region goes through the same small steps, and a test can
call each one alone. The steps find an earlier copy or start one, tag it,
wait until it is available, set its IMDS support and deprecation time, and
verify it.
Every step checks AWS first, so a re-run after a crash or a failed region
only does what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from infra import tags
from infra.aws import Aws, error_code
from infra.poll import PollTimeout, poll
from infra.releases import ReleaseImage

log = logging.getLogger(__name__)

# Tags that must match between the source and every copy.
IDENTITY_TAGS = (tags.RELEASE, tags.PCR0, tags.PCR1, tags.PCR2)
# Image states after which a copy will never become available.
DEAD_STATES = frozenset({"failed", "error", "invalid", "deregistered"})
# How long describe calls may return InvalidAMIID.NotFound for a fresh copy.
NOT_FOUND_GRACE_SECONDS = 300.0

# Called with (region, status, snapshot progress percent or None).
ProgressCallback = Callable[[str, str, float | None], None]


class CopyFailed(Exception):
    """A region's copy cannot complete, for the cause the message names."""


@dataclass(frozen=True)
class SourceImage:
    """The release AMI in the home region that copies are made from."""

    region: str
    image_id: str
    name: str
    description: str
    tags: dict[str, str]
    creation_date: str
    deprecation_time: str | None

    @property
    def release_id(self) -> str:
        return self.tags.get(tags.RELEASE, "")


@dataclass(frozen=True)
class CopySettings:
    """How long to wait for a copy and how often to look."""

    timeout: float
    interval: float
    not_found_grace: float = NOT_FOUND_GRACE_SECONDS
    deprecate_after_days: int = 365


@dataclass(frozen=True)
class CopyResult:
    """The outcome in one region: an AMI id, or the error that stopped it."""

    region: str
    image_id: str | None
    copied: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class Verification:
    """The final check's findings about one region's copy."""

    region: str
    image_id: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def describe_source(aws: Aws, release: ReleaseImage) -> SourceImage:
    """Read the name, tags and deprecation time of the release's home AMI."""
    ec2 = aws.client("ec2", release.region)
    image = ec2.describe_images(ImageIds=[release.image_id])["Images"][0]
    return SourceImage(
        region=release.region,
        image_id=release.image_id,
        name=image["Name"],
        description=image.get("Description", ""),
        tags=tags.from_list(image.get("Tags")),
        creation_date=image.get("CreationDate", ""),
        deprecation_time=image.get("DeprecationTime"),
    )


def client_token(
    *, project: str, release_id: str, region: str, retry_of: str = ""
) -> str:
    """Return the CopyImage idempotency token for a release in a region.

    The same inputs give the same token, so CopyImage repeated after a crash
    returns the first copy. `retry_of` names a failed copy to replace, because
    AWS would return that failed image for the original token.
    """
    seed = f"{project}\n{release_id}\n{region}\n{retry_of}"
    return "notary-copy-" + hashlib.sha256(seed.encode()).hexdigest()[:40]


def copy_tags(source: SourceImage, *, region: str) -> dict[str, str]:
    """Return the tags a copy carries: the source's, plus where it came from."""
    return {
        **source.tags,
        tags.SOURCE_IMAGE: f"{source.region}:{source.image_id}",
        tags.REGION: region,
    }


def find_copy(aws: Aws, region: str, *, source: SourceImage) -> dict[str, Any] | None:
    """Return the release's AMI in `region`, found by tags or else by name.

    The name lookup finds a copy that a crash left untagged: AMI names are
    unique per account and region, and a copy takes the source's name.
    """
    ec2 = aws.client("ec2", region)
    by_tags = [
        {"Name": f"tag:{tags.PROJECT}", "Values": [aws.config.project]},
        {"Name": f"tag:{tags.RELEASE}", "Values": [source.release_id]},
    ]
    images = _describe_images(ec2, by_tags)
    if not images:
        images = _describe_images(ec2, [{"Name": "name", "Values": [source.name]}])
    live = [image for image in images if image.get("State") not in DEAD_STATES]
    candidates = live or images
    if not candidates:
        return None
    candidates.sort(key=lambda image: image.get("CreationDate", ""), reverse=True)
    image = candidates[0]
    found_release = tags.from_list(image.get("Tags")).get(tags.RELEASE)
    if found_release not in (None, source.release_id):
        raise CopyFailed(
            f"AMI {image['ImageId']} named {source.name} in {region} belongs to "
            f"release {found_release}: deregister it or rename the source"
        )
    return image


def _describe_images(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    paginator = ec2.get_paginator("describe_images")
    images: list[dict[str, Any]] = []
    for page in paginator.paginate(Owners=["self"], Filters=filters):
        images.extend(page["Images"])
    return images


def start_copy(
    aws: Aws, region: str, *, source: SourceImage, retry_of: str = ""
) -> str:
    """Call CopyImage in `region`, encrypted, and return the new image id."""
    request: dict[str, Any] = {
        "SourceImageId": source.image_id,
        "SourceRegion": source.region,
        "Name": source.name,
        "Encrypted": True,
        "ClientToken": client_token(
            project=aws.config.project,
            release_id=source.release_id,
            region=region,
            retry_of=retry_of,
        ),
    }
    if source.description:
        request["Description"] = source.description
    kms_key_id = aws.config.region(region).kms_key_id
    if kms_key_id:
        request["KmsKeyId"] = kms_key_id
    image_id = str(aws.client("ec2", region).copy_image(**request)["ImageId"])
    log.info("Copying %s to %s as %s", source.image_id, region, image_id)
    return image_id


def tag_copy(
    aws: Aws,
    region: str,
    image_id: str,
    *,
    source: SourceImage,
    current: dict[str, str],
) -> bool:
    """Apply the source's tags to the copy; return whether any were missing."""
    expected = copy_tags(source, region=region)
    missing = {
        key: value for key, value in expected.items() if current.get(key) != value
    }
    if not missing:
        return False
    aws.client("ec2", region).create_tags(
        Resources=[image_id], Tags=tags.to_list(missing)
    )
    log.info("Tagged %s in %s with %d tags", image_id, region, len(missing))
    return True


def snapshot_progress(aws: Aws, region: str, image: dict[str, Any]) -> float | None:
    """Return the mean progress percent of the image's snapshots, if reported."""
    snapshot_ids = _snapshot_ids(image)
    if not snapshot_ids:
        return None
    ec2 = aws.client("ec2", region)
    try:
        snapshots = ec2.describe_snapshots(SnapshotIds=snapshot_ids)["Snapshots"]
    except ClientError as error:
        log.debug("No snapshot progress for %s: %s", image["ImageId"], error)
        return None
    values = [
        float(snapshot["Progress"].rstrip("%"))
        for snapshot in snapshots
        if snapshot.get("Progress")
    ]
    return sum(values) / len(values) if values else None


def _snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [
        mapping["Ebs"]["SnapshotId"]
        for mapping in image.get("BlockDeviceMappings", [])
        if mapping.get("Ebs", {}).get("SnapshotId")
    ]


def wait_available(
    aws: Aws,
    region: str,
    image_id: str,
    *,
    settings: CopySettings,
    progress: ProgressCallback | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the copy until it is available and return its description.

    InvalidAMIID.NotFound is retried for `settings.not_found_grace` seconds,
    because describe calls lag behind a fresh CopyImage. A failed copy
    raises CopyFailed with AWS's state reason.
    """
    ec2 = aws.client("ec2", region)
    started = clock()

    def check() -> dict[str, Any] | None:
        try:
            images = ec2.describe_images(ImageIds=[image_id])["Images"]
        except ClientError as error:
            if error_code(error) != "InvalidAMIID.NotFound":
                raise
            images = []
        if not images:
            if clock() - started > settings.not_found_grace:
                raise CopyFailed(
                    f"copy {image_id} in {region} is still not found after "
                    f"{settings.not_found_grace:.0f} s: re-run the copy"
                ) from None
            _report(progress, region, "not found yet", None)
            return None
        image = images[0]
        state = image.get("State", "")
        if state == "available":
            _report(progress, region, "available", 100.0)
            return dict(image)
        if state in DEAD_STATES:
            reason = image.get("StateReason", {}).get("Message", "no reason given")
            raise CopyFailed(f"copy {image_id} in {region} is {state}: {reason}")
        _report(progress, region, state, snapshot_progress(aws, region, image))
        return None

    return poll(
        check,
        timeout=settings.timeout,
        interval=settings.interval,
        description=f"copy {image_id} in {region} to become available",
        clock=clock,
        sleep=sleep,
    )


def _report(
    progress: ProgressCallback | None, region: str, status: str, percent: float | None
) -> None:
    if progress is not None:
        progress(region, status, percent)


def ensure_imds_v2(aws: Aws, region: str, image: dict[str, Any]) -> bool:
    """Set ImdsSupport v2.0 on the copy unless set; return whether it changed.

    The emulator accepts ModifyImageAttribute but stores nothing, so on
    target local an unchanged attribute only logs a warning.
    """
    if image.get("ImdsSupport") == "v2.0":
        return False
    ec2 = aws.client("ec2", region)
    image_id = image["ImageId"]
    ec2.modify_image_attribute(ImageId=image_id, ImdsSupport={"Value": "v2.0"})
    # NOTE: that DescribeImages on AWS shows ImdsSupport at once after the
    # change is assumed, not observed; only stubbed responses test it.
    after = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    if after.get("ImdsSupport") == "v2.0":
        log.info("Set ImdsSupport v2.0 on %s in %s", image_id, region)
    elif not aws.local:
        raise CopyFailed(
            f"ImdsSupport of {image_id} in {region} is still "
            f"{after.get('ImdsSupport')!r} after setting v2.0"
        )
    else:
        log.warning(
            "The emulator stores no ImdsSupport: %s in %s is unchecked",
            image_id,
            region,
        )
    return True


def deprecation_time(source: SourceImage, *, deprecate_after_days: int) -> datetime:
    """Return when copies are deprecated: the source's deprecation time, or its
    creation date plus `deprecate_after_days` when the source has none."""
    if source.deprecation_time:
        return _parse_time(source.deprecation_time)
    created = _parse_time(source.creation_date) if source.creation_date else None
    base = created or datetime.now(UTC)
    return base + timedelta(days=deprecate_after_days)


def ensure_deprecation(
    aws: Aws, region: str, image: dict[str, Any], *, deprecate_at: datetime
) -> bool:
    """Set the copy's deprecation time unless it matches to the minute; return
    whether it changed.

    The emulator lacks EnableImageDeprecation (HTTP 500), so on target local
    that response only logs a warning.
    """
    current = image.get("DeprecationTime")
    expected = deprecate_at.replace(second=0, microsecond=0)
    if current and _parse_time(current).replace(second=0, microsecond=0) == expected:
        return False
    image_id = image["ImageId"]
    try:
        aws.client("ec2", region).enable_image_deprecation(
            ImageId=image_id, DeprecateAt=expected
        )
    except ResponseParserError:
        if not aws.local:
            raise
        log.warning(
            "The emulator lacks EnableImageDeprecation: %s in %s has no "
            "deprecation time",
            image_id,
            region,
        )
        return False
    log.info("Set deprecation of %s in %s to %s", image_id, region, expected)
    return True


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def copy_to_region(
    aws: Aws,
    region: str,
    *,
    source: SourceImage,
    settings: CopySettings,
    progress: ProgressCallback | None = None,
) -> CopyResult:
    """Bring one region's copy to available, tagged and configured.

    AWS failures come back in the result instead of raising, so one failed
    region does not stop the others.
    """
    if region == source.region:
        _report(progress, region, "source", 100.0)
        return CopyResult(region, source.image_id)
    try:
        return _copy_to_region(
            aws, region, source=source, settings=settings, progress=progress
        )
    except (ClientError, BotoCoreError, CopyFailed, PollTimeout) as error:
        message = _describe_error(error)
        log.error("Copy to %s failed: %s", region, message)
        _report(progress, region, "failed", None)
        return CopyResult(region, None, error=message)


def _copy_to_region(
    aws: Aws,
    region: str,
    *,
    source: SourceImage,
    settings: CopySettings,
    progress: ProgressCallback | None,
) -> CopyResult:
    _report(progress, region, "looking up", None)
    image = find_copy(aws, region, source=source)
    copied = False
    if image is None or image.get("State") in DEAD_STATES:
        retry_of = image["ImageId"] if image else ""
        if image is not None:
            log.warning(
                "Replacing %s copy %s in %s", image.get("State"), retry_of, region
            )
            ec2 = aws.client("ec2", region)
            ec2.deregister_image(ImageId=retry_of)
            for snapshot_id in _snapshot_ids(image):
                ec2.delete_snapshot(SnapshotId=snapshot_id)
        image_id = start_copy(aws, region, source=source, retry_of=retry_of)
        current: dict[str, str] = {}
        copied = True
    else:
        image_id = image["ImageId"]
        current = tags.from_list(image.get("Tags"))
        log.info("Reusing copy %s in %s", image_id, region)
    # Tag at once, so a later run finds the copy by its tags even while pending.
    tag_copy(aws, region, image_id, source=source, current=current)
    available = wait_available(
        aws, region, image_id, settings=settings, progress=progress
    )
    ensure_imds_v2(aws, region, available)
    deprecate_at = deprecation_time(
        source, deprecate_after_days=settings.deprecate_after_days
    )
    ensure_deprecation(aws, region, available, deprecate_at=deprecate_at)
    return CopyResult(region, image_id, copied=copied)


def _describe_error(error: Exception) -> str:
    if isinstance(error, ClientError):
        message = error.response.get("Error", {}).get("Message", str(error))
        return f"{error_code(error)}: {message}"
    return str(error)


def copy_release(
    aws: Aws,
    *,
    source: SourceImage,
    regions: list[str],
    settings: CopySettings,
    concurrency: int,
    progress: ProgressCallback | None = None,
) -> list[CopyResult]:
    """Copy the source to every region, `concurrency` regions at a time, and
    return one result per region in the order given."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [
            pool.submit(
                copy_to_region,
                aws,
                region,
                source=source,
                settings=settings,
                progress=progress,
            )
            for region in regions
        ]
        return [future.result() for future in futures]


def verify_copy(aws: Aws, region: str, *, source: SourceImage) -> Verification:
    """Check that the region's copy exists, is available and carries the
    source's release id and PCR tags."""
    if region == source.region:
        image: dict[str, Any] | None = aws.client("ec2", region).describe_images(
            ImageIds=[source.image_id]
        )["Images"][0]
    else:
        image = find_copy(aws, region, source=source)
    if image is None:
        return Verification(region, None, [f"no AMI of {source.release_id}"])
    problems: list[str] = []
    if image.get("State") != "available":
        problems.append(f"state is {image.get('State')}, not available")
    found = tags.from_list(image.get("Tags"))
    for key in IDENTITY_TAGS:
        if found.get(key) != source.tags.get(key):
            problems.append(
                f"tag {key} is {found.get(key)!r}, expected {source.tags.get(key)!r}"
            )
    return Verification(region, image["ImageId"], problems)


def verify_release(
    aws: Aws, *, source: SourceImage, regions: list[str]
) -> list[Verification]:
    """Verify every region's copy; AWS errors count as problems."""
    results = []
    for region in regions:
        try:
            results.append(verify_copy(aws, region, source=source))
        except (ClientError, BotoCoreError, CopyFailed) as error:
            results.append(Verification(region, None, [_describe_error(error)]))
    return results
