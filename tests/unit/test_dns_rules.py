"""Route 53's record rules, checked on our side, as data."""

from __future__ import annotations

from typing import Any

import pytest

from infra.dns import validate_changes
from infra.errors import UserError

NAME = "notary.example.com."


def record(set_id: str, geo: dict[str, str] | None, **extra: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "Name": NAME,
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": "Z26RNL4JYFTOTI",
            "DNSName": "nlb-1.elb.eu-west-1.amazonaws.com",
            "EvaluateTargetHealth": True,
        },
    }
    if set_id:
        result["SetIdentifier"] = set_id
    if geo is not None:
        result["GeoLocation"] = geo
    result.update(extra)
    return result


def rejection(changes: list[dict[str, Any]], existing: list[dict[str, Any]]) -> str:
    """Return the UserError message for the batch, or '' when it passes."""
    try:
        validate_changes(changes, existing)
    except UserError as error:
        return str(error)
    return ""


def create(entry: dict[str, Any]) -> dict[str, Any]:
    return {"Action": "CREATE", "ResourceRecordSet": entry}


def test_valid_batch_passes() -> None:
    changes = [
        create(record("us-east-1-continent-NA", {"ContinentCode": "NA"})),
        create(record("eu-west-1-country-DE", {"CountryCode": "DE"})),
        create(
            record(
                "us-west-2-subdivision-US-CA",
                {"CountryCode": "US", "SubdivisionCode": "CA"},
            )
        ),
        create(record("us-east-1-default", {"CountryCode": "*"})),
    ]
    assert rejection(changes, []) == ""


@pytest.mark.parametrize(
    ("geo", "expected"),
    [
        ({"ContinentCode": "XX"}, "invalid ContinentCode 'XX'"),
        ({"CountryCode": "ZZ"}, "invalid CountryCode 'ZZ'"),
        ({"CountryCode": "DE", "SubdivisionCode": "BY"}, "only for US"),
        ({"CountryCode": "US", "SubdivisionCode": "XX"}, "invalid SubdivisionCode"),
        ({"ContinentCode": "EU", "CountryCode": "DE"}, "together with CountryCode"),
        ({}, "without ContinentCode or CountryCode"),
    ],
)
def test_geolocation_invalid(geo: dict[str, str], expected: str) -> None:
    with pytest.raises(UserError, match=expected):
        validate_changes([create(record("r-x", geo))], [])


def test_error_names_record() -> None:
    with pytest.raises(UserError) as caught:
        validate_changes([create(record("eu-west-1-x", {"ContinentCode": "XX"}))], [])
    assert "notary.example.com A (SetIdentifier eu-west-1-x)" in str(caught.value)


def test_error_is_one_line() -> None:
    with pytest.raises(UserError) as caught:
        validate_changes([create(record("eu-west-1-x", {"ContinentCode": "XX"}))], [])
    assert "\n" not in str(caught.value)


def test_same_location_twice_rejected() -> None:
    changes = [
        create(record("a", {"ContinentCode": "EU"})),
        create(record("b", {"ContinentCode": "EU"})),
    ]
    with pytest.raises(UserError, match="same GeoLocation as SetIdentifier a"):
        validate_changes(changes, [])


def test_location_clashes_with_existing() -> None:
    existing = [record("old", {"CountryCode": "*"})]
    with pytest.raises(UserError, match="one record per location"):
        validate_changes([create(record("new", {"CountryCode": "*"}))], existing)


def test_takeover_in_one_batch_passes() -> None:
    old = record("us-east-1-default", {"CountryCode": "*"})
    changes = [
        {"Action": "DELETE", "ResourceRecordSet": old},
        create(record("eu-west-1-default", {"CountryCode": "*"})),
    ]
    assert rejection(changes, [old]) == ""


def test_duplicate_set_identifier_in_batch() -> None:
    changes = [
        {"Action": "UPSERT", "ResourceRecordSet": record("a", {"ContinentCode": "EU"})},
        {"Action": "UPSERT", "ResourceRecordSet": record("a", {"ContinentCode": "AS"})},
    ]
    with pytest.raises(UserError, match="appears twice in one batch"):
        validate_changes(changes, [])


def test_create_existing_set_identifier() -> None:
    existing = [record("a", {"ContinentCode": "EU"})]
    with pytest.raises(UserError, match="already exists"):
        validate_changes([create(record("a", {"ContinentCode": "AS"}))], existing)


def test_upsert_existing_set_identifier_passes() -> None:
    existing = [record("a", {"ContinentCode": "EU"})]
    change = {
        "Action": "UPSERT",
        "ResourceRecordSet": record("a", {"ContinentCode": "AS"}),
    }
    assert rejection([change], existing) == ""


def test_geolocation_without_set_identifier() -> None:
    with pytest.raises(UserError, match="no SetIdentifier"):
        validate_changes([create(record("", {"ContinentCode": "EU"}))], [])


@pytest.mark.parametrize(
    ("other", "policy"),
    [
        (record("", None), "simple"),
        (record("w", None, Weight=10), "weighted"),
        (record("l", None, Region="eu-west-1"), "latency"),
        (record("f", None, Failover="PRIMARY"), "failover"),
    ],
)
def test_mixed_routing_rejected(other: dict[str, Any], policy: str) -> None:
    with pytest.raises(UserError, match=f"uses {policy} routing"):
        validate_changes([create(record("a", {"ContinentCode": "EU"}))], [other])


def test_other_type_not_mixed() -> None:
    other = record("", None, Type="AAAA")
    changes = [create(record("a", {"ContinentCode": "EU"}))]
    assert rejection(changes, [other]) == ""


def test_other_name_not_mixed() -> None:
    other = record("", None, Name="www.example.com.")
    changes = [create(record("a", {"ContinentCode": "EU"}))]
    assert rejection(changes, [other]) == ""


def test_alias_without_zone_rejected() -> None:
    entry = record("a", {"ContinentCode": "EU"})
    entry["AliasTarget"] = {"DNSName": "nlb.example", "EvaluateTargetHealth": True}
    with pytest.raises(UserError, match="AliasTarget without DNSName or HostedZoneId"):
        validate_changes([create(entry)], [])


def test_no_target_rejected() -> None:
    entry = record("a", {"ContinentCode": "EU"})
    del entry["AliasTarget"]
    with pytest.raises(UserError, match="neither AliasTarget nor ResourceRecords"):
        validate_changes([create(entry)], [])


def test_delete_missing_rejected() -> None:
    change = {
        "Action": "DELETE",
        "ResourceRecordSet": record("a", {"ContinentCode": "EU"}),
    }
    with pytest.raises(UserError, match="does not exist"):
        validate_changes([change], [])


def test_escaped_wildcard_name_matches() -> None:
    existing = [record("a", {"ContinentCode": "EU"}, Name="\\052.example.com.")]
    entry = record("b", {"ContinentCode": "EU"}, Name="*.example.com")
    with pytest.raises(UserError, match="one record per location"):
        validate_changes([create(entry)], existing)


def test_cname_at_name_rejected() -> None:
    cname = record(
        "", None, Type="CNAME", TTL=300, ResourceRecords=[{"Value": "a.example.org"}]
    )
    del cname["AliasTarget"]
    changes = [create(record("a", {"ContinentCode": "EU"}))]
    with pytest.raises(UserError, match="CNAME shares its name"):
        validate_changes(changes, [cname])
