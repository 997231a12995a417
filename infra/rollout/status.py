"""Each region's state: live release, group, health, load balancer, DNS, lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.aws import Aws
from infra.config import Config
from infra.rollout import groups, lock
from infra.rollout.context import RegionContext
from infra.rollout.dns import DnsBackend, Route53
from infra.rollout.loadbalancer import find_balancer, find_target_group


@dataclass
class RegionStatus:
    name: str
    # The releases attached to the target group, newest first, joined by " + ".
    release: str = ""
    ami: str = ""
    asg: str = ""
    healthy: int = 0
    desired: int = 0
    dns_name: str = ""
    locations: list[str] = field(default_factory=list)
    health_check: str = ""
    # Every release attached to the target group, newest first.
    serving: list[str] = field(default_factory=list)
    # The deployment lock: None, or {"holder": ..., "expires": ISO 8601 UTC}.
    lock: dict[str, str] | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def region_status(
    aws: Aws, config: Config, region: str, *, dns: DnsBackend | None = None
) -> RegionStatus:
    """Read a region's state from AWS with read calls only."""
    ctx = RegionContext(aws, config, region, dry_run=True)
    status = RegionStatus(name=region)
    balancer = find_balancer(ctx)
    if balancer is not None:
        status.dns_name = balancer["DNSName"]
    target_group = find_target_group(ctx)
    if target_group is not None:
        _read_groups(ctx, status, target_group["TargetGroupArn"])
    state = (dns or Route53()).status(aws, config, region)
    status.locations = state.locations
    status.health_check = state.health_check_state
    _read_lock(aws, status)
    return status


def _read_groups(ctx: RegionContext, status: RegionStatus, arn: str) -> None:
    """Fill in the groups attached to the target group, newest first. More
    than one attached group means that a rollout stopped half way."""
    attached = sorted(
        (group for group in groups.list_groups(ctx, arn) if group.attached),
        key=lambda group: group.created,
        reverse=True,
    )
    if not attached:
        return
    status.serving = [group.release for group in attached]
    status.release = " + ".join(status.serving)
    status.asg = " + ".join(group.name for group in attached)
    status.desired = sum(group.desired for group in attached)
    status.healthy = sum(
        max(groups.healthy_instances(ctx, group.name, arn), 0) for group in attached
    )
    status.ami = " + ".join(_group_image(ctx, group.name) for group in attached)
    if len(attached) > 1:
        status.warnings.append(
            f"{len(attached)} groups serve in {ctx.region}: "
            f"{', '.join(group.name for group in attached)} (a rollout stopped "
            f"half way): run invoke rollout --region {ctx.region} to converge"
        )


def _read_lock(aws: Aws, status: RegionStatus) -> None:
    record = lock.read_lock(aws, status.name)
    if record is None:
        return
    expires = datetime.fromtimestamp(record.expires_at, UTC)
    status.lock = {
        "holder": record.holder,
        "expires": expires.isoformat(timespec="seconds"),
    }
    stale = expires <= datetime.now(UTC)
    status.warnings.append(
        f"{status.name} is locked by {record.holder} until "
        f"{expires:%Y-%m-%d %H:%M:%S} UTC"
        + (" (expired: pass --force to break it)" if stale else "")
    )


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
