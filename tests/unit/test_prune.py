"""Prune decisions from stubbed EC2 and Auto Scaling responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from botocore.stub import Stubber

from infra import prune, tags
from infra.aws import Aws
from infra.config import REPO_ROOT, parse_config
from infra.plan import Action, Plan

REGION = "eu-west-1"


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
        yield Aws(parse_config(data))


@pytest.fixture
def ec2(aws: Aws) -> Iterator[Stubber]:
    with Stubber(aws.client("ec2", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def autoscaling(aws: Aws) -> Iterator[Stubber]:
    with Stubber(aws.client("autoscaling", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def image(number: int, release: str, created: str) -> prune.Image:
    return prune.Image(f"ami-{number:017d}", release, created, [f"snap-{number:017d}"])


def described(item: prune.Image) -> dict[str, Any]:
    return {
        "ImageId": item.image_id,
        "CreationDate": item.creation_date,
        "Tags": [{"Key": tags.RELEASE, "Value": item.release_id}],
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": item.snapshot_ids[0]}}
        ],
    }


IMAGES = [
    image(1, "r1", "2026-01-01T00:00:00.000Z"),
    image(2, "r2", "2026-02-01T00:00:00.000Z"),
    # r1 was copied again later, which makes it newer than r2.
    image(3, "r1", "2026-03-01T00:00:00.000Z"),
    image(4, "r3", "2026-04-01T00:00:00.000Z"),
    image(5, "r4", "2026-05-01T00:00:00.000Z"),
]


def test_releases_to_prune_by_newest() -> None:
    assert prune.releases_to_prune(IMAGES, keep=2) == ["r1", "r2"]


def test_releases_to_prune_keep_all() -> None:
    assert prune.releases_to_prune(IMAGES, keep=4) == []


def test_groups_in_use(aws: Aws, ec2: Stubber, autoscaling: Stubber) -> None:
    ec2.add_response("describe_launch_templates", {"LaunchTemplates": []})
    autoscaling.add_response(
        "describe_auto_scaling_groups",
        {
            "AutoScalingGroups": [
                group("by-template", LaunchTemplate={"LaunchTemplateName": "notary"}),
                group("by-config", LaunchConfigurationName="lc"),
                group(
                    "mixed",
                    MixedInstancesPolicy={
                        "LaunchTemplate": {
                            "LaunchTemplateSpecification": {
                                "LaunchTemplateId": "lt-2",
                                "Version": "3",
                            }
                        }
                    },
                ),
            ]
        },
    )
    ec2.add_response(
        "describe_launch_templates",
        {"LaunchTemplates": [{"LaunchTemplateId": "lt-1"}]},
        {"LaunchTemplateNames": ["notary"]},
    )
    ec2.add_response(
        "describe_launch_template_versions",
        {"LaunchTemplateVersions": [version(1, IMAGES[0].image_id)]},
        {"LaunchTemplateId": "lt-1", "Versions": ["$Default"]},
    )
    autoscaling.add_response(
        "describe_launch_configurations",
        {"LaunchConfigurations": [configuration("lc", IMAGES[1].image_id)]},
        {"LaunchConfigurationNames": ["lc"]},
    )
    ec2.add_response(
        "describe_launch_template_versions",
        {"LaunchTemplateVersions": [version(3, IMAGES[2].image_id)]},
        {"LaunchTemplateId": "lt-2", "Versions": ["3"]},
    )
    used = prune.images_in_use(aws, REGION)
    assert used == {
        IMAGES[0].image_id: "Auto Scaling group by-template",
        IMAGES[1].image_id: "Auto Scaling group by-config",
        IMAGES[2].image_id: "Auto Scaling group mixed",
    }


def test_template_versions_in_use(aws: Aws, ec2: Stubber, autoscaling: Stubber) -> None:
    ec2.add_response(
        "describe_launch_templates", {"LaunchTemplates": [{"LaunchTemplateId": "lt-1"}]}
    )
    ec2.add_response(
        "describe_launch_template_versions",
        {
            "LaunchTemplateVersions": [
                version(1, IMAGES[0].image_id),
                version(2, IMAGES[3].image_id),
            ]
        },
        {"LaunchTemplateId": "lt-1"},
    )
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []})
    used = prune.images_in_use(aws, REGION)
    assert used[IMAGES[0].image_id] == "launch template lt-1 version 1"
    assert used[IMAGES[3].image_id] == "launch template lt-1 version 2"


def test_plan_keeps_used_and_newest(
    aws: Aws, ec2: Stubber, autoscaling: Stubber
) -> None:
    ec2.add_response(
        "describe_images", {"Images": [described(item) for item in IMAGES]}
    )
    ec2.add_response(
        "describe_launch_templates", {"LaunchTemplates": [{"LaunchTemplateId": "lt-1"}]}
    )
    ec2.add_response(
        "describe_launch_template_versions",
        {"LaunchTemplateVersions": [version(7, IMAGES[1].image_id)]},
    )
    autoscaling.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []})
    plan = prune.plan_region(aws, REGION, keep=2)
    actions = [(entry.resource, entry.name, entry.action) for entry in plan.entries]
    assert actions == [
        ("ami", IMAGES[0].image_id, Action.DELETE),
        ("snapshot", IMAGES[0].snapshot_ids[0], Action.DELETE),
        ("ami", IMAGES[1].image_id, Action.UNCHANGED),
        ("ami", IMAGES[2].image_id, Action.DELETE),
        ("snapshot", IMAGES[2].snapshot_ids[0], Action.DELETE),
    ]


def test_plan_nothing_old(aws: Aws, ec2: Stubber) -> None:
    ec2.add_response("describe_images", {"Images": [described(IMAGES[4])]})
    assert prune.plan_region(aws, REGION, keep=1).entries == []


def test_apply_deregisters_then_deletes(aws: Aws, ec2: Stubber) -> None:
    plan = Plan()
    plan.add(REGION, "ami", IMAGES[0].image_id, Action.DELETE)
    plan.add(REGION, "snapshot", IMAGES[0].snapshot_ids[0], Action.DELETE)
    plan.add(REGION, "ami", IMAGES[1].image_id, Action.UNCHANGED)
    ec2.add_response("deregister_image", {}, {"ImageId": IMAGES[0].image_id})
    ec2.add_response("delete_snapshot", {}, {"SnapshotId": IMAGES[0].snapshot_ids[0]})
    prune.apply_plan(aws, plan)


def group(name: str, **launch: Any) -> dict[str, Any]:
    return {
        "AutoScalingGroupName": name,
        "MinSize": 0,
        "MaxSize": 1,
        "DesiredCapacity": 0,
        "DefaultCooldown": 300,
        "AvailabilityZones": [f"{REGION}a"],
        "HealthCheckType": "EC2",
        "CreatedTime": "2026-01-01T00:00:00Z",
        **launch,
    }


def version(number: int, image_id: str) -> dict[str, Any]:
    return {"VersionNumber": number, "LaunchTemplateData": {"ImageId": image_id}}


def configuration(name: str, image_id: str) -> dict[str, Any]:
    return {
        "LaunchConfigurationName": name,
        "ImageId": image_id,
        "InstanceType": "m5.xlarge",
        "CreatedTime": "2026-01-01T00:00:00Z",
    }
