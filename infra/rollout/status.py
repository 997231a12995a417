"""Each region's state: live release, group, health, load balancer, DNS."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from infra.aws import Aws
from infra.config import Config
from infra.rollout import groups
from infra.rollout.context import RegionContext
from infra.rollout.dns import DnsBackend, Route53
from infra.rollout.loadbalancer import find_balancer, find_target_group


@dataclass
class RegionStatus:
    name: str
    release: str = ""
    ami: str = ""
    asg: str = ""
    healthy: int = 0
    desired: int = 0
    dns_name: str = ""
    locations: list[str] = field(default_factory=list)
    health_check: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def region_status(
    aws: Aws, config: Config, region: str, *, dns: DnsBackend | None = None
) -> RegionStatus:
    """Read a region's state from AWS; every call is a read."""
    ctx = RegionContext(aws, config, region, dry_run=True)
    status = RegionStatus(name=region)
    balancer = find_balancer(ctx)
    if balancer is not None:
        status.dns_name = balancer["DNSName"]
    target_group = find_target_group(ctx)
    if target_group is not None:
        arn = target_group["TargetGroupArn"]
        serving = [g for g in groups.list_groups(ctx, arn) if g.serving]
        if serving:
            live = max(serving, key=lambda group: group.created)
            status.release = live.release
            status.asg = live.name
            status.desired = live.desired
            status.healthy = max(groups.healthy_instances(ctx, live.name, arn), 0)
            status.ami = _group_image(ctx, live.name)
    state = (dns or Route53()).status(aws, config, region)
    status.locations = state.locations
    status.health_check = state.health_check_state
    return status


def _group_image(ctx: RegionContext, name: str) -> str:
    autoscaling = ctx.client("autoscaling")
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    template = found["AutoScalingGroups"][0].get("LaunchTemplate") or {}
    if not template:
        return ""
    versions = ctx.client("ec2").describe_launch_template_versions(
        LaunchTemplateId=template["LaunchTemplateId"],
        Versions=[str(template["Version"])],
    )["LaunchTemplateVersions"]
    return str(versions[0]["LaunchTemplateData"].get("ImageId", "")) if versions else ""
