"""Check each region from outside: load balancer, target health, Route 53.

Resources are found by the tags the rollout sets: notary:project,
notary:region and notary:component ("nlb", "target-group", "health-check").
HTTP requests go to a loopback address, or to the load balancer's public
DNS name only with `target: aws` and an explicit `allow_remote`. With
`target: local` the emulator's load balancer names do not resolve, so the
probe reports only what the emulator stores and sends no request.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from infra import tags
from infra.aws import Aws, error_code
from infra.config import Config
from infra.errors import UserError

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthcheck"
# DescribeTags takes at most 20 ARNs; ListTagsForResources at most 10 ids.
ELB_TAG_BATCH = 20
ROUTE53_TAG_BATCH = 10
# Route 53 counts an endpoint healthy when more than 18% of its checkers
# report success (Route 53 Developer Guide, "How Amazon Route 53 determines
# whether a health check is healthy").
HEALTHY_FRACTION = 0.18
REMOTE_NOTE = (
    "not probed: the load balancer name is not a loopback name; pass --remote "
    "to send GET /healthcheck to it"
)
# moto 5.2 reports registered targets healthy and returns one fixed
# successful observation from GetHealthCheckStatus, without probing.
EMULATOR_NOTE = (
    "target health and Route 53 status come from the emulator, which probes "
    "nothing and reports them healthy"
)
LOCAL_NOTE = (
    "not probed: load balancer DNS names from the emulator do not resolve "
    "with target local"
)


@dataclass(frozen=True)
class EndpointResult:
    """The outcome of GET /healthcheck on the load balancer."""

    url: str | None
    status: str  # "ok", "failed" or "not-probed"
    detail: str
    http_status: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class TargetState:
    instance_id: str
    port: int | None
    state: str
    reason: str = ""


@dataclass(frozen=True)
class TargetGroupHealth:
    name: str
    arn: str
    targets: list[TargetState]


@dataclass(frozen=True)
class HealthCheckState:
    id: str
    status: str  # "healthy", "unhealthy" or "unknown"
    detail: str


@dataclass
class RegionHealth:
    """Everything the probe found for one region."""

    region: str
    load_balancer: str | None = None
    dns_name: str | None = None
    load_balancer_state: str | None = None
    endpoint: EndpointResult = EndpointResult(None, "not-probed", "no load balancer")
    target_groups: list[TargetGroupHealth] = field(default_factory=list)
    health_checks: list[HealthCheckState] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Facts that qualify the results without making the region unhealthy.
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def verdict(self) -> str:
        """ "healthy", "unhealthy", "missing" (no load balancer) or "error"."""
        if self.error is not None:
            return "error"
        if self.load_balancer is None:
            return "missing"
        return "unhealthy" if self.problems else "healthy"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def is_loopback_host(host: str) -> bool:
    """Return True for localhost or a loopback IP; no DNS lookup is made."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(
    url: str, *, timeout: float = 5.0, allow_remote: bool = False
) -> EndpointResult:
    """GET `url` once, with no redirects; expect status 200 and the body "Ok".

    Raise UserError before any connection when the host is not loopback and
    `allow_remote` is false. TLS certificates are not verified, because the
    load balancer forwards to the notary, whose certificate may be self-signed.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        raise UserError(f"invalid probe URL {url!r}: use http:// or https://")
    if not allow_remote and not is_loopback_host(host):
        raise UserError(
            f"probe of host {host!r} rejected: only loopback hosts are probed "
            "unless the config sets target: aws"
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request("GET", parts.path or "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read(64)
    except (OSError, http.client.HTTPException) as error:
        return EndpointResult(url, "failed", f"request failed: {error}")
    finally:
        connection.close()
    seconds = time.monotonic() - started
    if response.status != 200 or body.strip() != b"Ok":
        return EndpointResult(
            url, "failed", f"HTTP {response.status}", response.status, seconds
        )
    return EndpointResult(url, "ok", "HTTP 200 Ok", 200, seconds)


def _tag_filter(config: Config, region: str, component: str) -> dict[str, str]:
    return {
        tags.PROJECT: config.project,
        tags.REGION: region,
        tags.COMPONENT: component,
    }


def _matches(found: dict[str, str], expected_tags: dict[str, str]) -> bool:
    return all(found.get(key) == value for key, value in expected_tags.items())


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def find_tagged_elb(
    elbv2: Any, *, kind: str, expected_tags: dict[str, str]
) -> list[dict[str, Any]]:
    """Return load balancers (kind "lb") or target groups ("tg") with the tags."""
    if kind == "lb":
        operation, key, arn_key = (
            "describe_load_balancers",
            "LoadBalancers",
            "LoadBalancerArn",
        )
    else:
        operation, key, arn_key = (
            "describe_target_groups",
            "TargetGroups",
            "TargetGroupArn",
        )
    resources: dict[str, dict[str, Any]] = {}
    for page in elbv2.get_paginator(operation).paginate():
        for resource in page[key]:
            resources[resource[arn_key]] = resource
    found = []
    for batch in _batches(sorted(resources), ELB_TAG_BATCH):
        answer = elbv2.describe_tags(ResourceArns=batch)
        for description in answer["TagDescriptions"]:
            if _matches(tags.from_list(description.get("Tags")), expected_tags):
                found.append(resources[description["ResourceArn"]])
    return found


def target_states(elbv2: Any, target_group_arn: str) -> list[TargetState]:
    answer = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
    states = []
    for description in answer["TargetHealthDescriptions"]:
        target = description["Target"]
        health = description.get("TargetHealth", {})
        states.append(
            TargetState(
                instance_id=target["Id"],
                port=target.get("Port"),
                state=health.get("State", "unknown"),
                reason=health.get("Reason", ""),
            )
        )
    return states


def find_health_checks(route53: Any, expected_tags: dict[str, str]) -> list[str]:
    """Return the ids of Route 53 health checks that carry the tags."""
    ids: list[str] = []
    for page in route53.get_paginator("list_health_checks").paginate():
        ids.extend(check["Id"] for check in page["HealthChecks"])
    found = []
    for batch in _batches(sorted(ids), ROUTE53_TAG_BATCH):
        answer = route53.list_tags_for_resources(
            ResourceType="healthcheck", ResourceIds=batch
        )
        for tag_set in answer["ResourceTagSets"]:
            if _matches(tags.from_list(tag_set.get("Tags")), expected_tags):
                found.append(tag_set["ResourceId"])
    return found


def health_check_state(route53: Any, health_check_id: str) -> HealthCheckState:
    """Summarise the checkers' last reports; "unknown" when the call fails.

    Some emulators do not implement GetHealthCheckStatus and return HTTP 500,
    which botocore raises as a parser error, so no failure here is fatal.
    """
    try:
        answer = route53.get_health_check_status(HealthCheckId=health_check_id)
    except ClientError as error:
        return HealthCheckState(health_check_id, "unknown", f"{error_code(error)}")
    except (BotoCoreError, ResponseParserError) as error:
        return HealthCheckState(
            health_check_id, "unknown", f"status unavailable: {type(error).__name__}"
        )
    observations = answer.get("HealthCheckObservations", [])
    if not observations:
        return HealthCheckState(health_check_id, "unknown", "no checker reports yet")
    passed = sum(
        1
        for observation in observations
        if observation.get("StatusReport", {}).get("Status", "").startswith("Success")
    )
    fraction = passed / len(observations)
    status = "healthy" if fraction > HEALTHY_FRACTION else "unhealthy"
    return HealthCheckState(
        health_check_id,
        status,
        f"{passed} of {len(observations)} checkers report success",
    )


def notary_scheme(config: Config) -> str:
    """Return "https" when the notary speaks TLS on its port, else "http"."""
    return "https" if config.enclave.notary_tls else "http"


def probe_region(
    aws: Aws,
    config: Config,
    region: str,
    *,
    timeout: float = 5.0,
    allow_remote: bool = False,
) -> RegionHealth:
    """Collect one region's load balancer, target and Route 53 health."""
    health = RegionHealth(region=region)
    elbv2 = aws.client("elbv2", region)
    balancers = find_tagged_elb(
        elbv2, kind="lb", expected_tags=_tag_filter(config, region, "nlb")
    )
    if len(balancers) > 1:
        health.problems.append(f"{len(balancers)} load balancers carry the region tags")
    if balancers:
        balancer = balancers[0]
        health.load_balancer = balancer["LoadBalancerName"]
        health.dns_name = balancer["DNSName"]
        health.load_balancer_state = balancer.get("State", {}).get("Code")
        if health.load_balancer_state not in (None, "active"):
            health.problems.append(f"load balancer is {health.load_balancer_state}")
    else:
        health.problems.append("no load balancer found")
    _add_targets(health, elbv2, config, region)
    _add_health_checks(health, aws.client("route53", region), config, region)
    health.endpoint = probe_endpoint(
        health, config, timeout=timeout, allow_remote=allow_remote
    )
    if health.endpoint.status == "not-probed" and health.dns_name:
        health.notes.append(health.endpoint.detail)
    if config.target == "local":
        health.notes.append(EMULATOR_NOTE)
    if health.endpoint.status == "failed":
        health.problems.append(f"/healthcheck failed: {health.endpoint.detail}")
    return health


