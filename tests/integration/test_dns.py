"""Route 53 health checks and geolocation records against the emulator."""

from __future__ import annotations

import concurrent.futures
from typing import Any, TypedDict

import pytest

from infra import tags
from infra.aws import Aws
from infra.config import Config, parse_config
from infra.dns import (
    LoadBalancerEndpoint,
    dns_status,
    reconcile_dns,
    remove_region_dns,
)
from infra.dns.throttle import ROUTE53_LIMIT
from infra.plan import Action, Plan

READ_PREFIXES = ("List", "Get")


class Waiting(TypedDict):
    poll_seconds: float
    timeout_seconds: float


FAST: Waiting = {"poll_seconds": 0.01, "timeout_seconds": 5.0}


@pytest.fixture(autouse=True)
def fast_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ROUTE53_LIMIT, "per_second", 1000.0)


@pytest.fixture
def route53(aws: Aws) -> Any:
    return aws.client("route53", "us-east-1")


@pytest.fixture
def operations(route53: Any) -> list[str]:
    """Return the names of the Route 53 operations called from now on."""
    called: list[str] = []

    def record(model: Any, **_: Any) -> None:
        called.append(model.name)

    route53.meta.events.register("before-call.route53", record)
    return called


def writes(operations: list[str]) -> list[str]:
    return [name for name in operations if not name.startswith(READ_PREFIXES)]


def make_balancer(aws: Aws, region: str) -> LoadBalancerEndpoint:
    """Create a network load balancer in the emulator and return its endpoint."""
    ec2 = aws.client("ec2", region)
    subnets = [subnet["SubnetId"] for subnet in ec2.describe_subnets()["Subnets"]]
    balancer = aws.client("elbv2", region).create_load_balancer(
        Name="notary", Subnets=subnets[:2], Type="network", Scheme="internet-facing"
    )["LoadBalancers"][0]
    return LoadBalancerEndpoint(
        dns_name=balancer["DNSName"],
        canonical_hosted_zone_id=balancer["CanonicalHostedZoneId"],
        arn=balancer["LoadBalancerArn"],
    )


def make_endpoint(aws: Aws, region: str, name: str = "notary") -> LoadBalancerEndpoint:
    """Return a made-up load balancer endpoint in `region`.

    Route 53 never resolves alias targets in the emulator, and creating real
    load balancers there costs seconds per region, so most tests use these.
    """
    return LoadBalancerEndpoint(
        dns_name=f"{name}-0123456789abcdef.elb.{region}.amazonaws.com",
        canonical_hosted_zone_id="Z0000000EXAMPLE",
        arn=(
            f"arn:aws:elasticloadbalancing:{region}:123456789012:"
            f"loadbalancer/net/{name}/0123456789abcdef"
        ),
    )


def zone_records(route53: Any) -> list[dict[str, Any]]:
    [zone] = route53.list_hosted_zones_by_name(DNSName="example.com")["HostedZones"]
    answer = route53.list_resource_record_sets(HostedZoneId=zone["Id"])
    return [
        record
        for record in answer["ResourceRecordSets"]
        if record["Name"] == "notary.example.com." and record["Type"] == "A"
    ]


def set_ids(route53: Any) -> list[str]:
    return sorted(record["SetIdentifier"] for record in zone_records(route53))


def health_checks(route53: Any) -> list[dict[str, Any]]:
    return list(route53.list_health_checks()["HealthChecks"])


def actions(plan: Plan, resource: str) -> list[Action]:
    return [entry.action for entry in plan.entries if entry.resource == resource]


def test_first_run_creates(aws: Aws, config: Config, route53: Any) -> None:
    endpoint = make_balancer(aws, "us-east-1")
    plan = reconcile_dns(aws, config, "us-east-1", endpoint, **FAST)
    assert actions(plan, "route53-hosted-zone") == [Action.CREATE]
    assert actions(plan, "route53-health-check") == [Action.CREATE]
    assert actions(plan, "route53-record") == [Action.CREATE, Action.CREATE]
    assert set_ids(route53) == ["us-east-1-continent-NA", "us-east-1-default"]


def test_records_point_at_endpoint(aws: Aws, config: Config, route53: Any) -> None:
    endpoint = make_balancer(aws, "eu-west-1")
    reconcile_dns(aws, config, "eu-west-1", endpoint, **FAST)
    [record] = zone_records(route53)
    [check] = health_checks(route53)
    assert record["GeoLocation"] == {"ContinentCode": "EU"}
    assert record["AliasTarget"]["DNSName"].rstrip(".") == endpoint.dns_name
    assert record["AliasTarget"]["HostedZoneId"] == endpoint.canonical_hosted_zone_id
    assert record["AliasTarget"]["EvaluateTargetHealth"] is True
    assert record["HealthCheckId"] == check["Id"]


