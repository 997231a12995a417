"""The main job end to end: bake, copy and roll out on a fresh emulator.

These tests bake a real local image (mmdebstrap, Packer, testinfra), so they
need root and take minutes; they carry the slow marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import emulator, tags
from infra.aws import Aws
from infra.config import REPO_ROOT, Config, parse_config
from infra.demo import run_demo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="a local bake needs root"),
]


def test_demo_builds_four_regions(config: Config, aws: Aws) -> None:
    reports = run_demo(config, aws)

    assert [report.name for report in reports] == ["bake", "copy", "rollout"]
    assert all(not report.failures for report in reports)

    release_tags = []
    for region in config.region_names:
        images = aws.client("ec2", region).describe_images(
            Owners=["self"],
            Filters=[{"Name": f"tag:{tags.PROJECT}", "Values": [config.project]}],
        )["Images"]
        assert len(images) == 1, region
        assert images[0]["State"] == "available"
        found = tags.from_list(images[0]["Tags"])
        release_tags.append(
            {key: found[key] for key in (tags.RELEASE, tags.PCR0, tags.PCR1, tags.PCR2)}
        )
    assert all(found == release_tags[0] for found in release_tags)

    for region in config.region_names:
        groups = aws.client("autoscaling", region).describe_auto_scaling_groups()[
            "AutoScalingGroups"
        ]
        assert len(groups) == 1, region
        assert len(groups[0]["Instances"]) == 1
        assert groups[0]["TargetGroupARNs"]
        health = aws.client("elbv2", region).describe_target_health(
            TargetGroupArn=groups[0]["TargetGroupARNs"][0]
        )["TargetHealthDescriptions"]
        assert [item["TargetHealth"]["State"] for item in health] == ["healthy"]
        balancers = aws.client("elbv2", region).describe_load_balancers()[
            "LoadBalancers"
        ]
        assert [balancer["Type"] for balancer in balancers] == ["network"]
        assert balancers[0]["Scheme"] == "internet-facing"

    route53 = aws.client("route53", "us-east-1")
    zone = route53.list_hosted_zones_by_name(DNSName=config.hosted_zone)["HostedZones"][
        0
    ]
    records = [
        record
        for record in route53.list_resource_record_sets(HostedZoneId=zone["Id"])[
            "ResourceRecordSets"
        ]
        if "GeoLocation" in record
    ]
    locations = sorted(
        record["GeoLocation"].get("ContinentCode")
        or record["GeoLocation"].get("CountryCode", "")
        for record in records
    )
    assert locations == ["*", "AS", "EU", "NA", "SA"]
    assert all(record.get("HealthCheckId") for record in records)
    assert all(record["AliasTarget"]["EvaluateTargetHealth"] for record in records)
    checks = route53.list_health_checks()["HealthChecks"]
    assert len(checks) == 4

    assert_rerun_changes_nothing(config, aws)


# The emulator stores no ImdsSupport and lacks EnableImageDeprecation, so the
# copy step finds both unset on every run and sends them again; AWS stores
# both, and the next run reads them back and sends nothing.
EMULATOR_UNSTORED_WRITES = {"ModifyImageAttribute", "EnableImageDeprecation"}


def assert_rerun_changes_nothing(config: Config, aws: Aws) -> None:
    writes: list[str] = []

    def count_write(event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation.startswith(("Describe", "Get", "List")):
            return
        if operation not in EMULATOR_UNSTORED_WRITES:
            writes.append(operation)

    for region in config.region_names:
        for service in ("ec2", "autoscaling", "elbv2", "route53", "iam", "dynamodb"):
            aws.client(service, region).meta.events.register("before-call", count_write)
    reports = run_demo(config, aws)

    assert [report.changes for report in reports] == [[], [], []]
    assert writes == []


# The day-two path, through the tasks alone, as an operator runs it.


@pytest.fixture
def two_regions(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """Write configs of two versions over two regions, and an emulator folder."""
    data = yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text())
    data["regions"] = data["regions"][:2]
    data["rollout"]["drain_seconds"] = 30
    first = tmp_path / "v1.yaml"
    first.write_text(yaml.safe_dump(data))
    data["version"] = "0.2.0"
    second = tmp_path / "v2.yaml"
    second.write_text(yaml.safe_dump(data))
    parse_config(data)
    state_dir = tmp_path / "state"
    yield first, second, state_dir
    emulator.stop(state_dir)


def invoke(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "NOTARY_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def live_versions(state_dir: Path, config: Path) -> dict[str, str]:
    status = invoke(state_dir, "status", "--json", "--config", str(config))
    regions = json.loads(status.stdout)["regions"]
    return {region["name"]: region["release"].split("-", 1)[0] for region in regions}


def test_second_release_then_rollback(two_regions: tuple[Path, Path, Path]) -> None:
    first, second, state_dir = two_regions
    for config in (first, second):
        invoke(state_dir, "bake", "--config", str(config))
        invoke(state_dir, "copy", "--config", str(config))
        invoke(state_dir, "rollout", "--all", "--config", str(config))

    assert live_versions(state_dir, second) == {
        "us-east-1": "0.2.0",
        "eu-west-1": "0.2.0",
    }

    for region in ("us-east-1", "eu-west-1"):
        invoke(state_dir, "rollback", "--region", region, "--config", str(second))

    assert live_versions(state_dir, second) == {
        "us-east-1": "0.1.0",
        "eu-west-1": "0.1.0",
    }
