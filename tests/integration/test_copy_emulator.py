"""Copy a release AMI across the emulator's regions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.awsrequest import AWSResponse, HTTPHeaders
from invoke import Context, Exit

from infra import copy, tags
from infra.aws import Aws
from infra.cli import copy as copy_tasks
from infra.releases import resolve_release

SETTINGS = copy.CopySettings(timeout=30, interval=0.01, not_found_grace=5)
DESTINATIONS = ["eu-west-1", "ap-northeast-1", "sa-east-1"]


@pytest.fixture
def source(aws: Aws, make_release_image: Any) -> copy.SourceImage:
    make_release_image("us-east-1")
    return copy.describe_source(aws, resolve_release(aws, None))


def count_copy_image(aws: Aws, regions: list[str]) -> list[str]:
    """Record the region of every CopyImage request from now on."""
    seen: list[str] = []
    for region in regions:
        client = aws.client("ec2", region)
        client.meta.events.register(
            "before-parameter-build.ec2.CopyImage",
            lambda region=region, **_: seen.append(region),
        )
    return seen


def fail_copy_image(aws: Aws, region: str, code: str) -> None:
    """Make CopyImage in `region` return an AWS error response."""

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": code, "Message": f"simulated {code}"}
        return AWSResponse("https://ec2", 400, HTTPHeaders(), None), {"Error": error}

    aws.client("ec2", region).meta.events.register("before-call.ec2.CopyImage", answer)


def run_copy(aws: Aws, source: copy.SourceImage) -> list[copy.CopyResult]:
    return copy.copy_release(
        aws,
        source=source,
        regions=aws.config.region_names,
        settings=SETTINGS,
        concurrency=4,
    )


def test_copy_four_regions(
    aws: Aws, source: copy.SourceImage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="infra.copy")
    results = run_copy(aws, source)
    assert [result.region for result in results] == aws.config.region_names
    assert all(result.ok for result in results)
    assert results[0].image_id == source.image_id
    copies = {result.image_id for result in results[1:]}
    assert len(copies) == 3
    assert source.image_id not in copies
    assert all(result.copied for result in results[1:])
    for result in results[1:]:
        ec2 = aws.client("ec2", result.region)
        image = ec2.describe_images(ImageIds=[result.image_id])["Images"][0]
        found = tags.from_list(image["Tags"])
        for key in copy.IDENTITY_TAGS:
            assert found[key] == source.tags[key]
        assert found[tags.REGION] == result.region
        assert found[tags.SOURCE_IMAGE] == f"us-east-1:{source.image_id}"
        assert image["Name"] == source.name
    checks = copy.verify_release(aws, source=source, regions=aws.config.region_names)
    assert [check.problems for check in checks] == [[], [], [], []]
    messages = [record.getMessage() for record in caplog.records]
    assert any("stores no ImdsSupport" in message for message in messages)
    assert any("lacks EnableImageDeprecation" in message for message in messages)


def test_rerun_calls_no_copy_image(aws: Aws, source: copy.SourceImage) -> None:
    first = run_copy(aws, source)
    seen = count_copy_image(aws, DESTINATIONS)
    second = run_copy(aws, source)
    assert seen == []
    assert [result.image_id for result in second] == [
        result.image_id for result in first
    ]
    assert not any(result.copied for result in second)


def test_rerun_completes_untagged_copy(aws: Aws, source: copy.SourceImage) -> None:
    # A crash right after CopyImage leaves a copy without tags.
    crashed = copy.start_copy(aws, "eu-west-1", source=source)
    seen = count_copy_image(aws, DESTINATIONS)
    result = copy.copy_to_region(aws, "eu-west-1", source=source, settings=SETTINGS)
    assert seen == []
    assert result.image_id == crashed
    ec2 = aws.client("ec2", "eu-west-1")
    image = ec2.describe_images(ImageIds=[crashed])["Images"][0]
    assert tags.from_list(image["Tags"])[tags.RELEASE] == source.release_id


def test_failed_region_then_rerun(aws: Aws, source: copy.SourceImage) -> None:
    fail_copy_image(aws, "ap-northeast-1", "InvalidRequest")
    results = {result.region: result for result in run_copy(aws, source)}
    assert results["ap-northeast-1"].error == (
        "InvalidRequest: simulated InvalidRequest"
    )
    assert results["ap-northeast-1"].image_id is None
    assert results["eu-west-1"].ok
    assert results["sa-east-1"].ok

    # New clients drop the failing hook, as a second process would.
    fresh = Aws(aws.config, endpoint_url=aws.endpoint_url)
    seen = count_copy_image(fresh, DESTINATIONS)
    rerun = run_copy(fresh, source)
    assert seen == ["ap-northeast-1"]
    assert all(result.ok for result in rerun)


def write_config(tmp_path: Path, config_data: dict[str, Any]) -> str:
    path = tmp_path / "deploy.yaml"
    data = {**config_data, "copy": {"poll_seconds": 0.01}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def use_clients(monkeypatch: pytest.MonkeyPatch, aws: Aws) -> None:
    monkeypatch.setattr(copy_tasks, "connect", lambda _config: aws)


def test_task_prints_json(
    aws: Aws,
    source: copy.SourceImage,
    tmp_path: Path,
    config_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_clients(monkeypatch, aws)
    config = write_config(tmp_path, config_data)
    copy_tasks.copy(
        Context(), config=config, region=["us-east-1", "eu-west-1"], json=True
    )
    mapping = json.loads(capsys.readouterr().out)
    assert sorted(mapping) == ["eu-west-1", "us-east-1"]
    assert mapping["us-east-1"] == source.image_id


def test_task_fails_on_failed_region(
    aws: Aws,
    source: copy.SourceImage,
    tmp_path: Path,
    config_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_clients(monkeypatch, aws)
    fail_copy_image(aws, "sa-east-1", "InvalidRequest")
    config = write_config(tmp_path, config_data)
    with pytest.raises(Exit) as raised:
        copy_tasks.copy(Context(), config=config, region=["us-east-1", "sa-east-1"])
    assert raised.value.code == 1
    assert "sa-east-1" in str(raised.value.message)
