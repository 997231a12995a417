"""Remove a region's deployment, found by tags; AMIs stay for `prune`.

The order undoes the rollout: DNS first, so clients stop arriving, then the
groups, the load balancer, templates, IAM, endpoints, security groups, the
dedicated network and last the lock table.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from infra.aws import Aws, error_code
from infra.config import Config
from infra.plan import Action, Plan
from infra.poll import poll
from infra.rollout import groups, lock
from infra.rollout.context import RegionContext, Timing
from infra.rollout.dns import DnsBackend, Route53
from infra.rollout.iam import profile_name
from infra.rollout.loadbalancer import find_balancer, find_target_group
from infra.rollout.network import find_vpc
from infra.rollout.security import find_groups
from infra.rollout.template import find_template

log = logging.getLogger(__name__)

# Errors AWS returns while a dependent resource is still going away.
TRANSIENT = {"DependencyViolation", "ResourceInUse", "InvalidParameterValue"}


def destroy_region(
    aws: Aws,
    config: Config,
    region: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    timing: Timing | None = None,
    dns: DnsBackend | None = None,
    holder: str | None = None,
) -> Plan:
    """Delete the region's deployment; with `dry_run` only return the plan."""
    config.region(region)
    timing = timing or Timing.from_config(config)
    ctx = RegionContext(aws, config, region, dry_run=dry_run)
    backend = dns or Route53()
    if dry_run:
        _destroy(ctx, backend, timing)
        _delete_lock_table(ctx)
        return ctx.plan
    with lock.region_lock(
        aws,
        region,
        holder=holder or lock.default_holder(),
        ttl=config.rollout.lock_ttl_seconds,
        force=force,
    ):
        _destroy(ctx, backend, timing)
    _delete_lock_table(ctx)
    return ctx.plan


def _destroy(ctx: RegionContext, dns: DnsBackend, timing: Timing) -> None:
    ctx.plan.extend(dns.remove(ctx.aws, ctx.config, ctx.region, dry_run=ctx.dry_run))
    _delete_groups(ctx, timing)
    _delete_load_balancer(ctx, timing)
    _delete_template(ctx)
    _delete_iam(ctx)
    _delete_endpoints(ctx, timing)
    _delete_security_groups(ctx, timing)
    if ctx.config.region(ctx.region).vpc is None:
        _delete_network(ctx, timing)


def _retry(call: Callable[[], Any], *, timing: Timing, description: str) -> None:
    """Run `call` until AWS no longer reports that a dependency remains."""

    def attempt() -> bool | None:
        try:
            call()
        except ClientError as error:
            if error_code(error) in TRANSIENT:
                log.debug("Retrying %s: %s", description, error_code(error))
                return None
            raise
        return True

    poll(
        attempt,
        timeout=timing.delete_timeout,
        interval=timing.poll_interval,
        description=description,
    )


def _delete_groups(ctx: RegionContext, timing: Timing) -> None:
    autoscaling = ctx.client("autoscaling")
    found = groups.list_groups(ctx, "")
    for group in found:
        ctx.record("asg", group.name, Action.DELETE)
        if not ctx.dry_run:
            autoscaling.delete_auto_scaling_group(
                AutoScalingGroupName=group.name, ForceDelete=True
            )
    if found and not ctx.dry_run:
        names = [group.name for group in found]

        def gone() -> bool | None:
            answer = autoscaling.describe_auto_scaling_groups(
                AutoScalingGroupNames=names
            )
            return True if not answer["AutoScalingGroups"] else None

        poll(
            gone,
            timeout=timing.delete_timeout,
            interval=timing.poll_interval,
            description=f"deletion of {', '.join(names)}",
        )


def _delete_load_balancer(ctx: RegionContext, timing: Timing) -> None:
    elb = ctx.client("elbv2")
    balancer = find_balancer(ctx)
    if balancer is not None:
        ctx.record("nlb", ctx.elb_name(), Action.DELETE, "with its listener")
        if not ctx.dry_run:
            elb.delete_load_balancer(LoadBalancerArn=balancer["LoadBalancerArn"])
            poll(
                lambda: True if find_balancer(ctx) is None else None,
                timeout=timing.delete_timeout,
                interval=timing.poll_interval,
                description=f"deletion of {ctx.elb_name()}",
            )
    target_group = find_target_group(ctx)
    if target_group is not None:
        ctx.record("target-group", ctx.elb_name("-tg"), Action.DELETE)
        if not ctx.dry_run:
            arn = target_group["TargetGroupArn"]
            _retry(
                lambda: elb.delete_target_group(TargetGroupArn=arn),
                timing=timing,
                description=f"deletion of {ctx.elb_name('-tg')}",
            )


