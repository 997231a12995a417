"""Red/black Auto Scaling groups: one group per release behind the target group.

A switch puts the target group of one release in service and retires the
others: it creates or scales up the target, attaches it, waits until every
instance is healthy in the target group, then detaches the others, lets them
drain, scales them to zero and deletes all but the newest few. The groups in
service keep their capacity until the target is healthy, so capacity never
drops below the configured minimum. If the target does not turn healthy in
time, the switch undoes itself and raises RolloutFailed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import tags
from infra.config import Capacity
from infra.errors import UserError
from infra.plan import Action
from infra.poll import PollTimeout, poll
from infra.rollout.context import PENDING, RegionContext, Timing
from infra.rollout.template import TemplateVersion, retire_versions

log = logging.getLogger(__name__)


class RolloutFailed(UserError):
    """The new group did not turn healthy; the previous one still serves."""


@dataclass(frozen=True)
class Group:
    name: str
    release: str
    created: datetime
    min_size: int
    max_size: int
    desired: int
    attached: bool
    instance_ids: tuple[str, ...] = ()
    template_version: str = ""

    @property
    def serving(self) -> bool:
        return self.attached and self.desired > 0


@dataclass(frozen=True)
class Switch:
    """The changes that put `target` in service, as data a test can check."""

    target: str
    release: str
    create: bool
    resize: bool
    update_template: bool
    attach: bool
    detach: tuple[str, ...]
    scale_down: tuple[str, ...]
    delete: tuple[str, ...]
    # The target is a group kept at zero, brought back as a rollback does; a
    # failed switch scales it back to zero instead of deleting it.
    standby: bool = False
    # Launch template versions of the target and of the other groups that
    # stay. Every other version of the template is deleted after the switch.
    target_version: str = ""
    kept_versions: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return bool(
            self.create
            or self.resize
            or self.update_template
            or self.attach
            or self.detach
            or self.scale_down
            or self.delete
        )


def group_name(ctx: RegionContext, release_id: str) -> str:
    return f"{ctx.base_name}-{release_id}"


def plan_switch(
    groups: list[Group],
    *,
    target: str,
    release: str,
    capacity: Capacity,
    template_version: str | None,
    keep: int,
) -> Switch:
    """Return the changes that make `target` the one group in service.

    `template_version` None keeps the target's version, as a rollback does.
    `keep` counts the target: the newest `keep - 1` others stay at zero for
    rollback and older ones are deleted.
    """
    current = next((group for group in groups if group.name == target), None)
    others = sorted(
        (group for group in groups if group.name != target),
        key=lambda group: group.created,
        reverse=True,
    )
    resize = current is not None and (
        current.min_size,
        current.max_size,
        current.desired,
    ) != (capacity.min, capacity.max, capacity.desired)
    update_template = (
        current is not None
        and template_version is not None
        and current.template_version != template_version
    )
    return Switch(
        target=target,
        release=release,
        create=current is None,
        resize=resize,
        update_template=update_template,
        attach=current is None or not current.attached,
        detach=tuple(group.name for group in others if group.attached),
        scale_down=tuple(group.name for group in others if group.desired > 0),
        delete=tuple(group.name for group in others[max(keep - 1, 0) :]),
        standby=current is not None and current.desired == 0 and not current.attached,
        target_version=template_version
        or (current.template_version if current is not None else ""),
        kept_versions=tuple(
            sorted(
                {group.template_version for group in others[: max(keep - 1, 0)]} - {""}
            )
        ),
    )


def record_switch(ctx: RegionContext, switch: Switch) -> None:
    target = switch.target
    if switch.create:
        ctx.record("asg", target, Action.CREATE, f"release {switch.release}")
    elif switch.resize or switch.update_template:
        ctx.record("asg", target, Action.UPDATE, "capacity and launch template")
    else:
        ctx.record("asg", target, Action.UNCHANGED, f"release {switch.release}")
    if switch.attach:
        ctx.record("asg-attachment", target, Action.CREATE, "target group")
    for name in switch.detach:
        ctx.record("asg-attachment", name, Action.DELETE, "detach and drain")
    for name in switch.scale_down:
        ctx.record("asg", name, Action.UPDATE, "scale to zero")
    for name in switch.delete:
        ctx.record("asg", name, Action.DELETE)


def list_groups(ctx: RegionContext, target_group_arn: str) -> list[Group]:
    """Return the region's groups of this project, found by their tags."""
    autoscaling = ctx.client("autoscaling")
    paginator = autoscaling.get_paginator("describe_auto_scaling_groups")
    filters = [
        {"Name": f"tag:{tags.PROJECT}", "Values": [ctx.config.project]},
        {"Name": f"tag:{tags.REGION}", "Values": [ctx.region]},
    ]
    groups = []
    for page in paginator.paginate(Filters=filters):
        for raw in page["AutoScalingGroups"]:
            group_tags = tags.from_list(raw.get("Tags"))
            if not ctx.owns(group_tags, "asg") or raw.get("Status"):
                # A Status is set only while the group is being deleted.
                continue
            groups.append(_to_group(raw, group_tags, target_group_arn))
    return groups


