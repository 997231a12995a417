"""The drain wait: ends when the old targets leave, bounded by drain time.

The emulator removes detached targets at once, so Stubber plays AWS's
answers, where targets read `draining` for the deregistration delay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from infra.aws import Aws
from infra.config import Config
from infra.rollout.context import RegionContext, Timing
from infra.rollout.groups import _wait_drained

REGION = "eu-west-1"
GROUP = "notary-eu-west-1-old"
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/tg/1"


@pytest.fixture
def ctx(config: Config) -> RegionContext:
    aws = Aws(config, endpoint_url="http://127.0.0.1:9")
    return RegionContext(aws=aws, config=config, region=REGION, dry_run=False)


@pytest.fixture
def stubs(ctx: RegionContext) -> Iterator[tuple[Stubber, Stubber]]:
    autoscaling = Stubber(ctx.client("autoscaling"))
    elb = Stubber(ctx.client("elbv2"))
    autoscaling.add_response(
        "describe_auto_scaling_groups",
        {
            "AutoScalingGroups": [
                {
                    "AutoScalingGroupName": GROUP,
                    "MinSize": 1,
                    "MaxSize": 2,
                    "DesiredCapacity": 1,
                    "DefaultCooldown": 300,
                    "AvailabilityZones": ["eu-west-1a"],
                    "HealthCheckType": "ELB",
                    "CreatedTime": "2026-12-01T00:00:00Z",
                    "Instances": [
                        {
                            "InstanceId": "i-0old",
                            "AvailabilityZone": "eu-west-1a",
                            "LifecycleState": "InService",
                            "HealthStatus": "Healthy",
                            "ProtectedFromScaleIn": False,
                        }
                    ],
                }
            ]
        },
        {"AutoScalingGroupNames": [GROUP]},
    )
    with autoscaling, elb:
        yield autoscaling, elb


def health(*states: tuple[str, str]) -> dict[str, Any]:
    return {
        "TargetHealthDescriptions": [
            {"Target": {"Id": target, "Port": 7047}, "TargetHealth": {"State": state}}
            for target, state in states
        ]
    }


def test_drain_ends_when_targets_leave(
    stubs: tuple[Stubber, Stubber], ctx: Any
) -> None:
    _, elb = stubs
    elb.add_response("describe_target_health", health(("i-0old", "draining")))
    elb.add_response("describe_target_health", health(("i-0new", "healthy")))
    sleeps: list[float] = []
    timing = Timing(healthy_timeout=60, drain=300, poll_interval=10)

    _wait_drained(ctx, [GROUP], TARGET_GROUP, timing=timing, sleep=sleeps.append)

    assert sleeps == [10]
    elb.assert_no_pending_responses()


def test_drain_bounded_by_drain_time(
    stubs: tuple[Stubber, Stubber], ctx: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, elb = stubs
    for _ in range(3):
        elb.add_response("describe_target_health", health(("i-0old", "draining")))
    sleeps: list[float] = []
    timing = Timing(healthy_timeout=60, drain=30, poll_interval=10)

    _wait_drained(ctx, [GROUP], TARGET_GROUP, timing=timing, sleep=sleeps.append)

    assert sleeps == [10, 10, 10]
    assert "still drain after 30 s" in caplog.text


# The emulator's HTTP 500 for DeleteLaunchTemplateVersions reaches boto3 as a
# ResponseParserError; only a local run may go on without the deletion.


@contextlib.contextmanager
def emulator_500(ctx: RegionContext) -> Iterator[None]:
    """Make DeleteLaunchTemplateVersions fail as the emulator does, before
    any request is sent."""
    from botocore.parsers import ResponseParserError

    def fail(**_: Any) -> None:
        raise ResponseParserError("Unable to parse response (HTTP 500)")

    events = ctx.client("ec2").meta.events
    event = "before-call.ec2.DeleteLaunchTemplateVersions"
    events.register(event, fail)
    try:
        yield
    finally:
        events.unregister(event, fail)


def test_version_cleanup_local_warns(
    ctx: RegionContext, caplog: pytest.LogCaptureFixture
) -> None:
    from infra.rollout.template import VersionCleanup, apply_version_cleanup

    with emulator_500(ctx):
        apply_version_cleanup(ctx, VersionCleanup("lt-1", ("1", "2")))

    assert "does not implement DeleteLaunchTemplateVersions" in caplog.text
    assert "versions 1, 2 of lt-1" in caplog.text


def test_version_cleanup_aws_raises(config_data: dict[str, Any]) -> None:
    from botocore.parsers import ResponseParserError

    from infra.config import parse_config
    from infra.rollout.template import VersionCleanup, apply_version_cleanup

    config_data["target"] = "aws"
    aws = Aws(parse_config(config_data))
    ctx = RegionContext(aws=aws, config=aws.config, region=REGION, dry_run=False)
    # The handler raises before signing, so no request leaves the machine.
    with emulator_500(ctx), pytest.raises(ResponseParserError):
        apply_version_cleanup(ctx, VersionCleanup("lt-1", ("1",)))