def _delete_template(ctx: RegionContext) -> None:
    template = find_template(ctx)
    if template is None:
        return
    ctx.record("launch-template", ctx.base_name, Action.DELETE, "all versions")
    if not ctx.dry_run:
        ctx.client("ec2").delete_launch_template(
            LaunchTemplateId=template["LaunchTemplateId"]
        )


def _delete_iam(ctx: RegionContext) -> None:
    iam = ctx.client("iam")
    name = profile_name(ctx)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        profile = None
    if profile is not None:
        ctx.record("instance-profile", name, Action.DELETE)
        if not ctx.dry_run:
            for role in profile.get("Roles", []):
                iam.remove_role_from_instance_profile(
                    InstanceProfileName=name, RoleName=role["RoleName"]
                )
            iam.delete_instance_profile(InstanceProfileName=name)
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        return
    ctx.record("iam-role", name, Action.DELETE)
    if ctx.dry_run:
        return
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    for policy in attached:
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy_name in iam.list_role_policies(RoleName=name)["PolicyNames"]:
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
    iam.delete_role(RoleName=name)


def _delete_endpoints(ctx: RegionContext, timing: Timing) -> None:
    ec2 = ctx.client("ec2")
    endpoints = [
        endpoint
        for endpoint in ec2.describe_vpc_endpoints(
            Filters=ctx.tag_filters("vpc-endpoint")
        )["VpcEndpoints"]
        if endpoint.get("State", "").lower() not in ("deleting", "deleted")
    ]
    if not endpoints:
        return
    ids = [endpoint["VpcEndpointId"] for endpoint in endpoints]
    for endpoint_id in ids:
        ctx.record("vpc-endpoint", endpoint_id, Action.DELETE)
    if ctx.dry_run:
        return
    ec2.delete_vpc_endpoints(VpcEndpointIds=ids)

    def gone() -> bool | None:
        try:
            remaining = ec2.describe_vpc_endpoints(VpcEndpointIds=ids)["VpcEndpoints"]
        except ClientError as error:
            if "NotFound" in error_code(error):
                return True
            raise
        live = [e for e in remaining if e.get("State", "").lower() != "deleted"]
        return True if not live else None

    poll(
        gone,
        timeout=timing.delete_timeout,
        interval=timing.poll_interval,
        description="deletion of the VPC endpoints",
    )


def _delete_security_groups(ctx: RegionContext, timing: Timing) -> None:
    ec2 = ctx.client("ec2")
    for group in find_groups(ctx):
        group_id = group["GroupId"]
        ctx.record("security-group", group_id, Action.DELETE)
        if not ctx.dry_run:
            _retry(
                functools.partial(ec2.delete_security_group, GroupId=group_id),
                timing=timing,
                description=f"deletion of {group_id}",
            )


def _delete_network(ctx: RegionContext, timing: Timing) -> None:
    ec2 = ctx.client("ec2")
    for table in ec2.describe_route_tables(Filters=ctx.tag_filters("route-table"))[
        "RouteTables"
    ]:
        ctx.record("route-table", table["RouteTableId"], Action.DELETE)
        if ctx.dry_run:
            continue
        for association in table.get("Associations", []):
            if not association.get("Main"):
                ec2.disassociate_route_table(
                    AssociationId=association["RouteTableAssociationId"]
                )
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])
    for gateway in ec2.describe_internet_gateways(
        Filters=ctx.tag_filters("internet-gateway")
    )["InternetGateways"]:
        gateway_id = gateway["InternetGatewayId"]
        ctx.record("internet-gateway", gateway_id, Action.DELETE)
        if ctx.dry_run:
            continue
        for attachment in gateway.get("Attachments", []):
            ec2.detach_internet_gateway(
                InternetGatewayId=gateway_id, VpcId=attachment["VpcId"]
            )
        ec2.delete_internet_gateway(InternetGatewayId=gateway_id)
    for subnet in ec2.describe_subnets(Filters=ctx.tag_filters("subnet"))["Subnets"]:
        subnet_id = subnet["SubnetId"]
        ctx.record("subnet", subnet_id, Action.DELETE)
        if not ctx.dry_run:
            _retry(
                functools.partial(ec2.delete_subnet, SubnetId=subnet_id),
                timing=timing,
                description=f"deletion of {subnet_id}",
            )
    vpc = find_vpc(ctx)
    if vpc is not None:
        vpc_id = vpc["VpcId"]
        ctx.record("vpc", vpc_id, Action.DELETE)
        if not ctx.dry_run:
            _retry(
                lambda: ec2.delete_vpc(VpcId=vpc_id),
                timing=timing,
                description=f"deletion of {vpc_id}",
            )


def _delete_lock_table(ctx: RegionContext) -> None:
    dynamodb = ctx.client("dynamodb")
    name = lock.table_name(ctx.config)
    try:
        if ctx.dry_run:
            dynamodb.describe_table(TableName=name)
        else:
            dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        return
    ctx.record("lock-table", name, Action.DELETE)
