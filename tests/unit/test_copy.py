"""Copy steps against AWS responses the emulator cannot give (botocore Stubber)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from botocore.stub import ANY, Stubber
from invoke import Context, Exit

from infra import copy, tags
from infra.aws import Aws
from infra.cli import copy as copy_tasks
from infra.config import REPO_ROOT, parse_config
from infra.poll import PollTimeout

REGION = "eu-west-1"
COPY_ID = "ami-0copy0000000000001"
SNAPSHOT_ID = "snap-0000000000000001"
SOURCE = copy.SourceImage(
    region="us-east-1",
    image_id="ami-0source00000000001",
    name="notary-0.1.0-0123456-aaaaaaaa",
    description="",
    tags={
        tags.PROJECT: "notary",
        tags.RELEASE: "0.1.0-0123456-aaaaaaaa",
        tags.PCR0: "a" * 96,
        tags.PCR1: "b" * 96,
        tags.PCR2: "c" * 96,
    },
    creation_date="2026-12-01T00:00:00.000Z",
    deprecation_time="2027-12-01T00:00:00.000Z",
)


class FakeClock:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """Return clients for target aws with fake credentials from the environment,
    so no credential lookup leaves the machine; every test stubs its calls.

    Module scope: building the clients dominates the run time of these tests.
    """
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        data = {
            **yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text()),
            "target": "aws",
        }
        data["regions"][1] = {**data["regions"][1], "kms_key_id": "alias/notary"}
        yield Aws(parse_config(data))


@pytest.fixture
def stub(aws: Aws) -> Iterator[Stubber]:
    with Stubber(aws.client("ec2", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def image(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "ImageId": COPY_ID,
        "State": state,
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": SNAPSHOT_ID}}
        ],
        **extra,
    }


def expect_describe(stub: Stubber, *images: dict[str, Any]) -> None:
    stub.add_response(
        "describe_images", {"Images": list(images)}, {"ImageIds": [COPY_ID]}
    )


def wait(
    aws: Aws,
    clock: FakeClock,
    *,
    timeout: float = 3600.0,
    not_found_grace: float = 300.0,
) -> dict[str, Any]:
    """Wait with a 60 s poll interval on the fake clock."""
    settings = copy.CopySettings(
        timeout=timeout, interval=60.0, not_found_grace=not_found_grace
    )
    return copy.wait_available(
        aws,
        REGION,
        COPY_ID,
        settings=settings,
        clock=clock,
        sleep=clock.sleep,
    )


def test_client_token_is_stable() -> None:
    first = copy.client_token(project="notary", release_id="r1", region=REGION)
    again = copy.client_token(project="notary", release_id="r1", region=REGION)
    assert first == again
    assert len(first) <= 64


def test_client_token_differs() -> None:
    base = copy.client_token(project="notary", release_id="r1", region=REGION)
    other_region = copy.client_token(
        project="notary", release_id="r1", region="sa-east-1"
    )
    retry = copy.client_token(
        project="notary", release_id="r1", region=REGION, retry_of="ami-1"
    )
    assert base != other_region
    assert base != retry


def test_start_copy_params(aws: Aws, stub: Stubber) -> None:
    stub.add_response(
        "copy_image",
        {"ImageId": COPY_ID},
        {
            "SourceImageId": SOURCE.image_id,
            "SourceRegion": "us-east-1",
            "Name": SOURCE.name,
            "Encrypted": True,
            "KmsKeyId": "alias/notary",
            "ClientToken": copy.client_token(
                project="notary", release_id=SOURCE.release_id, region=REGION
            ),
        },
    )
    assert copy.start_copy(aws, REGION, source=SOURCE) == COPY_ID


def test_wait_pending_then_failed(aws: Aws, stub: Stubber) -> None:
    clock = FakeClock()
    seen: list[tuple[str, float | None]] = []
    expect_describe(stub, image("pending"))
    stub.add_response(
        "describe_snapshots",
        {"Snapshots": [{"SnapshotId": SNAPSHOT_ID, "Progress": "40%"}]},
        {"SnapshotIds": [SNAPSHOT_ID]},
    )
    expect_describe(
        stub,
        image("failed", StateReason={"Code": "x", "Message": "snapshot copy failed"}),
    )
    with pytest.raises(copy.CopyFailed) as raised:
        copy.wait_available(
            aws,
            REGION,
            COPY_ID,
            settings=copy.CopySettings(timeout=3600, interval=60),
            progress=lambda _region, status, percent: seen.append((status, percent)),
            clock=clock,
            sleep=clock.sleep,
        )
    assert "snapshot copy failed" in str(raised.value)
    assert seen == [("pending", 40.0)]


def test_wait_retries_not_found(aws: Aws, stub: Stubber) -> None:
    clock = FakeClock()
    stub.add_client_error(
        "describe_images",
        "InvalidAMIID.NotFound",
        expected_params={"ImageIds": [COPY_ID]},
    )
    expect_describe(stub, image("available"))
    assert wait(aws, clock)["ImageId"] == COPY_ID
    assert clock.now == 60.0


def test_wait_not_found_too_long(aws: Aws, stub: Stubber) -> None:
    clock = FakeClock()
    for _ in range(3):
        stub.add_client_error("describe_images", "InvalidAMIID.NotFound")
    with pytest.raises(copy.CopyFailed) as raised:
        wait(aws, clock, not_found_grace=100.0)
    assert "still not found" in str(raised.value)


def test_wait_times_out(aws: Aws, stub: Stubber) -> None:
    clock = FakeClock()
    for _ in range(3):
        expect_describe(stub, image("pending", BlockDeviceMappings=[]))
    with pytest.raises(PollTimeout):
        wait(aws, clock, timeout=120.0)


def test_region_error_in_result(aws: Aws, stub: Stubber) -> None:
    for _ in range(2):
        stub.add_response("describe_images", {"Images": []})
    stub.add_client_error(
        "copy_image", "InvalidAMIID.Unavailable", "source not available"
    )
    result = copy.copy_to_region(
        aws, REGION, source=SOURCE, settings=copy.CopySettings(timeout=60, interval=1)
    )
    assert result.image_id is None
    assert result.error == "InvalidAMIID.Unavailable: source not available"


def test_copy_replaces_failed_copy(aws: Aws, stub: Stubber) -> None:
    stub.add_response("describe_images", {"Images": [image("failed")]})
    stub.add_response("deregister_image", {}, {"ImageId": COPY_ID})
    stub.add_response("delete_snapshot", {}, {"SnapshotId": SNAPSHOT_ID})
    stub.add_response(
        "copy_image",
        {"ImageId": "ami-0copy0000000000002"},
        {
            "SourceImageId": SOURCE.image_id,
            "SourceRegion": "us-east-1",
            "Name": SOURCE.name,
            "Encrypted": True,
            "KmsKeyId": "alias/notary",
            "ClientToken": copy.client_token(
                project="notary",
                release_id=SOURCE.release_id,
                region=REGION,
                retry_of=COPY_ID,
            ),
        },
    )
    stub.add_client_error("create_tags", "InvalidAMIID.NotFound")
    result = copy.copy_to_region(
        aws, REGION, source=SOURCE, settings=copy.CopySettings(timeout=60, interval=1)
    )
    assert result.error.startswith("InvalidAMIID.NotFound")


def test_imds_v2_set(aws: Aws, stub: Stubber) -> None:
    stub.add_response(
        "modify_image_attribute",
        {},
        {"ImageId": COPY_ID, "ImdsSupport": {"Value": "v2.0"}},
    )
    expect_describe(stub, image("available", ImdsSupport="v2.0"))
    assert copy.ensure_imds_v2(aws, REGION, image("available"))


def test_imds_v2_unchanged(aws: Aws, stub: Stubber) -> None:
    assert not copy.ensure_imds_v2(aws, REGION, image("available", ImdsSupport="v2.0"))


def test_imds_v2_not_stored(aws: Aws, stub: Stubber) -> None:
    stub.add_response("modify_image_attribute", {})
    expect_describe(stub, image("available"))
    with pytest.raises(copy.CopyFailed):
        copy.ensure_imds_v2(aws, REGION, image("available"))


def test_deprecation_set(aws: Aws, stub: Stubber) -> None:
    deprecate_at = datetime(2027, 12, 1, tzinfo=UTC)
    stub.add_response(
        "enable_image_deprecation",
        {"Return": True},
        {"ImageId": COPY_ID, "DeprecateAt": deprecate_at},
    )
    assert copy.ensure_deprecation(
        aws, REGION, image("available"), deprecate_at=deprecate_at
    )


def test_deprecation_unchanged(aws: Aws, stub: Stubber) -> None:
    current = image("available", DeprecationTime="2027-12-01T00:00:00.000Z")
    assert not copy.ensure_deprecation(
        aws, REGION, current, deprecate_at=datetime(2027, 12, 1, tzinfo=UTC)
    )


def test_deprecation_follows_source() -> None:
    assert copy.deprecation_time(SOURCE, deprecate_after_days=30) == datetime(
        2027, 12, 1, tzinfo=UTC
    )


def test_deprecation_from_creation() -> None:
    source = dataclasses.replace(SOURCE, deprecation_time=None)
    assert copy.deprecation_time(source, deprecate_after_days=30) == datetime(
        2026, 12, 31, tzinfo=UTC
    )


def test_verify_reports_tag_mismatch(aws: Aws, stub: Stubber) -> None:
    wrong = {**SOURCE.tags, tags.PCR0: "f" * 96}
    stub.add_response(
        "describe_images",
        {"Images": [image("pending", Tags=tags.to_list(wrong))]},
        {"Owners": ["self"], "Filters": ANY},
    )
    check = copy.verify_copy(aws, REGION, source=SOURCE)
    assert check.image_id == COPY_ID
    assert len(check.problems) == 2
    assert "pending" in check.problems[0]
    assert tags.PCR0 in check.problems[1]


def test_find_copy_other_release(aws: Aws, stub: Stubber) -> None:
    stub.add_response("describe_images", {"Images": []})
    other = image("available", Tags=[{"Key": tags.RELEASE, "Value": "other"}])
    stub.add_response("describe_images", {"Images": [other]})
    with pytest.raises(copy.CopyFailed):
        copy.find_copy(aws, REGION, source=SOURCE)


def test_task_rejects_unknown_region(monkeypatch: pytest.MonkeyPatch) -> None:
    connected: list[Any] = []
    monkeypatch.setattr(copy_tasks, "connect", connected.append)
    config = str(REPO_ROOT / "deploy.yaml")
    with pytest.raises(Exit) as raised:
        copy_tasks.copy(Context(), config=config, region=["eu-north-1"])
    assert "eu-north-1" in str(raised.value.message)
    assert connected == []


def test_copy_region_aws_flow(aws: Aws, stub: Stubber) -> None:
    for _ in range(2):
        stub.add_response("describe_images", {"Images": []})
    stub.add_response("copy_image", {"ImageId": COPY_ID})
    stub.add_response(
        "create_tags",
        {},
        {
            "Resources": [COPY_ID],
            "Tags": tags.to_list(copy.copy_tags(SOURCE, region=REGION)),
        },
    )
    stub.add_client_error("describe_images", "InvalidAMIID.NotFound")
    expect_describe(stub, image("available", ImdsSupport="v2.0"))
    stub.add_response(
        "enable_image_deprecation",
        {"Return": True},
        {"ImageId": COPY_ID, "DeprecateAt": datetime(2027, 12, 1, tzinfo=UTC)},
    )
    settings = copy.CopySettings(timeout=60, interval=0.01)
    result = copy.copy_to_region(aws, REGION, source=SOURCE, settings=settings)
    assert result.error == ""
    assert result.image_id == COPY_ID
    assert result.copied
