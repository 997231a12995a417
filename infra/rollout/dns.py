"""The rollout's view of Route 53: a seam over the `infra.dns` library.

The rollout calls DNS through `DnsBackend`, so tests can count or replace
the calls, and the library is imported only when DNS work starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
    """The real backend: health checks and geolocation records in Route 53.

    `poll_seconds` and `timeout_seconds` bound the wait for INSYNC.
    """

    def __init__(self, *, poll_seconds: float = 5.0, timeout_seconds: float = 600.0):
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds

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
        return dns.reconcile_dns(
            aws,
            config,
            region,
            target,
            dry_run=dry_run,
            poll_seconds=self.poll_seconds,
            timeout_seconds=self.timeout_seconds,
        )

    def remove(self, aws: Aws, config: Config, region: str, *, dry_run: bool) -> Plan:
        from infra import dns

        return dns.remove_region_dns(aws, config, region, dry_run=dry_run)

    def status(self, aws: Aws, config: Config, region: str) -> DnsState:
        from infra import dns

        state = dns.dns_status(aws, config, region)
        return DnsState(
            locations=list(state.locations),
            health_check_id=state.health_check_id or "",
            health_check_state=state.health_check_state,
        )


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
