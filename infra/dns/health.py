"""The region's Route 53 health check against its load balancer."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from infra import tags
from infra.aws import error_code
from infra.config import Config
from infra.dns.records import LoadBalancerEndpoint
from infra.dns.rules import normalize_name
from infra.dns.throttle import call
from infra.errors import UserError

log = logging.getLogger(__name__)

RESOURCE = "route53-health-check"
COMPONENT = "health-check"
RESOURCE_PATH = "/healthcheck"
# Route 53 cannot change Type or RequestInterval after creation, but can
# change the other settings with UpdateHealthCheck.
IMMUTABLE = ("Type", "RequestInterval")
MUTABLE = (
    "FullyQualifiedDomainName",
    "Port",
    "ResourcePath",
    "FailureThreshold",
    "Inverted",
    "Disabled",
)
# Route 53 accepts at most 10 tags per health check.
MAX_TAGS = 10
# Route 53 rejects the CallerReference of a deleted health check for some
# days (HealthCheckAlreadyExists), so creation moves on to numbered variants.
REFERENCE_VARIANTS = 5
# Route 53 counts an endpoint healthy when more than 18% of its checkers
# report it healthy (Route 53 Developer Guide, "How Amazon Route 53
# determines whether a health check is healthy").
HEALTHY_FRACTION = 0.18


@dataclass(frozen=True)
class FoundHealthCheck:
    id: str
    version: int
    config: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)


def desired_config(config: Config, endpoint: LoadBalancerEndpoint) -> dict[str, Any]:
    """Return the HealthCheckConfig that probes the notary behind the endpoint."""
    return {
        "Type": "HTTPS" if config.enclave.notary_tls else "HTTP",
        "FullyQualifiedDomainName": endpoint.dns_name.rstrip("."),
        "Port": config.enclave.notary_port,
        "ResourcePath": RESOURCE_PATH,
        "RequestInterval": config.health_check.request_interval,
        "FailureThreshold": config.health_check.failure_threshold,
        "Inverted": False,
        "Disabled": False,
    }


def desired_tags(config: Config, region: str) -> dict[str, str]:
    """Return the health check's tags, or raise UserError above Route 53's limit."""
    expected = config.resource_tags(
        **{
            tags.REGION: region,
            tags.COMPONENT: COMPONENT,
            "Name": f"{config.project}-{region}",
        }
    )
    if len(expected) > MAX_TAGS:
        raise UserError(
            f"tags: a Route 53 health check takes at most {MAX_TAGS} tags and "
            f"{len(expected)} are needed: remove {len(expected) - MAX_TAGS} from tags"
        )
    return expected


def caller_reference(
    config: Config, region: str, desired: dict[str, Any], variant: int = 1
) -> str:
    """Return the CallerReference for creating `desired` in `region`.

    The same project, region and settings give the same reference, so a
    creation repeated after a crash returns the health check made the first
    time instead of a second one.
    """
    digest = hashlib.sha256(json.dumps(desired, sort_keys=True).encode()).hexdigest()[
        :16
    ]
    reference = f"{config.project}-{region}-{digest}"
    return reference if variant == 1 else f"{reference}-{variant}"


def find_health_checks(
    route53: Any, config: Config, region: str
) -> list[FoundHealthCheck]:
    """Return the health checks tagged as this project's check for `region`."""
    checks: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    while True:
        answer = call(route53, "list_health_checks", **params)
        for check in answer.get("HealthChecks", []):
            checks[check["Id"]] = check
        if not answer.get("IsTruncated") or not answer.get("NextMarker"):
            break
        params = {"Marker": answer["NextMarker"]}
    expected = {
        tags.PROJECT: config.project,
        tags.REGION: region,
        tags.COMPONENT: COMPONENT,
    }
    found = []
    ids = sorted(checks)
    for start in range(0, len(ids), 10):
        answer = call(
            route53,
            "list_tags_for_resources",
            ResourceType="healthcheck",
            ResourceIds=ids[start : start + 10],
        )
        for tag_set in answer.get("ResourceTagSets", []):
            current = tags.from_list(tag_set.get("Tags"))
            if all(current.get(key) == value for key, value in expected.items()):
                check = checks[tag_set["ResourceId"]]
                found.append(
                    FoundHealthCheck(
                        id=check["Id"],
                        version=int(check.get("HealthCheckVersion", 1)),
                        config=check["HealthCheckConfig"],
                        tags=current,
                    )
                )
    return sorted(found, key=lambda check: check.id)


