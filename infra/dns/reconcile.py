"""Route 53 for one region: its health check and its geolocation records.

Each call reads the zone and the health checks, plans, checks the batch
against Route 53's rules, then writes: health check first, then one atomic
record batch, then deletion of the health checks that no record uses any more.
Regions share the zone, and each call touches only its own region's records,
except that a location moving to this region is taken over in the same batch.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from infra.aws import Aws, error_code
from infra.config import Config
from infra.dns import health, zone
from infra.dns.locations import Location, location_of, region_locations
from infra.dns.records import (
    LoadBalancerEndpoint,
    RecordChanges,
    delete_records,
    desired_record,
    plan_records,
    region_records,
)
from infra.dns.rules import validate_changes
from infra.errors import UserError
from infra.plan import Action, Plan

log = logging.getLogger(__name__)

# Route 53 is a global service whose API lives in us-east-1.
ROUTE53_REGION = "us-east-1"
ZONE_RESOURCE = "route53-hosted-zone"
# Placeholder id of a health check not created yet, used in dry-run plans and
# in the rule checks that run before any write.
PENDING_CHECK_ID = "00000000-0000-0000-0000-000000000000"
# A batch planned from records that another region changed meanwhile fails
# with InvalidChangeBatch, so the region reads and plans again.
PLAN_ROUNDS = 3

_zone_lock = threading.Lock()


@dataclass(frozen=True)
class RegionDns:
    """A region's Route 53 state: locations as configured and as served."""

    region: str
    configured: tuple[str, ...]
    live: tuple[str, ...]
    health_check_id: str | None
    # healthy, unhealthy, unknown (no status available) or missing.
    health_check_state: str

    @property
    def locations(self) -> tuple[str, ...]:
        """The locations Route 53 serves from this region."""
        return self.live


@dataclass
class _Current:
    zone_id: str | None
    records: list[dict[str, Any]]
    checks: list[health.FoundHealthCheck]


def reconcile_dns(
    aws: Aws,
    config: Config,
    region: str,
    endpoint: LoadBalancerEndpoint,
    *,
    dry_run: bool = False,
    wait: bool = True,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 600.0,
) -> Plan:
    """Make the region's health check and geolocation records match the config.

    Return the plan. With `dry_run`, only read calls are made. With `wait`,
    return once the record change is INSYNC, polling every `poll_seconds`
    for at most `timeout_seconds`.
    """
    locations = region_locations(config, region)
    _check_endpoint(region, endpoint)
    route53 = aws.client("route53", ROUTE53_REGION)
    expected_tags = health.desired_tags(config, region)
    desired_check = health.desired_config(config, endpoint)
    round_number = 1
    while True:
        try:
            return _reconcile_once(
                route53,
                config,
                region,
                endpoint,
                locations,
                desired_check,
                expected_tags,
                dry_run=dry_run,
                wait=wait,
                poll_seconds=poll_seconds,
                timeout_seconds=timeout_seconds,
            )
        except ClientError as error:
            if error_code(error) != "InvalidChangeBatch" or round_number >= PLAN_ROUNDS:
                raise
            log.info(
                "Records of %s changed while planning %s (%s), planning again",
                config.domain,
                region,
                error,
            )
            round_number += 1


def _check_endpoint(region: str, endpoint: LoadBalancerEndpoint) -> None:
    if not endpoint.dns_name or not endpoint.canonical_hosted_zone_id:
        raise UserError(
            f"load balancer {endpoint.arn or '(no ARN)'} in {region} has no DNS name "
            "or CanonicalHostedZoneId: pass both from DescribeLoadBalancers"
        )


def _reconcile_once(
    route53: Any,
    config: Config,
    region: str,
    endpoint: LoadBalancerEndpoint,
    locations: list[Location],
    desired_check: dict[str, Any],
    expected_tags: dict[str, str],
    *,
    dry_run: bool,
    wait: bool,
    poll_seconds: float,
    timeout_seconds: float,
) -> Plan:
    plan = Plan()
    current = _read(route53, config, region, plan, dry_run=dry_run)
    owned = region_records(current.records, config.domain, region)
    in_use = {str(record.get("HealthCheckId")) for record in owned}
    keep = health.choose(current.checks, desired_check, in_use)
    check_updates = health.updates(keep, desired_check) if keep else {}
    check_tags = health.missing_tags(keep, expected_tags) if keep else {}
    stale = [check for check in current.checks if keep is None or check.id != keep.id]

    # Plan and check the batch before any write, with a stand-in id for a
    # health check still to be created.
    check_id = keep.id if keep else PENDING_CHECK_ID
    records = _plan_records(config, region, endpoint, locations, check_id, current)
    validate_changes(records.changes, current.records)
    _plan_health_check(plan, region, desired_check, keep, check_updates, check_tags)
    plan.extend(records.plan)
    for check in stale:
        plan.add(region, health.RESOURCE, check.id, Action.DELETE, "replaced")
    if dry_run:
        return plan

    if keep is None:
        check_id = health.create(route53, config, region, desired_check, expected_tags)
        records = _plan_records(config, region, endpoint, locations, check_id, current)
    else:
        if check_updates:
            health.update(route53, keep, check_updates)
        if check_tags:
            health.tag(route53, keep.id, check_tags)
    _write_records(
        route53,
        current.zone_id,
        records,
        comment=f"{config.project}: {region} geolocation records",
        wait=wait,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )
    # No record uses the stale checks now, so Route 53 lets them go.
    # NOTE: without `wait`, they go before the record change is INSYNC, so for
    # up to about a minute some Route 53 servers serve records that name them.
    for check in stale:
        health.delete(route53, check.id)
    if not plan.has_changes:
        log.info("Route 53 for %s is up to date: no changes", region)
    return plan


