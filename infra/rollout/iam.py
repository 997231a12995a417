"""The instances' IAM role and instance profile: Systems Manager access only.

IAM is global, so each region gets its own role and profile, named after the
region: concurrent rollouts never edit the same role, and destroy removes one
region's without touching the others.
"""

from __future__ import annotations

import json
import logging

from infra.plan import Action
from infra.rollout.context import RegionContext

log = logging.getLogger(__name__)

# NOTE: the aws partition only; GovCloud and China use other ARN prefixes.
SSM_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def profile_name(ctx: RegionContext) -> str:
    return f"{ctx.base_name}-instance"


def ensure_instance_profile(ctx: RegionContext) -> str:
    """Create or correct the role and profile; return the profile's name."""
    name = profile_name(ctx)
    _ensure_role(ctx, name)
    _ensure_policies(ctx, name)
    _ensure_profile(ctx, name)
    ctx.step_done("iam")
    return name


def _ensure_role(ctx: RegionContext, name: str) -> None:
    iam = ctx.aws.client("iam", ctx.region)
    boundary = ctx.config.rollout.permission_boundary
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        ctx.record("iam-role", name, Action.CREATE, "trusted by ec2.amazonaws.com")
        if ctx.dry_run:
            return
        options = {"PermissionsBoundary": boundary} if boundary else {}
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
            Description=f"{ctx.config.project} instances in {ctx.region}",
            Tags=ctx.tag_list("instance-profile"),
            **options,
        )
        return
    ctx.record("iam-role", name, Action.UNCHANGED)
    current = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    if current == boundary:
        return
    ctx.record("permission-boundary", name, Action.UPDATE, boundary or "remove")
    if ctx.dry_run:
        return
    if boundary:
        iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
    else:
        iam.delete_role_permissions_boundary(RoleName=name)


def _ensure_policies(ctx: RegionContext, name: str) -> None:
    iam = ctx.aws.client("iam", ctx.region)
    attached: set[str] = set()
    inline: list[str] = []
    if not ctx.plan_has_created("iam-role", name):
        answer = iam.list_attached_role_policies(RoleName=name)
        attached = {policy["PolicyArn"] for policy in answer["AttachedPolicies"]}
        inline = iam.list_role_policies(RoleName=name)["PolicyNames"]
    if SSM_POLICY_ARN not in attached:
        ctx.record("role-policy", f"{name} AmazonSSMManagedInstanceCore", Action.CREATE)
        if not ctx.dry_run:
            iam.attach_role_policy(RoleName=name, PolicyArn=SSM_POLICY_ARN)
    # The role grants Systems Manager access and nothing else.
    for extra in sorted(attached - {SSM_POLICY_ARN}):
        ctx.record("role-policy", f"{name} {extra}", Action.DELETE)
        if not ctx.dry_run:
            iam.detach_role_policy(RoleName=name, PolicyArn=extra)
    for policy in inline:
        ctx.record("role-policy", f"{name} {policy}", Action.DELETE, "inline")
        if not ctx.dry_run:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)


def _ensure_profile(ctx: RegionContext, name: str) -> None:
    iam = ctx.aws.client("iam", ctx.region)
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        ctx.record("instance-profile", name, Action.CREATE)
        if ctx.dry_run:
            return
        iam.create_instance_profile(
            InstanceProfileName=name, Tags=ctx.tag_list("instance-profile")
        )
        profile = {"Roles": []}
    else:
        ctx.record("instance-profile", name, Action.UNCHANGED)
    roles = [role["RoleName"] for role in profile.get("Roles", [])]
    if name not in roles:
        ctx.record("instance-profile-role", name, Action.CREATE)
        if not ctx.dry_run:
            # NOTE: on AWS a new profile can take seconds to be usable; the
            # Auto Scaling group retries launches that fail on it meanwhile.
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