def _to_group(raw: dict[str, Any], group_tags: dict[str, str], arn: str) -> Group:
    template = raw.get("LaunchTemplate") or {}
    return Group(
        name=raw["AutoScalingGroupName"],
        release=group_tags.get(tags.RELEASE, ""),
        created=raw["CreatedTime"],
        min_size=int(raw["MinSize"]),
        max_size=int(raw["MaxSize"]),
        desired=int(raw["DesiredCapacity"]),
        attached=arn in raw.get("TargetGroupARNs", []),
        instance_ids=tuple(
            instance["InstanceId"]
            for instance in raw.get("Instances", [])
            if instance.get("LifecycleState") == "InService"
        ),
        template_version=str(template.get("Version", "")),
    )


@dataclass(frozen=True)
class Placement:
    """A new group's subnets, target group, launch template and capacity."""

    subnets: tuple[str, ...]
    target_group_arn: str
    template: TemplateVersion | None
    capacity: Capacity


def apply_switch(
    ctx: RegionContext,
    switch: Switch,
    placement: Placement,
    *,
    timing: Timing,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Carry out `switch`; on a health timeout undo it and raise RolloutFailed."""
    autoscaling = ctx.client("autoscaling")
    target = switch.target
    arn = placement.target_group_arn
    if switch.create:
        _create_group(ctx, switch, placement)
        ctx.step_done("group")
    elif switch.resize or switch.update_template:
        _resize_group(ctx, switch, placement)
        ctx.step_done("group")
    if switch.attach and not switch.create:
        autoscaling.attach_load_balancer_target_groups(
            AutoScalingGroupName=target, TargetGroupARNs=[arn]
        )
    ctx.step_done("attach")
    try:
        wait_healthy(ctx, target, arn, placement.capacity.desired, timing=timing)
    except PollTimeout:
        _undo(ctx, switch, placement)
        raise RolloutFailed(
            f"release {switch.release} did not turn healthy in {ctx.region} within "
            f"{timing.healthy_timeout:.0f} s: rolled back, the previous group still "
            "serves and DNS is unchanged; check the release's instances"
        ) from None
    ctx.step_done("healthy")
    _retire(ctx, switch, arn, timing=timing, sleep=sleep)


def _create_group(ctx: RegionContext, switch: Switch, placement: Placement) -> None:
    template = placement.template
    if template is None or template.version == PENDING:
        raise UserError(f"no launch template version for {switch.target}")
    capacity = placement.capacity
    group_tags = ctx.tags("asg", **{tags.RELEASE: switch.release})
    ctx.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=switch.target,
        LaunchTemplate={
            "LaunchTemplateId": template.template_id,
            "Version": template.version,
        },
        MinSize=capacity.min,
        MaxSize=capacity.max,
        DesiredCapacity=capacity.desired,
        VPCZoneIdentifier=",".join(placement.subnets),
        TargetGroupARNs=[placement.target_group_arn],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=300,
        Tags=[
            {
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": False,
                "ResourceId": switch.target,
                "ResourceType": "auto-scaling-group",
            }
            for key, value in sorted(group_tags.items())
        ],
    )


def _resize_group(ctx: RegionContext, switch: Switch, placement: Placement) -> None:
    capacity = placement.capacity
    options: dict[str, Any] = {}
    template = placement.template
    if switch.update_template and template is not None:
        # NOTE: running instances keep the old version until replaced.
        options["LaunchTemplate"] = {
            "LaunchTemplateId": template.template_id,
            "Version": template.version,
        }
    ctx.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=switch.target,
        MinSize=capacity.min,
        MaxSize=capacity.max,
        DesiredCapacity=capacity.desired,
        **options,
    )


def healthy_instances(ctx: RegionContext, group: str, target_group_arn: str) -> int:
    """Return how many of the group's instances are healthy, or -1 while any
    in-service instance is not."""
    autoscaling = ctx.client("autoscaling")
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    if not found["AutoScalingGroups"]:
        return -1
    instance_ids = [
        instance["InstanceId"]
        for instance in found["AutoScalingGroups"][0].get("Instances", [])
        if instance.get("LifecycleState") == "InService"
    ]
    if not instance_ids:
        return 0
    health = ctx.client("elbv2").describe_target_health(
        TargetGroupArn=target_group_arn
    )["TargetHealthDescriptions"]
    states = {item["Target"]["Id"]: item["TargetHealth"]["State"] for item in health}
    healthy = [i for i in instance_ids if states.get(i) == "healthy"]
    return len(healthy) if len(healthy) == len(instance_ids) else -1


def wait_healthy(
    ctx: RegionContext,
    group: str,
    target_group_arn: str,
    desired: int,
    *,
    timing: Timing,
) -> int:
    """Wait until the group has `desired` instances, all healthy in the target
    group; raise PollTimeout after `timing.healthy_timeout` seconds."""

    def check() -> int | None:
        count = healthy_instances(ctx, group, target_group_arn)
        return count if count >= desired else None

    log.info("Waiting for %s to turn healthy in %s", group, ctx.region)
    return poll(
        check,
        timeout=timing.healthy_timeout,
        interval=timing.poll_interval,
        description=f"{group} healthy in the target group",
    )


def _undo(ctx: RegionContext, switch: Switch, placement: Placement) -> None:
    """Take the unhealthy target out of service; the others are untouched."""
    autoscaling = ctx.client("autoscaling")
    others_serving = bool(switch.detach)
    if not switch.attach and not others_serving:
        log.error(
            "%s is unhealthy but is the only group in service in %s: left in place",
            switch.target,
            ctx.region,
        )
        return
    log.warning("Rolling back %s in %s", switch.target, ctx.region)
    autoscaling.detach_load_balancer_target_groups(
        AutoScalingGroupName=switch.target,
        TargetGroupARNs=[placement.target_group_arn],
    )
    if not switch.standby:
        autoscaling.delete_auto_scaling_group(
            AutoScalingGroupName=switch.target, ForceDelete=True
        )
        _retire_failed_version(ctx, switch)
    else:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=switch.target, MinSize=0, DesiredCapacity=0
        )


def _retire_failed_version(ctx: RegionContext, switch: Switch) -> None:
    """Delete the failed release's launch template version. A failed deletion
    is logged and not raised, so RolloutFailed still reports the cause."""
    try:
        retire_versions(ctx, keep=set(switch.kept_versions))
    except (ClientError, BotoCoreError) as error:
        # The next rollout deletes the version because no group uses it.
        log.warning(
            "Failed to delete the launch template version of %s in %s: %s",
            switch.target,
            ctx.region,
            error,
        )


def _retire(
    ctx: RegionContext,
    switch: Switch,
    target_group_arn: str,
    *,
    timing: Timing,
    sleep: Callable[[float], None],
) -> None:
    autoscaling = ctx.client("autoscaling")
    for name in switch.detach:
        log.info("Detaching %s in %s", name, ctx.region)
        autoscaling.detach_load_balancer_target_groups(
            AutoScalingGroupName=name, TargetGroupARNs=[target_group_arn]
        )
    ctx.step_done("detach")
    if switch.scale_down and timing.drain > 0:
        _wait_drained(
            ctx, list(switch.scale_down), target_group_arn, timing=timing, sleep=sleep
        )
    for name in switch.scale_down:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0
        )
    ctx.step_done("scale-down")
    for name in switch.delete:
        log.info("Deleting %s in %s", name, ctx.region)
        autoscaling.delete_auto_scaling_group(
            AutoScalingGroupName=name, ForceDelete=True
        )


def _wait_drained(
    ctx: RegionContext,
    names: list[str],
    target_group_arn: str,
    *,
    timing: Timing,
    sleep: Callable[[float], None],
) -> None:
    """Wait until the groups' instances have left the target group, at most
    `timing.drain` seconds.

    Deregistered targets read `draining` while their connections finish; the
    target group's deregistration delay equals the drain time, so on AWS this
    waits it out, and it ends at once where nothing is left to drain.
    """
    groups = ctx.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=names
    )["AutoScalingGroups"]
    instance_ids = {i["InstanceId"] for g in groups for i in g.get("Instances", [])}
    elb = ctx.client("elbv2")
    polls = max(1, math.ceil(timing.drain / timing.poll_interval))
    for _ in range(polls):
        described = elb.describe_target_health(TargetGroupArn=target_group_arn)
        remaining = sorted(
            d["Target"]["Id"]
            for d in described["TargetHealthDescriptions"]
            if d["Target"]["Id"] in instance_ids
        )
        if not remaining:
            return
        log.info(
            "Draining %d targets of %s in %s",
            len(remaining),
            ", ".join(names),
            ctx.region,
        )
        sleep(timing.poll_interval)
    log.warning(
        "Targets of %s in %s still drain after %.0f s: scaling down anyway",
        ", ".join(names),
        ctx.region,
        timing.drain,
    )
