"""Security groups: which traffic may reach the instances and the endpoints.

The load balancer keeps client addresses for instance targets, so the
instances admit the notary port from the client CIDRs and the health port
only from the VPC, where the load balancer's health checks come from. The SSM
endpoints admit HTTPS from the VPC. Nothing else is open inbound, and no group
ever opens port 22.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.plan import Action
from infra.rollout.context import PENDING, RegionContext
from infra.rollout.network import Network

# Tag value telling the two groups apart.
ROLE = "notary:security-group-role"


@dataclass(frozen=True, order=True)
class Rule:
    """One inbound rule: a TCP port range from a CIDR."""

    protocol: str
    from_port: int
    to_port: int
    cidr: str


@dataclass(frozen=True)
class SecurityGroups:
    instances: str
    endpoints: str


def instance_rules(
    *, client_cidrs: list[str], vpc_cidr: str, notary_port: int, health_port: int
) -> set[Rule]:
    rules = {Rule("tcp", notary_port, notary_port, cidr) for cidr in client_cidrs}
    rules.add(Rule("tcp", health_port, health_port, vpc_cidr))
    return rules


def endpoint_rules(*, vpc_cidr: str) -> set[Rule]:
    return {Rule("tcp", 443, 443, vpc_cidr)}


def current_rules(permissions: list[dict[str, Any]]) -> set[Rule]:
    """Return IpPermissions as rules.

    A source that is a group, a prefix list or an IPv6 range takes the place of
    the CIDR, so rules that this module never sets show up for revoking."""
    rules = set()
    for permission in permissions:
        protocol = str(permission.get("IpProtocol", ""))
        from_port = int(permission.get("FromPort", -1))
        to_port = int(permission.get("ToPort", -1))
        sources = [r["CidrIp"] for r in permission.get("IpRanges", [])]
        sources += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
        sources += [p["GroupId"] for p in permission.get("UserIdGroupPairs", [])]
        sources += [p["PrefixListId"] for p in permission.get("PrefixListIds", [])]
        for source in sources:
            rules.add(Rule(protocol, from_port, to_port, source))
    return rules


def rule_changes(current: set[Rule], desired: set[Rule]) -> tuple[set[Rule], set[Rule]]:
    """Return (rules to add, rules to revoke) to turn `current` into `desired`."""
    return desired - current, current - desired


def to_permissions(rules: set[Rule]) -> list[dict[str, Any]]:
    permissions = []
    for rule in sorted(rules):
        source: dict[str, Any]
        if rule.cidr.startswith("sg-"):
            source = {"UserIdGroupPairs": [{"GroupId": rule.cidr}]}
        elif rule.cidr.startswith("pl-"):
            source = {"PrefixListIds": [{"PrefixListId": rule.cidr}]}
        elif ":" in rule.cidr:
            source = {"Ipv6Ranges": [{"CidrIpv6": rule.cidr}]}
        else:
            source = {"IpRanges": [{"CidrIp": rule.cidr}]}
        permissions.append(
            {
                "IpProtocol": rule.protocol,
                "FromPort": rule.from_port,
                "ToPort": rule.to_port,
                **source,
            }
        )
    return permissions


def ensure_security_groups(ctx: RegionContext, network: Network) -> SecurityGroups:
    """Create or correct both groups and their inbound rules."""
    enclave = ctx.config.enclave
    instances = _ensure_group(
        ctx,
        network,
        "instances",
        instance_rules(
            client_cidrs=ctx.config.rollout.client_cidrs,
            vpc_cidr=network.cidr,
            notary_port=enclave.notary_port,
            health_port=enclave.health_port,
        ),
    )
    endpoints = _ensure_group(
        ctx, network, "endpoints", endpoint_rules(vpc_cidr=network.cidr)
    )
    ctx.step_done("security")
    return SecurityGroups(instances, endpoints)


def find_groups(ctx: RegionContext) -> list[dict[str, Any]]:
    answer = ctx.client("ec2").describe_security_groups(
        Filters=ctx.tag_filters("security-group")
    )
    return list(answer["SecurityGroups"])


def _ensure_group(
    ctx: RegionContext, network: Network, role: str, desired: set[Rule]
) -> str:
    ec2 = ctx.client("ec2")
    name = f"{ctx.base_name}-{role}"
    found = [
        group
        for group in find_groups(ctx)
        if any(t["Key"] == ROLE and t["Value"] == role for t in group.get("Tags", []))
    ]
    if found:
        group_id = str(found[0]["GroupId"])
        current = current_rules(found[0].get("IpPermissions", []))
        ctx.record("security-group", group_id, Action.UNCHANGED, role)
    else:
        ctx.record("security-group", name, Action.CREATE, role)
        current = set()
        group_id = PENDING
        if not ctx.dry_run:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=f"{ctx.config.project} {role} in {ctx.region}",
                VpcId=network.vpc_id,
                TagSpecifications=ctx.tag_specs(
                    "security-group", "security-group", **{ROLE: role}
                ),
            )["GroupId"]
    add, revoke = rule_changes(current, desired)
    for rule in sorted(add):
        ctx.record("ingress-rule", f"{name} {rule.to_port}", Action.CREATE, rule.cidr)
    for rule in sorted(revoke):
        ctx.record("ingress-rule", f"{name} {rule.to_port}", Action.DELETE, rule.cidr)
    if ctx.dry_run:
        return group_id
    if revoke:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=to_permissions(revoke)
        )
    if add:
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=to_permissions(add)
        )
    return group_id
