"""The rollout's view of Route 53: a seam over the `infra.dns` library.

The rollout calls DNS through `DnsBackend`, so tests can count or replace
the calls, and the library is imported only when DNS work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from infra.aws import Aws
from infra.config import Config
from infra.plan import Plan


@dataclass(frozen=True)
class Endpoint:
    """A region's load balancer as Route 53 alias records need it."""

    dns_name: str
    canonical_hosted_zone_id: str
    arn: str


@dataclass(frozen=True)
class DnsState:
    """A region's Route 53 state as `status` shows it."""

    locations: list[str] = field(default_factory=list)
    health_check_id: str = ""
    health_check_state: str = ""


class DnsBackend(Protocol):
    def reconcile(
        self,
        aws: Aws,
        config: Config,
        region: str,
        endpoint: Endpoint,
        *,
        dry_run: bool,
    ) -> Plan: ...

    def remove(
        self, aws: Aws, config: Config, region: str, *, dry_run: bool
    ) -> Plan: ...

    def status(self, aws: Aws, config: Config, region: str) -> DnsState: ...


class Route53:
    """The real backend: health checks and geolocation records in Route 53."""

    def reconcile(
        self,
        aws: Aws,
        config: Config,
        region: str,
        endpoint: Endpoint,
        *,
        dry_run: bool,
    ) -> Plan:
        from infra import dns

        target = dns.LoadBalancerEndpoint(
            dns_name=endpoint.dns_name,
            canonical_hosted_zone_id=endpoint.canonical_hosted_zone_id,
            arn=endpoint.arn,
        )
        plan: Plan = dns.reconcile_dns(aws, config, region, target, dry_run=dry_run)
        return plan

    def remove(self, aws: Aws, config: Config, region: str, *, dry_run: bool) -> Plan:
        from infra import dns

        plan: Plan = dns.remove_region_dns(aws, config, region, dry_run=dry_run)
        return plan

    def status(self, aws: Aws, config: Config, region: str) -> DnsState:
        from infra import dns

        state: Any = dns.dns_status(aws, config, region)
        return DnsState(
            locations=[str(item) for item in _field(state, "locations", [])],
            health_check_id=str(_field(state, "health_check_id", "") or ""),
            health_check_state=str(
                _field(state, "health_check_state", None)
                or _field(state, "health_state", "")
                or ""
            ),
        )


def _field(state: Any, name: str, default: Any) -> Any:
    if isinstance(state, dict):
        return state.get(name, default)
    return getattr(state, name, default)


class NoDns:
    """A backend that changes nothing, for runs that leave DNS alone."""

    def reconcile(
        self,
        aws: Aws,
        config: Config,
        region: str,
        endpoint: Endpoint,
        *,
        dry_run: bool,
    ) -> Plan:
        return Plan()

    def remove(self, aws: Aws, config: Config, region: str, *, dry_run: bool) -> Plan:
        return Plan()

    def status(self, aws: Aws, config: Config, region: str) -> DnsState:
        return DnsState()
