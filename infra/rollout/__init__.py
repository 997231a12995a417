"""Put a release live in a region: network, load balancer, groups, DNS.

`rollout_region` first plans with reads only. With nothing to change it stops
there, so a re-run makes no write call. Otherwise it takes the region's lock
and runs the same steps for real. Every step finds its resources by tags, so
a run killed at any step converges when it runs again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError
from infra.plan import Plan
from infra.releases import ReleaseImage, list_release_images, resolve_release
from infra.rollout import groups, lock
from infra.rollout.context import PENDING, RegionContext, Timing
from infra.rollout.dns import DnsBackend, Endpoint, Route53
from infra.rollout.groups import Group, Placement, RolloutFailed, Switch
from infra.rollout.iam import ensure_instance_profile
from infra.rollout.loadbalancer import LoadBalancer, ensure_load_balancer
from infra.rollout.network import Network, ensure_network, ensure_ssm_endpoints
from infra.rollout.preflight import check_instance_type
from infra.rollout.security import SecurityGroups, ensure_security_groups
from infra.rollout.template import (
    TemplateVersion,
    ensure_template_version,
    retire_versions,
)

__all__ = [
    "RegionResult",
    "RolloutFailed",
    "Timing",
    "rollback_region",
    "rollout_region",
]

log = logging.getLogger(__name__)


@dataclass
class RegionResult:
    region: str
    release: str
    plan: Plan = field(default_factory=Plan)
    # "unchanged", "planned", "applied" or "failed".
    outcome: str = "unchanged"
    message: str = ""


@dataclass(frozen=True)
class Infrastructure:
    network: Network
    security: SecurityGroups
    profile: str
    balancer: LoadBalancer


def ensure_infrastructure(ctx: RegionContext) -> Infrastructure:
    """Reconcile everything a release needs except its group and DNS."""
    network = ensure_network(ctx)
    security = ensure_security_groups(ctx, network)
    ensure_ssm_endpoints(ctx, network, security.endpoints)
    profile = ensure_instance_profile(ctx)
    balancer = ensure_load_balancer(ctx, network)
    return Infrastructure(network, security, profile, balancer)


def region_image(aws: Aws, region: str, release_id: str) -> ReleaseImage:
    """Return the release's available AMI in `region`."""
    images = [
        image
        for image in list_release_images(aws, region, release_id=release_id)
        if image.state == "available"
    ]
    if not images:
        raise UserError(
            f"no available AMI of release {release_id} in {region}: run "
            f"invoke copy --release {release_id} first"
        )
    return images[0]


def _switch_plan(
    ctx: RegionContext,
    infra: Infrastructure,
    *,
    target: str,
    release: str,
    template: TemplateVersion | None,
) -> tuple[Switch, Placement]:
    arn = infra.balancer.target_group_arn
    found = [] if arn == PENDING else groups.list_groups(ctx, arn)
    capacity = ctx.config.capacity_for(ctx.region)
    version = None if template is None else template.version
    switch = groups.plan_switch(
        found,
        target=target,
        release=release,
        capacity=capacity,
        template_version=version,
        keep=ctx.config.rollout.keep_groups,
    )
    groups.record_switch(ctx, switch)
    placement = Placement(
        subnets=infra.network.private_subnets,
        target_group_arn=arn,
        template=template,
        capacity=capacity,
    )
    return switch, placement


def _run_release(
    ctx: RegionContext,
    image: ReleaseImage,
    *,
    timing: Timing,
    dns: DnsBackend,
) -> None:
    infra = ensure_infrastructure(ctx)
    template = ensure_template_version(
        ctx,
        image=image,
        profile=infra.profile,
        security_group_id=infra.security.instances,
    )
    switch, placement = _switch_plan(
        ctx,
        infra,
        target=groups.group_name(ctx, image.release_id),
        release=image.release_id,
        template=template,
    )
    if not ctx.dry_run and switch.has_changes:
        groups.apply_switch(ctx, switch, placement, timing=timing)
    _retire_versions(ctx, switch)
    _run_dns(ctx, infra.balancer, dns)


def _retire_versions(ctx: RegionContext, switch: Switch) -> None:
    """Delete the launch template versions of deleted groups. The serving
    release's version becomes the default because AWS rejects deleting the
    default version."""
    if not switch.target_version:
        return
    keep = {switch.target_version, *switch.kept_versions}
    retire_versions(ctx, keep=keep, new_default=switch.target_version)