def _add_targets(health: RegionHealth, elbv2: Any, config: Config, region: str) -> None:
    groups = find_tagged_elb(
        elbv2, kind="tg", expected_tags=_tag_filter(config, region, "target-group")
    )
    if not groups:
        health.problems.append("no target group found")
    for group in groups:
        states = target_states(elbv2, group["TargetGroupArn"])
        health.target_groups.append(
            TargetGroupHealth(
                name=group["TargetGroupName"],
                arn=group["TargetGroupArn"],
                targets=states,
            )
        )
        if not states:
            health.problems.append(f"target group {group['TargetGroupName']} is empty")
        unhealthy = [s.instance_id for s in states if s.state != "healthy"]
        if unhealthy:
            health.problems.append(f"targets not healthy: {', '.join(unhealthy)}")


def _add_health_checks(
    health: RegionHealth, route53: Any, config: Config, region: str
) -> None:
    ids = find_health_checks(route53, _tag_filter(config, region, "health-check"))
    if not ids:
        health.problems.append("no Route 53 health check found")
    for health_check_id in ids:
        state = health_check_state(route53, health_check_id)
        health.health_checks.append(state)
        if state.status == "unhealthy":
            health.problems.append(f"Route 53 health check {health_check_id} unhealthy")


def probe_endpoint(
    health: RegionHealth, config: Config, *, timeout: float, allow_remote: bool
) -> EndpointResult:
    """GET the load balancer's /healthcheck where allowed, else return why not."""
    if health.dns_name is None:
        return EndpointResult(None, "not-probed", "no load balancer")
    url = (
        f"{notary_scheme(config)}://{health.dns_name}:"
        f"{config.enclave.notary_port}{HEALTH_PATH}"
    )
    if config.target == "local":
        return EndpointResult(url, "not-probed", LOCAL_NOTE)
    if not allow_remote and not is_loopback_host(health.dns_name):
        return EndpointResult(url, "not-probed", REMOTE_NOTE)
    # NOTE: a GET to a real load balancer (target aws, allow_remote) has no
    # test here, because tests send traffic only to loopback addresses.
    return check_endpoint(url, timeout=timeout, allow_remote=allow_remote)


def probe_regions(
    aws: Aws,
    config: Config,
    regions: list[str],
    *,
    timeout: float = 5.0,
    allow_remote: bool = False,
) -> list[RegionHealth]:
    """Probe the regions in parallel; return results in the order given."""
    for region in regions:
        config.region(region)

    def probe(region: str) -> RegionHealth:
        try:
            return probe_region(
                aws, config, region, timeout=timeout, allow_remote=allow_remote
            )
        except (ClientError, BotoCoreError, ResponseParserError) as error:
            log.warning("probing %s failed: %s", region, error)
            return RegionHealth(region=region, error=f"AWS call failed: {error}")

    with ThreadPoolExecutor(max_workers=min(8, len(regions) or 1)) as pool:
        return list(pool.map(probe, regions))
