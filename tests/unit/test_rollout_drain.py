"""The drain wait: ends when the old targets leave, bounded by drain time.

The emulator removes detached targets at once, so Stubber plays AWS's
answers, where targets read `draining` for the deregistration delay.
"""

from __future__ import annotations

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