def test_health_check_settings(aws: Aws, config: Config, route53: Any) -> None:
    endpoint = make_endpoint(aws, "eu-west-1")
    reconcile_dns(aws, config, "eu-west-1", endpoint, **FAST)
    [check] = health_checks(route53)
    settings = check["HealthCheckConfig"]
    assert settings["Type"] == "HTTP"
    assert settings["FullyQualifiedDomainName"] == endpoint.dns_name
    assert settings["Port"] == 7047
    assert settings["ResourcePath"] == "/healthcheck"
    assert settings["RequestInterval"] == 30
    assert settings["FailureThreshold"] == 3


def test_health_check_tags(aws: Aws, config: Config, route53: Any) -> None:
    reconcile_dns(aws, config, "eu-west-1", make_endpoint(aws, "eu-west-1"), **FAST)
    [check] = health_checks(route53)
    answer = route53.list_tags_for_resource(
        ResourceType="healthcheck", ResourceId=check["Id"]
    )
    found = tags.from_list(answer["ResourceTagSet"]["Tags"])
    assert found[tags.PROJECT] == "notary"
    assert found[tags.REGION] == "eu-west-1"
    assert found[tags.COMPONENT] == "health-check"


def test_rerun_writes_nothing(aws: Aws, config: Config, operations: list[str]) -> None:
    endpoint = make_endpoint(aws, "us-east-1")
    reconcile_dns(aws, config, "us-east-1", endpoint, **FAST)
    operations.clear()
    plan = reconcile_dns(aws, config, "us-east-1", endpoint, **FAST)
    assert not plan.has_changes
    assert writes(operations) == []


def test_dry_run_writes_nothing(
    aws: Aws, config: Config, route53: Any, operations: list[str]
) -> None:
    endpoint = make_endpoint(aws, "us-east-1")
    plan = reconcile_dns(aws, config, "us-east-1", endpoint, dry_run=True)
    assert actions(plan, "route53-record") == [Action.CREATE, Action.CREATE]
    assert writes(operations) == []
    assert route53.list_hosted_zones()["HostedZones"] == []


def changed(config_data: dict[str, Any], **changes: Any) -> Config:
    return parse_config({**config_data, **changes})


def test_threshold_change_updates(
    aws: Aws, config: Config, config_data: dict[str, Any], route53: Any
) -> None:
    endpoint = make_endpoint(aws, "eu-west-1")
    reconcile_dns(aws, config, "eu-west-1", endpoint, **FAST)
    [before] = health_checks(route53)
    newer = changed(config_data, health_check={"failure_threshold": 5})
    plan = reconcile_dns(aws, newer, "eu-west-1", endpoint, **FAST)
    [after] = health_checks(route53)
    assert actions(plan, "route53-health-check") == [Action.UPDATE]
    assert after["Id"] == before["Id"]
    assert after["HealthCheckConfig"]["FailureThreshold"] == 5


def test_interval_change_replaces(
    aws: Aws, config: Config, config_data: dict[str, Any], route53: Any
) -> None:
    endpoint = make_endpoint(aws, "eu-west-1")
    reconcile_dns(aws, config, "eu-west-1", endpoint, **FAST)
    [before] = health_checks(route53)
    newer = changed(config_data, health_check={"request_interval": 10})
    plan = reconcile_dns(aws, newer, "eu-west-1", endpoint, **FAST)
    [after] = health_checks(route53)
    [record] = zone_records(route53)
    assert actions(plan, "route53-health-check") == [Action.CREATE, Action.DELETE]
    assert after["Id"] != before["Id"]
    assert after["HealthCheckConfig"]["RequestInterval"] == 10
    assert record["HealthCheckId"] == after["Id"]


def test_location_change_updates(
    aws: Aws, config_data: dict[str, Any], config: Config, route53: Any
) -> None:
    endpoint = make_endpoint(aws, "eu-west-1")
    reconcile_dns(aws, config, "eu-west-1", endpoint, **FAST)
    config_data["regions"][1]["geolocation"] = {"countries": ["DE", "FR"]}
    plan = reconcile_dns(aws, parse_config(config_data), "eu-west-1", endpoint, **FAST)
    assert sorted(actions(plan, "route53-record")) == sorted(
        [Action.CREATE, Action.CREATE, Action.DELETE]
    )
    assert set_ids(route53) == ["eu-west-1-country-DE", "eu-west-1-country-FR"]


