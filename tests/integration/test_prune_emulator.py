"""Prune old release AMIs in the emulator, keeping those in use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke import Context

from infra import prune
from infra.aws import Aws
from infra.cli import copy as copy_tasks
from infra.plan import Action

REGION = "us-east-1"


@pytest.fixture
def releases(aws: Aws, make_release_image: Any) -> list[str]:
    """Register four releases, oldest first, and return their AMI ids.

    The emulator stores creation dates to the second, so registrations are a
    second apart to give each release its own date.
    """
    image_ids = []
    for index in range(4):
        if index:
            time.sleep(1.05)
        image_id, _ = make_release_image(REGION, pcr0=f"{index}" * 96)
        image_ids.append(image_id)
    return image_ids


def use_images(aws: Aws, *, by_configuration: str, by_template: str) -> None:
    """Reference one AMI from an Auto Scaling group's launch configuration and
    another from a launch template version."""
    autoscaling = aws.client("autoscaling", REGION)
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="old-config",
        ImageId=by_configuration,
        InstanceType="m5.xlarge",
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="old-group",
        LaunchConfigurationName="old-config",
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=0,
        AvailabilityZones=[f"{REGION}a"],
    )
    aws.client("ec2", REGION).create_launch_template(
        LaunchTemplateName="old-template",
        LaunchTemplateData={"ImageId": by_template, "InstanceType": "m5.xlarge"},
    )


def image_states(aws: Aws, image_ids: list[str]) -> list[bool]:
    ec2 = aws.client("ec2", REGION)
    found = {
        image["ImageId"] for image in ec2.describe_images(Owners=["self"])["Images"]
    }
    return [image_id in found for image_id in image_ids]


def snapshot_ids(aws: Aws) -> set[str]:
    ec2 = aws.client("ec2", REGION)
    return {
        snapshot["SnapshotId"]
        for snapshot in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    }


def test_prune_plan_keeps_used(aws: Aws, releases: list[str]) -> None:
    use_images(aws, by_configuration=releases[0], by_template=releases[1])
    plan = prune.plan_region(aws, REGION, keep=1)
    amis = {entry.name: entry for entry in plan.entries if entry.resource == "ami"}
    assert sorted(amis) == sorted(releases[:3])
    assert amis[releases[0]].action is Action.UNCHANGED
    assert "old-group" in amis[releases[0]].detail
    assert amis[releases[1]].action is Action.UNCHANGED
    assert "launch template" in amis[releases[1]].detail
    assert amis[releases[2]].action is Action.DELETE
    snapshots = [entry for entry in plan.entries if entry.resource == "snapshot"]
    assert len(snapshots) == 1


def test_prune_task_dry_run_then_apply(
    aws: Aws,
    releases: list[str],
    tmp_path: Path,
    config_data: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_images(aws, by_configuration=releases[0], by_template=releases[1])
    monkeypatch.setattr(copy_tasks, "connect", lambda _config: aws)
    config = tmp_path / "deploy.yaml"
    config.write_text(yaml.safe_dump(config_data))
    snapshots_before = snapshot_ids(aws)

    copy_tasks.prune(
        Context(), config=str(config), keep=1, dry_run=True, region=[REGION]
    )
    assert "would delete" in capsys.readouterr().out
    assert image_states(aws, releases) == [True, True, True, True]

    copy_tasks.prune(Context(), config=str(config), keep=1, region=[REGION])
    assert image_states(aws, releases) == [True, True, False, True]
    removed = snapshots_before - snapshot_ids(aws)
    assert len(removed) == 1
