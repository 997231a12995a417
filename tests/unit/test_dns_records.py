"""Desired records, the change batch and the health check settings, as data."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import Config, parse_config
from infra.dns import LoadBalancerEndpoint, health
from infra.dns.locations import (
    DEFAULT,
    Location,
    geolocation,
    location_of,
    owned_by,
    region_locations,
    set_identifier,
)
from infra.dns.records import desired_record, plan_records
from infra.errors import UserError
from infra.plan import Action

DOMAIN = "notary.example.com"
ENDPOINT = LoadBalancerEndpoint(
    dns_name="nlb-1.elb.eu-west-1.amazonaws.com",
    canonical_hosted_zone_id="Z2IFOLAFXWLO4F",
    arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/nlb/1",
)
MOVED = LoadBalancerEndpoint(
    dns_name="nlb-2.elb.eu-west-1.amazonaws.com",
    canonical_hosted_zone_id="Z2IFOLAFXWLO4F",
    arn="arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/nlb/2",
)


def records_for(
    region: str,
    locations: list[Location],
    endpoint: LoadBalancerEndpoint = ENDPOINT,
    check_id: str = "hc-1",
) -> list[dict[str, Any]]:
    return [
        desired_record(DOMAIN, region, location, endpoint, check_id)
        for location in locations
    ]


def actions(result: Any) -> list[tuple[str, str]]:
    return [
        (change["Action"], change["ResourceRecordSet"]["SetIdentifier"])
        for change in result.changes
    ]


@pytest.mark.parametrize(
    ("location", "geo"),
    [
        (Location("continent", "EU"), {"ContinentCode": "EU"}),
        (Location("country", "DE"), {"CountryCode": "DE"}),
        (
            Location("subdivision", "US-CA"),
            {"CountryCode": "US", "SubdivisionCode": "CA"},
        ),
        (DEFAULT, {"CountryCode": "*"}),
    ],
)
def test_geolocation_round_trip(location: Location, geo: dict[str, str]) -> None:
    assert geolocation(location) == geo
    assert location_of(geo) == location


def test_set_identifier_separates_kinds() -> None:
    continent = set_identifier("us-east-1", Location("continent", "NA"))
    country = set_identifier("us-east-1", Location("country", "NA"))
    assert continent != country


def test_owned_by_region() -> None:
    assert owned_by("us-east-1-continent-NA", "us-east-1")
    assert owned_by("us-east-1-default", "us-east-1")
    assert not owned_by("us-east-1-continent-NA", "eu-west-1")
    assert not owned_by("us-east-1-manual", "us-east-1")


def test_default_region_adds_default(config: Config) -> None:
    locations = region_locations(config, "us-east-1")
    assert locations == [Location("continent", "NA"), DEFAULT]


def test_other_region_has_no_default(config: Config) -> None:
    assert region_locations(config, "eu-west-1") == [Location("continent", "EU")]


def test_desired_record_alias() -> None:
    [entry] = records_for("eu-west-1", [Location("continent", "EU")])
    assert entry["AliasTarget"] == {
        "HostedZoneId": "Z2IFOLAFXWLO4F",
        "DNSName": "nlb-1.elb.eu-west-1.amazonaws.com",
        "EvaluateTargetHealth": True,
    }
    assert entry["HealthCheckId"] == "hc-1"
    assert entry["SetIdentifier"] == "eu-west-1-continent-EU"
    assert entry["Name"] == "notary.example.com."


def test_first_run_creates_all() -> None:
    desired = records_for("us-east-1", [Location("continent", "NA"), DEFAULT])
    result = plan_records(
        region="us-east-1", domain=DOMAIN, desired=desired, existing=[]
    )
    assert actions(result) == [
        ("CREATE", "us-east-1-continent-NA"),
        ("CREATE", "us-east-1-default"),
    ]
    assert [entry.action for entry in result.plan.entries] == [Action.CREATE] * 2


def test_same_records_no_changes() -> None:
    desired = records_for("us-east-1", [Location("continent", "NA"), DEFAULT])
    existing = [dict(entry) for entry in desired]
    for entry in existing:
        # Route 53 returns names with a final dot and may change case.
        entry["AliasTarget"] = {
            **entry["AliasTarget"],
            "DNSName": entry["AliasTarget"]["DNSName"].upper() + ".",
        }
    result = plan_records(
        region="us-east-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert result.changes == []
    assert not result.plan.has_changes


def test_new_endpoint_upserts() -> None:
    existing = records_for("eu-west-1", [Location("continent", "EU")])
    desired = records_for("eu-west-1", [Location("continent", "EU")], MOVED)
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [("UPSERT", "eu-west-1-continent-EU")]


def test_new_health_check_upserts() -> None:
    existing = records_for("eu-west-1", [Location("continent", "EU")])
    desired = records_for("eu-west-1", [Location("continent", "EU")], check_id="hc-2")
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [("UPSERT", "eu-west-1-continent-EU")]


def test_dropped_location_deleted() -> None:
    existing = records_for(
        "eu-west-1", [Location("continent", "EU"), Location("country", "TR")]
    )
    desired = records_for("eu-west-1", [Location("continent", "EU")])
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [("DELETE", "eu-west-1-country-TR")]
    assert result.plan.changes[0].detail == "country:TR"


def test_other_regions_untouched() -> None:
    existing = records_for("us-east-1", [Location("continent", "NA"), DEFAULT])
    desired = records_for("eu-west-1", [Location("continent", "EU")])
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [("CREATE", "eu-west-1-continent-EU")]


def test_moved_default_taken_over() -> None:
    existing = records_for("us-east-1", [Location("continent", "NA"), DEFAULT])
    desired = records_for("eu-west-1", [Location("continent", "EU"), DEFAULT])
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [
        ("DELETE", "us-east-1-default"),
        ("CREATE", "eu-west-1-continent-EU"),
        ("CREATE", "eu-west-1-default"),
    ]


def test_mislabelled_own_record_deleted_once() -> None:
    [stray] = records_for("eu-west-1", [Location("country", "TR")])
    stray["GeoLocation"] = {"ContinentCode": "EU"}
    desired = records_for("eu-west-1", [Location("continent", "EU")])
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=[stray]
    )
    assert actions(result) == [
        ("DELETE", "eu-west-1-country-TR"),
        ("CREATE", "eu-west-1-continent-EU"),
    ]


def test_other_domain_ignored() -> None:
    existing = [
        {**entry, "Name": "other.example.com."}
        for entry in records_for("eu-west-1", [Location("continent", "EU")])
    ]
    desired = records_for("eu-west-1", [Location("continent", "EU")])
    result = plan_records(
        region="eu-west-1", domain=DOMAIN, desired=desired, existing=existing
    )
    assert actions(result) == [("CREATE", "eu-west-1-continent-EU")]


def config_with(config_data: dict[str, Any], **health_check: Any) -> Config:
    config_data["health_check"] = health_check
    return parse_config(config_data)


def test_health_check_plain_http(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    assert desired["Type"] == "HTTP"
    assert desired["Port"] == 7047
    assert desired["ResourcePath"] == "/healthcheck"
    assert desired["FullyQualifiedDomainName"] == ENDPOINT.dns_name


def test_health_check_https(config_data: dict[str, Any]) -> None:
    config_data["enclave"]["notary_tls"] = True
    config = config_with(config_data, request_interval=10)
    desired = health.desired_config(config, ENDPOINT)
    assert desired["Type"] == "HTTPS"
    assert desired["RequestInterval"] == 10


def test_caller_reference_deterministic(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    first = health.caller_reference(config, "eu-west-1", desired)
    assert first == health.caller_reference(config, "eu-west-1", desired)
    assert first != health.caller_reference(config, "us-east-1", desired)
    assert first != health.caller_reference(
        config, "eu-west-1", health.desired_config(config, MOVED)
    )


def test_caller_reference_fits_limit(config_data: dict[str, Any]) -> None:
    # The longest project the example's regions allow: ELB names take 32.
    config_data["project"] = "a" * 14
    config = parse_config(config_data)
    desired = health.desired_config(config, ENDPOINT)
    reference = health.caller_reference(config, "ap-southeast-4", desired, 5)
    assert len(reference) <= 64


def found(check_id: str, **settings: Any) -> health.FoundHealthCheck:
    base = {
        "Type": "HTTP",
        "FullyQualifiedDomainName": ENDPOINT.dns_name,
        "Port": 7047,
        "ResourcePath": "/healthcheck",
        "RequestInterval": 30,
        "FailureThreshold": 3,
        "Inverted": False,
        "Disabled": False,
    }
    return health.FoundHealthCheck(id=check_id, version=1, config={**base, **settings})


def test_choose_prefers_in_use(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    chosen = health.choose([found("a"), found("b")], desired, {"b"})
    assert chosen is not None
    assert chosen.id == "b"


def test_choose_skips_other_interval(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    assert health.choose([found("a", RequestInterval=10)], desired, {"a"}) is None


def test_choose_skips_other_type(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    assert health.choose([found("a", Type="HTTPS")], desired, {"a"}) is None


def test_updates_list_mutable_fields(config: Config) -> None:
    desired = health.desired_config(config, MOVED)
    check = found("a", FailureThreshold=5)
    assert health.updates(check, desired) == {
        "FullyQualifiedDomainName": MOVED.dns_name,
        "FailureThreshold": 3,
    }


def test_updates_ignore_final_dot(config: Config) -> None:
    desired = health.desired_config(config, ENDPOINT)
    check = found("a", FullyQualifiedDomainName=ENDPOINT.dns_name.upper() + ".")
    assert health.updates(check, desired) == {}


def test_health_check_tags(config: Config) -> None:
    expected_tags = health.desired_tags(config, "eu-west-1")
    assert expected_tags["notary:project"] == "notary"
    assert expected_tags["notary:region"] == "eu-west-1"
    assert expected_tags["notary:component"] == "health-check"


def test_too_many_tags_rejected(config_data: dict[str, Any]) -> None:
    # The config rejects this too; the health check keeps its own guard.
    tags = {f"key{index}": "value" for index in range(8)}
    config = parse_config(config_data).model_copy(update={"tags": tags})
    with pytest.raises(UserError, match="at most 10 tags"):
        health.desired_tags(config, "eu-west-1")