def test_new_endpoint_updates(aws: Aws, config: Config, route53: Any) -> None:
    reconcile_dns(aws, config, "eu-west-1", make_endpoint(aws, "eu-west-1"), **FAST)
    newer = make_endpoint(aws, "eu-west-1", "notary-2")
    plan = reconcile_dns(aws, config, "eu-west-1", newer, **FAST)
    [record] = zone_records(route53)
    [check] = health_checks(route53)
    assert actions(plan, "route53-record") == [Action.UPDATE]
    assert record["AliasTarget"]["DNSName"].rstrip(".") == newer.dns_name
    assert check["HealthCheckConfig"]["FullyQualifiedDomainName"] == newer.dns_name


def roll_out_all(aws: Aws, config: Config) -> None:
    for region in config.region_names:
        reconcile_dns(aws, config, region, make_endpoint(aws, region), **FAST)


def test_four_regions_five_records(aws: Aws, config: Config, route53: Any) -> None:
    roll_out_all(aws, config)
    records = zone_records(route53)
    check_ids = {check["Id"] for check in health_checks(route53)}
    assert len(records) == 5
    assert len(check_ids) == 4
    assert {record["HealthCheckId"] for record in records} == check_ids


def test_concurrent_regions_converge(aws: Aws, config: Config, route53: Any) -> None:
    endpoints = {region: make_endpoint(aws, region) for region in config.region_names}
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(reconcile_dns, aws, config, region, endpoint, **FAST)
            for region, endpoint in endpoints.items()
        ]
        for future in futures:
            future.result()
    assert len(route53.list_hosted_zones()["HostedZones"]) == 1
    assert len(zone_records(route53)) == 5


def test_remove_deletes_region(
    aws: Aws, config: Config, route53: Any, caplog: pytest.LogCaptureFixture
) -> None:
    roll_out_all(aws, config)
    plan = remove_region_dns(aws, config, "us-east-1", **FAST)
    assert "Removed the default record with us-east-1" in caplog.text
    assert actions(plan, "route53-record") == [Action.DELETE, Action.DELETE]
    assert "us-east-1-default" not in set_ids(route53)
    assert len(zone_records(route53)) == 3
    assert len(health_checks(route53)) == 3


def test_remove_dry_run_keeps(
    aws: Aws, config: Config, route53: Any, operations: list[str]
) -> None:
    reconcile_dns(aws, config, "eu-west-1", make_endpoint(aws, "eu-west-1"), **FAST)
    operations.clear()
    plan = remove_region_dns(aws, config, "eu-west-1", dry_run=True)
    assert actions(plan, "route53-health-check") == [Action.DELETE]
    assert writes(operations) == []
    assert set_ids(route53) == ["eu-west-1-continent-EU"]


def test_default_moves_region(
    aws: Aws, config: Config, config_data: dict[str, Any], route53: Any
) -> None:
    roll_out_all(aws, config)
    config_data["regions"][0]["default"] = False
    config_data["regions"][1]["default"] = True
    moved = parse_config(config_data)
    endpoint = make_endpoint(aws, "eu-west-1", "notary-2")
    reconcile_dns(aws, moved, "eu-west-1", endpoint, **FAST)
    plan = reconcile_dns(aws, moved, "us-east-1", make_endpoint(aws, "us-east-1", "n2"))
    assert "eu-west-1-default" in set_ids(route53)
    assert "us-east-1-default" not in set_ids(route53)
    assert actions(plan, "route53-record") == [Action.UPDATE]


def test_status_reports_locations(aws: Aws, config: Config) -> None:
    reconcile_dns(aws, config, "us-east-1", make_endpoint(aws, "us-east-1"), **FAST)
    status = dns_status(aws, config, "us-east-1")
    assert status.configured == ("continent:NA", "default:*")
    assert status.live == ("continent:NA", "default:*")
    assert status.locations == status.live
    assert status.health_check_id is not None
    assert status.health_check_state in ("healthy", "unknown")


def test_status_before_rollout(aws: Aws, config: Config) -> None:
    status = dns_status(aws, config, "sa-east-1")
    assert status.live == ()
    assert status.health_check_state == "missing"
