"""Route 53's record rules, checked on our side before any change call.

The emulator accepts records that Route 53 rejects (unknown continent codes,
duplicate locations or set identifiers, continent plus country), so every
batch is checked here first and a broken one never reaches either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.errors import UserError
from infra.geo import CONTINENTS, COUNTRIES, US_SUBDIVISIONS

RecordKey = tuple[str, str, str]

# The key that each routing policy other than simple adds to a record set.
ROUTING_KEYS = {
    "GeoLocation": "geolocation",
    "Weight": "weighted",
    "Region": "latency",
    "Failover": "failover",
    "MultiValueAnswer": "multivalue answer",
    "GeoProximityLocation": "geoproximity",
    "CidrRoutingConfig": "IP-based",
}


def normalize_name(name: str) -> str:
    """Return a DNS name lower-cased, without the final dot, with `*` unescaped."""
    return name.replace("\\052", "*").rstrip(".").lower()


def record_key(record: dict[str, Any]) -> RecordKey:
    """Return what identifies a record set in a zone: name, type, SetIdentifier."""
    return (
        normalize_name(record["Name"]),
        record["Type"],
        record.get("SetIdentifier", ""),
    )


def describe(record: dict[str, Any]) -> str:
    """Return a record set as the error messages name it."""
    name, record_type, set_id = record_key(record)
    suffix = f" (SetIdentifier {set_id})" if set_id else ""
    return f"Route 53 record {name} {record_type}{suffix}"


def routing_policy(record: dict[str, Any]) -> str:
    for key, policy in ROUTING_KEYS.items():
        if key in record:
            return policy
    return "simple"


def validate_changes(
    changes: list[dict[str, Any]], existing: list[dict[str, Any]]
) -> None:
    """Raise UserError when `changes`, applied to the `existing` record sets of
    the zone, break a rule Route 53 enforces; return None when they do not.

    The message names the first offending record and the fix.
    """
    result = {record_key(record): record for record in existing}
    seen: set[RecordKey] = set()
    for change in changes:
        key = record_key(change["ResourceRecordSet"])
        if key in seen:
            raise UserError(
                f"{describe(change['ResourceRecordSet'])} appears twice in one "
                "batch: keep one change per SetIdentifier"
            )
        seen.add(key)
        _apply(result, change)
    touched = {record_key(change["ResourceRecordSet"])[:2] for change in changes}
    for name_type in sorted(touched):
        group = [
            record for key, record in sorted(result.items()) if key[:2] == name_type
        ]
        _check_group(group)
    for name in sorted({name for name, _ in touched}):
        _check_cname(
            [record for key, record in sorted(result.items()) if key[0] == name]
        )


def _apply(result: dict[RecordKey, dict[str, Any]], change: dict[str, Any]) -> None:
    record = change["ResourceRecordSet"]
    key = record_key(record)
    action = change["Action"]
    if action == "DELETE":
        if key not in result:
            raise UserError(
                f"{describe(record)} cannot be deleted because it does not exist: "
                "re-run to plan from the current records"
            )
        del result[key]
        return
    _check_record(record)
    if action == "CREATE" and key in result:
        raise UserError(
            f"{describe(record)} already exists, so CREATE would fail: use UPSERT "
            "or give it another SetIdentifier"
        )
    if action not in ("CREATE", "UPSERT"):
        raise UserError(
            f"{describe(record)}: unknown action {action!r}: use CREATE, UPSERT "
            "or DELETE"
        )
    result[key] = record


def _check_record(record: dict[str, Any]) -> None:
    geo = record.get("GeoLocation")
    if geo is not None:
        _check_geolocation(record, geo)
        if not record.get("SetIdentifier"):
            raise UserError(
                f"{describe(record)} has GeoLocation but no SetIdentifier: give "
                "each geolocation record a unique SetIdentifier"
            )
    alias = record.get("AliasTarget")
    if alias is None and not record.get("ResourceRecords"):
        raise UserError(
            f"{describe(record)} has neither AliasTarget nor ResourceRecords: "
            "point it at the load balancer with an AliasTarget"
        )
    if alias is not None and not (alias.get("DNSName") and alias.get("HostedZoneId")):
        raise UserError(
            f"{describe(record)} has an AliasTarget without DNSName or "
            "HostedZoneId: take both from the load balancer's DNSName and "
            "CanonicalHostedZoneId"
        )


def _check_geolocation(record: dict[str, Any], geo: dict[str, Any]) -> None:
    continent = geo.get("ContinentCode")
    country = geo.get("CountryCode")
    subdivision = geo.get("SubdivisionCode")
    if continent is not None and (country is not None or subdivision is not None):
        raise UserError(
            f"{describe(record)} sets ContinentCode {continent} together with "
            "CountryCode: keep one of them"
        )
    if continent is None and country is None:
        raise UserError(
            f"{describe(record)} has a GeoLocation without ContinentCode or "
            "CountryCode: set one, or CountryCode * for the default record"
        )
    if continent is not None and continent not in CONTINENTS:
        raise UserError(
            f"{describe(record)} has invalid ContinentCode {continent!r}: use one "
            f"of {', '.join(sorted(CONTINENTS))}"
        )
    if country is not None and country != "*" and country not in COUNTRIES:
        raise UserError(
            f"{describe(record)} has invalid CountryCode {country!r}: use an "
            "ISO 3166-1 alpha-2 code such as DE, or * for the default record"
        )
    if subdivision is not None and country != "US":
        raise UserError(
            f"{describe(record)} sets SubdivisionCode {subdivision} with "
            f"CountryCode {country}: Route 53 has subdivisions only for US"
        )
    if subdivision is not None and subdivision not in US_SUBDIVISIONS:
        raise UserError(
            f"{describe(record)} has invalid SubdivisionCode {subdivision!r}: use "
            "a two-letter US state code such as CA"
        )


def _check_group(group: list[dict[str, Any]]) -> None:
    """Check the record sets that share one name and type."""
    geo_records = [record for record in group if "GeoLocation" in record]
    if not geo_records:
        return
    for record in group:
        policy = routing_policy(record)
        if policy != "geolocation":
            raise UserError(
                f"{describe(record)} uses {policy} routing, and geolocation "
                "records cannot share its name and type: delete it or move the "
                "domain to another name"
            )
    _check_unique_locations(geo_records)


def _check_cname(records: list[dict[str, Any]]) -> None:
    """Check that a CNAME record set is alone at its name, as DNS requires."""
    cnames = [record for record in records if record["Type"] == "CNAME"]
    if cnames and len(records) > len(cnames):
        raise UserError(
            f"{describe(cnames[0])} shares its name with records of other types, "
            "which DNS forbids: delete the CNAME or move the domain to another name"
        )


def _check_unique_locations(records: Iterable[dict[str, Any]]) -> None:
    seen: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for record in records:
        location = tuple(sorted(record["GeoLocation"].items()))
        if location in seen:
            other = record_key(seen[location])[2]
            raise UserError(
                f"{describe(record)} has the same GeoLocation as SetIdentifier "
                f"{other}: keep one record per location"
            )
        seen[location] = record
