"""The region's Network Load Balancer, target group and TCP listener."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.aws import error_code
from infra.plan import Action
from infra.rollout.context import PENDING, RegionContext
from infra.rollout.network import Network

CROSS_ZONE = "load_balancing.cross_zone.enabled"
# How long a deregistered target keeps its connections; the rollout's drain
# wait ends when the targets are gone, so the two are set equal.
DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"


@dataclass(frozen=True)
class LoadBalancer:
    arn: str
    dns_name: str
    canonical_hosted_zone_id: str
    target_group_arn: str


def health_check_settings(health_port: int) -> dict[str, Any]:
    """Return the target group's health check: HTTPS on the health service.

    NLB HTTPS health checks do not validate the certificate.
    """
    return {
        "HealthCheckProtocol": "HTTPS",
        "HealthCheckPort": str(health_port),
        "HealthCheckPath": "/healthcheck",
        "HealthCheckIntervalSeconds": 10,
        "HealthyThresholdCount": 3,
        "UnhealthyThresholdCount": 3,
        "Matcher": {"HttpCode": "200"},
    }


def ensure_load_balancer(ctx: RegionContext, network: Network) -> LoadBalancer:
    """Create or correct the load balancer, its target group and listener."""
    balancer = _ensure_balancer(ctx, network)
    target_group_arn = _ensure_target_group(ctx, network)
    _ensure_listener(ctx, balancer["LoadBalancerArn"], target_group_arn)
    ctx.step_done("loadbalancer")
    return LoadBalancer(
        arn=balancer["LoadBalancerArn"],
        dns_name=balancer["DNSName"],
        canonical_hosted_zone_id=balancer["CanonicalHostedZoneId"],
        target_group_arn=target_group_arn,
    )


def find_balancer(ctx: RegionContext) -> dict[str, Any] | None:
    elb = ctx.client("elbv2")
    try:
        found = elb.describe_load_balancers(Names=[ctx.elb_name()])["LoadBalancers"]
    except elb.exceptions.LoadBalancerNotFoundException:
        return None
    return found[0] if found else None


def find_target_group(ctx: RegionContext) -> dict[str, Any] | None:
    elb = ctx.client("elbv2")
    try:
        found = elb.describe_target_groups(Names=[ctx.elb_name("-tg")])
    except elb.exceptions.TargetGroupNotFoundException:
        return None
    groups = found["TargetGroups"]
    return groups[0] if groups else None


def _ensure_balancer(ctx: RegionContext, network: Network) -> dict[str, Any]:
    elb = ctx.client("elbv2")
    name = ctx.elb_name()
    balancer = find_balancer(ctx)
    if balancer is None:
        ctx.record("nlb", name, Action.CREATE, "internet-facing, cross-zone")
        if ctx.dry_run:
            return {
                "LoadBalancerArn": PENDING,
                "DNSName": PENDING,
                "CanonicalHostedZoneId": PENDING,
            }
        balancer = elb.create_load_balancer(
            Name=name,
            Type="network",
            Scheme="internet-facing",
            Subnets=list(network.public_subnets),
            Tags=ctx.tag_list("nlb"),
        )["LoadBalancers"][0]
    else:
        ctx.record("nlb", name, Action.UNCHANGED, balancer["DNSName"])
    attributes = elb.describe_load_balancer_attributes(
        LoadBalancerArn=balancer["LoadBalancerArn"]
    )["Attributes"]
    cross_zone = {a["Key"]: a["Value"] for a in attributes}.get(CROSS_ZONE)
    if cross_zone != "true":
        ctx.record("nlb-attribute", f"{name} {CROSS_ZONE}", Action.UPDATE, "true")
        if not ctx.dry_run:
            elb.modify_load_balancer_attributes(
                LoadBalancerArn=balancer["LoadBalancerArn"],
                Attributes=[{"Key": CROSS_ZONE, "Value": "true"}],
            )
    return balancer


def _ensure_target_group(ctx: RegionContext, network: Network) -> str:
    elb = ctx.client("elbv2")
    name = ctx.elb_name("-tg")
    port = ctx.config.enclave.notary_port
    desired = health_check_settings(ctx.config.enclave.health_port)
    group = find_target_group(ctx)
    if group is None:
        ctx.record("target-group", name, Action.CREATE, f"TCP {port}")
        if ctx.dry_run:
            return PENDING
        created = elb.create_target_group(
            Name=name,
            Protocol="TCP",
            Port=port,
            VpcId=network.vpc_id,
            TargetType="instance",
            Tags=ctx.tag_list("target-group"),
            **desired,
        )
        arn = str(created["TargetGroups"][0]["TargetGroupArn"])
        _ensure_deregistration_delay(ctx, arn, name)
        return arn
    arn = str(group["TargetGroupArn"])
    drift = {key: value for key, value in desired.items() if group.get(key) != value}
    if drift:
        ctx.record("target-group", name, Action.UPDATE, ", ".join(sorted(drift)))
        if not ctx.dry_run:
            elb.modify_target_group(TargetGroupArn=arn, **drift)
    else:
        ctx.record("target-group", name, Action.UNCHANGED)
    _ensure_deregistration_delay(ctx, arn, name)
    return arn


def _ensure_deregistration_delay(ctx: RegionContext, arn: str, name: str) -> None:
    elb = ctx.client("elbv2")
    wanted = str(ctx.config.rollout.drain_seconds)
    attributes = elb.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
    current = {a["Key"]: a["Value"] for a in attributes}.get(DEREGISTRATION_DELAY)
    if current == wanted:
        return
    ctx.record(
        "target-group-attribute",
        f"{name} {DEREGISTRATION_DELAY}",
        Action.UPDATE,
        wanted,
    )
    if not ctx.dry_run:
        elb.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[{"Key": DEREGISTRATION_DELAY, "Value": wanted}],
        )


def _ensure_listener(ctx: RegionContext, balancer_arn: str, group_arn: str) -> None:
    elb = ctx.client("elbv2")
    port = ctx.config.enclave.notary_port
    name = f"{ctx.base_name}:{port}"
    listeners = []
    if balancer_arn != PENDING:
        listeners = elb.describe_listeners(LoadBalancerArn=balancer_arn)["Listeners"]
    listener = next((item for item in listeners if item["Port"] == port), None)
    forward = [{"Type": "forward", "TargetGroupArn": group_arn}]
    if listener is None:
        ctx.record("listener", name, Action.CREATE, f"TCP {port}")
        if not ctx.dry_run:
            elb.create_listener(
                LoadBalancerArn=balancer_arn,
                Protocol="TCP",
                Port=port,
                DefaultActions=forward,
                Tags=ctx.tag_list("listener"),
            )
        return
    targets = [action.get("TargetGroupArn") for action in listener["DefaultActions"]]
    if listener["Protocol"] != "TCP" or targets != [group_arn]:
        ctx.record("listener", name, Action.UPDATE, "TCP forward to target group")
        if not ctx.dry_run:
            elb.modify_listener(
                ListenerArn=listener["ListenerArn"],
                Protocol="TCP",
                DefaultActions=forward,
            )
        return
    ctx.record("listener", name, Action.UNCHANGED)


def is_not_found(error: Exception) -> bool:
    return error_code(error) in ("LoadBalancerNotFound", "TargetGroupNotFound")
