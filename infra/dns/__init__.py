"""Route 53 for the notary: per-region health checks and geolocation records."""

from infra.dns.reconcile import (
    RegionDns,
    dns_status,
    reconcile_dns,
    remove_region_dns,
)
from infra.dns.records import LoadBalancerEndpoint
from infra.dns.rules import validate_changes

__all__ = [
    "LoadBalancerEndpoint",
    "RegionDns",
    "dns_status",
    "reconcile_dns",
    "remove_region_dns",
    "validate_changes",
]