def _read(
    route53: Any, config: Config, region: str, plan: Plan, *, dry_run: bool
) -> _Current:
    """Read the zone's records at the domain and the region's health checks,
    creating the zone first on the emulator when it is missing."""
    with _zone_lock:
        zone_id = zone.find_zone(route53, config)
        if zone_id is None:
            zone_id = _missing_zone(route53, config, region, plan, dry_run=dry_run)
    records = zone.list_records(route53, zone_id, config.domain) if zone_id else []
    checks = health.find_health_checks(route53, config, region)
    return _Current(zone_id=zone_id, records=records, checks=checks)


def _missing_zone(
    route53: Any, config: Config, region: str, plan: Plan, *, dry_run: bool
) -> str | None:
    if config.target == "aws":
        raise UserError(
            f"hosted zone {config.hosted_zone} not found in the account: create "
            "it as a public zone in Route 53 and delegate it, or set hosted_zone "
            "to an existing zone"
        )
    plan.add(region, ZONE_RESOURCE, config.hosted_zone, Action.CREATE, "emulator")
    if dry_run:
        return None
    log.info(
        "Hosted zone %s not found on the emulator, creating it",
        config.hosted_zone,
    )
    return zone.create_zone(route53, config)


def _plan_records(
    config: Config,
    region: str,
    endpoint: LoadBalancerEndpoint,
    locations: list[Location],
    check_id: str,
    current: _Current,
) -> RecordChanges:
    desired = [
        desired_record(config.domain, region, location, endpoint, check_id)
        for location in locations
    ]
    return plan_records(
        region=region, domain=config.domain, desired=desired, existing=current.records
    )


def _plan_health_check(
    plan: Plan,
    region: str,
    desired: dict[str, Any],
    keep: health.FoundHealthCheck | None,
    check_updates: dict[str, Any],
    check_tags: dict[str, str],
) -> None:
    target = (
        f"{desired['Type']} {desired['FullyQualifiedDomainName']}:{desired['Port']}"
        f"{desired['ResourcePath']} every {desired['RequestInterval']} s"
    )
    if keep is None:
        plan.add(region, health.RESOURCE, "new", Action.CREATE, target)
    elif check_updates or check_tags:
        changed = sorted(check_updates) + (["tags"] if check_tags else [])
        plan.add(region, health.RESOURCE, keep.id, Action.UPDATE, ", ".join(changed))
    else:
        plan.add(region, health.RESOURCE, keep.id, Action.UNCHANGED, target)


def _write_records(
    route53: Any,
    zone_id: str | None,
    records: RecordChanges,
    *,
    comment: str,
    wait: bool,
    poll_seconds: float,
    timeout_seconds: float,
) -> None:
    if not records.changes:
        return
    if zone_id is None:
        raise AssertionError("a record change needs a hosted zone")
    change_id = zone.submit_changes(route53, zone_id, records.changes, comment=comment)
    if wait:
        zone.wait_insync(
            route53,
            change_id,
            poll_seconds=poll_seconds,
            timeout_seconds=timeout_seconds,
        )


def remove_region_dns(
    aws: Aws,
    config: Config,
    region: str,
    *,
    dry_run: bool = False,
    wait: bool = True,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 600.0,
) -> Plan:
    """Delete the region's records, including the default record when the region
    owns it, then its health checks, and return the plan.

    The region need not be in the config, so a region dropped from it can be
    removed.
    """
    route53 = aws.client("route53", ROUTE53_REGION)
    plan = Plan()
    zone_id = zone.find_zone(route53, config)
    records = zone.list_records(route53, zone_id, config.domain) if zone_id else []
    deletion = delete_records(region=region, domain=config.domain, existing=records)
    validate_changes(deletion.changes, records)
    checks = health.find_health_checks(route53, config, region)
    plan.extend(deletion.plan)
    for check in checks:
        plan.add(region, health.RESOURCE, check.id, Action.DELETE)
    if dry_run:
        return plan
    _write_records(
        route53,
        zone_id,
        deletion,
        comment=f"{config.project}: remove {region} geolocation records",
        wait=wait,
        poll_seconds=poll_seconds,
        timeout_seconds=timeout_seconds,
    )
    for check in checks:
        health.delete(route53, check.id)
    if any(entry.name.endswith(f"{region}-default") for entry in deletion.plan.entries):
        log.warning(
            "Removed the default record with %s: clients outside every location "
            "get no answer until another region marked default: true is rolled out",
            region,
        )
    return plan


def dns_status(aws: Aws, config: Config, region: str) -> RegionDns:
    """Return the region's locations as configured and as found in Route 53,
    and its health check with the checkers' verdict."""
    route53 = aws.client("route53", ROUTE53_REGION)
    zone_id = zone.find_zone(route53, config)
    records = zone.list_records(route53, zone_id, config.domain) if zone_id else []
    owned = region_records(records, config.domain, region)
    checks = health.find_health_checks(route53, config, region)
    used = [
        str(record["HealthCheckId"]) for record in owned if "HealthCheckId" in record
    ]
    check_id: str | None = None
    if used:
        check_id = used[0]
    elif checks:
        check_id = checks[0].id
    state = health.state(route53, check_id) if check_id else "missing"
    configured: list[Location] = []
    if region in config.region_names:
        configured = region_locations(config, region)
    return RegionDns(
        region=region,
        configured=tuple(location.label for location in configured),
        live=tuple(
            sorted(location_of(record["GeoLocation"]).label for record in owned)
        ),
        health_check_id=check_id,
        health_check_state=state,
    )