def _run_dns(ctx: RegionContext, balancer: LoadBalancer, dns: DnsBackend) -> None:
    if ctx.change_check and ctx.plan.has_changes:
        # The run goes ahead anyway, so Route 53's rate limit is spared.
        return
    endpoint = Endpoint(
        dns_name=balancer.dns_name,
        canonical_hosted_zone_id=balancer.canonical_hosted_zone_id,
        arn=balancer.arn,
    )
    ctx.plan.extend(
        dns.reconcile(ctx.aws, ctx.config, ctx.region, endpoint, dry_run=ctx.dry_run)
    )
    ctx.step_done("dns")


def _apply(
    aws: Aws,
    config: Config,
    region: str,
    result: RegionResult,
    run: Callable[[RegionContext], None],
    *,
    dry_run: bool,
    force: bool,
    holder: str | None,
    after_step: Callable[[str], None] | None,
) -> RegionResult:
    """Plan with reads only; unless nothing changes or this is a dry run, take
    the lock and run for real."""
    # NOTE: a run with changes reads every resource except Route 53 twice,
    # once here and once under the lock.
    preview = RegionContext(aws, config, region, dry_run=True, change_check=not dry_run)
    run(preview)
    result.plan = preview.plan
    if not preview.plan.has_changes:
        result.outcome = "unchanged"
        result.message = "no changes"
        log.info("%s: no changes", region)
        return result
    if dry_run:
        result.outcome = "planned"
        result.message = f"{len(preview.plan.changes)} changes planned"
        return result
    ctx = RegionContext(aws, config, region, dry_run=False, after_step=after_step)
    with lock.region_lock(
        aws,
        region,
        holder=holder or lock.default_holder(),
        ttl=config.rollout.lock_ttl_seconds,
        force=force,
    ):
        run(ctx)
    result.plan = ctx.plan
    result.outcome = "applied"
    result.message = f"{len(ctx.plan.changes)} changes applied"
    return result


def rollout_region(
    aws: Aws,
    config: Config,
    region: str,
    *,
    release_id: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    timing: Timing | None = None,
    dns: DnsBackend | None = None,
    holder: str | None = None,
    after_step: Callable[[str], None] | None = None,
) -> RegionResult:
    """Put `release_id` (default: the newest of the config's version) live in
    `region`; raise RolloutFailed when it does not turn healthy in time."""
    config.region(region)
    release = release_id or resolve_release(aws, None).release_id
    check_instance_type(aws, config, region)
    image = region_image(aws, region, release)
    timing = timing or Timing.from_config(config)
    backend = dns or Route53()
    result = RegionResult(region=region, release=release)

    def run(ctx: RegionContext) -> None:
        _run_release(ctx, image, timing=timing, dns=backend)

    return _apply(
        aws,
        config,
        region,
        result,
        run,
        dry_run=dry_run,
        force=force,
        holder=holder,
        after_step=after_step,
    )


def previous_group(found: list[Group]) -> Group:
    """Return the newest group that is not in service: the rollback target."""
    serving = [group for group in found if group.serving]
    if not serving:
        raise UserError("no group is in service: roll out a release first")
    standby = sorted(
        (group for group in found if not group.serving),
        key=lambda group: group.created,
        reverse=True,
    )
    if not standby:
        raise UserError(
            f"no previous group to roll back to from {serving[0].name}: "
            "roll out the release you want instead"
        )
    return standby[0]


def rollback_region(
    aws: Aws,
    config: Config,
    region: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    timing: Timing | None = None,
    dns: DnsBackend | None = None,
    holder: str | None = None,
    after_step: Callable[[str], None] | None = None,
) -> RegionResult:
    """Bring the previous release's group back into service in `region`."""
    config.region(region)
    timing = timing or Timing.from_config(config)
    backend = dns or Route53()
    probe = RegionContext(aws, config, region, dry_run=True)
    infra = ensure_infrastructure(probe)
    if infra.balancer.target_group_arn == PENDING:
        raise UserError(f"nothing is deployed in {region}: roll out first")
    target = previous_group(groups.list_groups(probe, infra.balancer.target_group_arn))
    result = RegionResult(region=region, release=target.release)

    def run(ctx: RegionContext) -> None:
        current = ensure_infrastructure(ctx)
        switch, placement = _switch_plan(
            ctx, current, target=target.name, release=target.release, template=None
        )
        if not ctx.dry_run and switch.has_changes:
            groups.apply_switch(ctx, switch, placement, timing=timing)
        _retire_versions(ctx, switch)
        _run_dns(ctx, current.balancer, backend)

    return _apply(
        aws,
        config,
        region,
        result,
        run,
        dry_run=dry_run,
        force=force,
        holder=holder,
        after_step=after_step,
    )
