"""A region's geolocation alias records: desired state and the change batch.

Pure data in, pure data out, so the plan is tested without Route 53.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.dns.locations import (
    Location,
    geolocation,
    location_of,
    owned_by,
    set_identifier,
)
from infra.dns.rules import normalize_name
from infra.plan import Action, Plan

RESOURCE = "route53-record"


@dataclass(frozen=True)
class LoadBalancerEndpoint:
    """Where a region's records point: a load balancer from DescribeLoadBalancers."""

    dns_name: str
    canonical_hosted_zone_id: str
    arn: str


@dataclass
class RecordChanges:
    """A change batch for one region and the plan entries that describe it."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)


def desired_record(
    domain: str,
    region: str,
    location: Location,
    endpoint: LoadBalancerEndpoint,
    health_check_id: str,
) -> dict[str, Any]:
    """Return the alias record set that sends `location` to the load balancer."""
    return {
        "Name": f"{domain}.",
        "Type": "A",
        "SetIdentifier": set_identifier(region, location),
        "GeoLocation": geolocation(location),
        "AliasTarget": {
            "HostedZoneId": endpoint.canonical_hosted_zone_id,
            "DNSName": endpoint.dns_name,
            "EvaluateTargetHealth": True,
        },
        "HealthCheckId": health_check_id,
    }


def region_records(
    records: list[dict[str, Any]], domain: str, region: str
) -> list[dict[str, Any]]:
    """Return the geolocation A records at `domain` that belong to `region`."""
    return [
        record
        for record in records
        if normalize_name(record["Name"]) == domain
        and record["Type"] == "A"
        and "GeoLocation" in record
        and owned_by(record.get("SetIdentifier", ""), region)
    ]


def _comparable(record: dict[str, Any]) -> tuple[Any, ...]:
    alias = record.get("AliasTarget") or {}
    return (
        tuple(sorted((record.get("GeoLocation") or {}).items())),
        normalize_name(alias.get("DNSName", "")),
        alias.get("HostedZoneId"),
        bool(alias.get("EvaluateTargetHealth")),
        record.get("HealthCheckId"),
        record.get("TTL"),
        tuple(value["Value"] for value in record.get("ResourceRecords") or []),
    )


def plan_records(
    *,
    region: str,
    domain: str,
    desired: list[dict[str, Any]],
    existing: list[dict[str, Any]],
) -> RecordChanges:
    """Compare the region's desired records with the zone's records at `domain`.

    A desired location held by a record with another SetIdentifier (a location
    or the default moved here from another region) is deleted in the same
    batch, because Route 53 keeps one record per location and applies a batch
    atomically.
    """
    result = RecordChanges()
    owned = {
        record["SetIdentifier"]: record
        for record in region_records(existing, domain, region)
    }
    desired_ids = {record["SetIdentifier"] for record in desired}
    for record in desired:
        set_id = record["SetIdentifier"]
        name = f"{domain} A {set_id}"
        label = location_of(record["GeoLocation"]).label
        current = owned.get(set_id)
        if current is None:
            skip = desired_ids | owned.keys()
            for holder in _other_holders(existing, domain, record, skip):
                result.changes.append({"Action": "DELETE", "ResourceRecordSet": holder})
                result.plan.add(
                    region,
                    RESOURCE,
                    f"{domain} A {holder['SetIdentifier']}",
                    Action.DELETE,
                    f"{label} moves to {region}",
                )
            result.changes.append({"Action": "CREATE", "ResourceRecordSet": record})
            result.plan.add(region, RESOURCE, name, Action.CREATE, label)
        elif _comparable(current) != _comparable(record):
            result.changes.append({"Action": "UPSERT", "ResourceRecordSet": record})
            result.plan.add(region, RESOURCE, name, Action.UPDATE, label)
        else:
            result.plan.add(region, RESOURCE, name, Action.UNCHANGED, label)
    for set_id, record in sorted(owned.items()):
        if set_id not in desired_ids:
            label = location_of(record["GeoLocation"]).label
            result.changes.append({"Action": "DELETE", "ResourceRecordSet": record})
            result.plan.add(
                region, RESOURCE, f"{domain} A {set_id}", Action.DELETE, label
            )
    # Deletions first, so that no step of the batch has two records for one
    # location even if Route 53 checks the changes in order.
    result.changes.sort(key=lambda change: change["Action"] != "DELETE")
    return result


def _other_holders(
    existing: list[dict[str, Any]],
    domain: str,
    record: dict[str, Any],
    skip: set[str],
) -> list[dict[str, Any]]:
    """Return records at the same name and location whose SetIdentifier is not
    in `skip`: the records this batch already creates, updates or deletes."""
    return [
        other
        for other in existing
        if normalize_name(other["Name"]) == domain
        and other["Type"] == "A"
        and other.get("GeoLocation") == record["GeoLocation"]
        and other.get("SetIdentifier") not in skip
    ]


def delete_records(
    *, region: str, domain: str, existing: list[dict[str, Any]]
) -> RecordChanges:
    """Return the batch that deletes every record of the region at `domain`."""
    result = RecordChanges()
    for record in region_records(existing, domain, region):
        label = location_of(record["GeoLocation"]).label
        result.changes.append({"Action": "DELETE", "ResourceRecordSet": record})
        result.plan.add(
            region,
            RESOURCE,
            f"{domain} A {record['SetIdentifier']}",
            Action.DELETE,
            label,
        )
    return result