def _same(key: str, current: Any, desired: Any) -> bool:
    if key == "FullyQualifiedDomainName":
        return normalize_name(current or "") == normalize_name(desired)
    if key in ("Inverted", "Disabled"):
        return bool(current) == bool(desired)
    return bool(current == desired)


def reusable(check: FoundHealthCheck, desired: dict[str, Any]) -> bool:
    """Return whether the check's settings that cannot change match `desired`."""
    return all(_same(key, check.config.get(key), desired[key]) for key in IMMUTABLE)


def choose(
    found: list[FoundHealthCheck], desired: dict[str, Any], in_use: set[str]
) -> FoundHealthCheck | None:
    """Return the health check to keep: a reusable one, preferably one that the
    region's records already use; None when a new one is needed."""
    candidates = [check for check in found if reusable(check, desired)]
    candidates.sort(key=lambda check: (check.id not in in_use, check.id))
    return candidates[0] if candidates else None


def updates(check: FoundHealthCheck, desired: dict[str, Any]) -> dict[str, Any]:
    """Return the UpdateHealthCheck fields that differ from `desired`."""
    return {
        key: desired[key]
        for key in MUTABLE
        if not _same(key, check.config.get(key), desired[key])
    }


def missing_tags(check: FoundHealthCheck, expected: dict[str, str]) -> dict[str, str]:
    return {
        key: value for key, value in expected.items() if check.tags.get(key) != value
    }


def create(
    route53: Any,
    config: Config,
    region: str,
    desired: dict[str, Any],
    expected_tags: dict[str, str],
) -> str:
    """Create and tag the region's health check, and return its id."""
    # NOTE: when a run dies between creation and tagging, Route 53 returns the
    # same health check on the next run, but the emulator (moto 5.2) ignores
    # CallerReference and creates a second one, left untagged.
    for variant in range(1, REFERENCE_VARIANTS + 1):
        reference = caller_reference(config, region, desired, variant)
        try:
            answer = call(
                route53,
                "create_health_check",
                CallerReference=reference,
                HealthCheckConfig=desired,
            )
            break
        except ClientError as error:
            if error_code(error) != "HealthCheckAlreadyExists":
                raise
            log.info("CallerReference %s was used before, trying the next", reference)
    else:
        raise UserError(
            f"health check for {region}: CallerReferences {reference} and the "
            f"{REFERENCE_VARIANTS - 1} before it are all used: delete the "
            "untagged health checks for this load balancer, then run again"
        )
    check_id = str(answer["HealthCheck"]["Id"])
    tag(route53, check_id, expected_tags)
    log.info("Created health check %s for %s", check_id, region)
    return check_id


def update(route53: Any, check: FoundHealthCheck, changes: dict[str, Any]) -> None:
    """Apply `changes` to the health check, guarded by its version."""
    call(
        route53,
        "update_health_check",
        HealthCheckId=check.id,
        HealthCheckVersion=check.version,
        **changes,
    )
    log.info("Updated health check %s: %s", check.id, ", ".join(sorted(changes)))


def tag(route53: Any, check_id: str, expected: dict[str, str]) -> None:
    call(
        route53,
        "change_tags_for_resource",
        ResourceType="healthcheck",
        ResourceId=check_id,
        AddTags=tags.to_list(expected),
    )


def delete(route53: Any, check_id: str) -> None:
    """Delete a health check, treating one already gone as deleted."""
    try:
        call(route53, "delete_health_check", HealthCheckId=check_id)
    except ClientError as error:
        if error_code(error) != "NoSuchHealthCheck":
            raise
    log.info("Deleted health check %s", check_id)


def state(route53: Any, check_id: str) -> str:
    """Return healthy, unhealthy or unknown from the checkers' latest reports."""
    try:
        answer = call(route53, "get_health_check_status", HealthCheckId=check_id)
    except (ClientError, ResponseParserError) as error:
        # The emulator returns HTTP 500 for unimplemented calls, which
        # botocore raises as ResponseParserError.
        log.info("No status for health check %s: %s", check_id, error)
        return "unknown"
    reports = [
        observation.get("StatusReport", {}).get("Status", "")
        for observation in answer.get("HealthCheckObservations", [])
    ]
    if not reports:
        return "unknown"
    successes = sum(report.startswith("Success") for report in reports)
    return "healthy" if successes / len(reports) > HEALTHY_FRACTION else "unhealthy"
