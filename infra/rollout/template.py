"""The region's launch template: one version per release.

A version's description is the release id, so the Auto Scaling group of a
release names the version built from that release's AMI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from infra import tags
from infra.aws import error_code
from infra.plan import Action
from infra.releases import ReleaseImage
from infra.rollout.context import PENDING, RegionContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TemplateVersion:
    template_id: str
    version: str


def launch_data(
    ctx: RegionContext,
    *,
    image: ReleaseImage,
    root_device: str,
    root_size: int | None = None,
    profile: str,
    security_group_id: str,
) -> dict[str, Any]:
    """Return the LaunchTemplateData of a release: enclave on, IMDSv2 only
    with one hop so containers cannot reach it, no key pair, encrypted root."""
    kms_key_id = ctx.config.region(ctx.region).kms_key_id
    ebs: dict[str, Any] = {
        "Encrypted": True,
        "VolumeType": "gp3",
        "DeleteOnTermination": True,
    }
    if kms_key_id:
        ebs["KmsKeyId"] = kms_key_id
    if root_size:
        # The AMI's own size: the emulator rejects a mapping without one.
        ebs["VolumeSize"] = root_size
    instance_tags = ctx.tag_list("instance", **{tags.RELEASE: image.release_id})
    return {
        "ImageId": image.image_id,
        "InstanceType": ctx.config.instance_type_for(ctx.region),
        "IamInstanceProfile": {"Name": profile},
        "SecurityGroupIds": [security_group_id],
        "EnclaveOptions": {"Enabled": True},
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpPutResponseHopLimit": 1,
            "HttpEndpoint": "enabled",
        },
        "BlockDeviceMappings": [{"DeviceName": root_device, "Ebs": ebs}],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": instance_tags},
            {"ResourceType": "volume", "Tags": instance_tags},
        ],
    }


def contains(current: Any, desired: Any) -> bool:
    """Return whether `current` contains every value of `desired`.

    AWS may add keys to what it returns, and the emulator adds the template's
    own tags to TagSpecifications, so a list of mappings matches when each
    desired item is found in it; a list of plain values must match exactly.
    """
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            contains(current.get(key), value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(current, list):
            return False
        if any(isinstance(item, dict) for item in desired):
            return all(any(contains(c, d) for c in current) for d in desired)
        return sorted(map(str, current)) == sorted(map(str, desired))
    return bool(current == desired)


def find_template(ctx: RegionContext) -> dict[str, Any] | None:
    ec2 = ctx.client("ec2")
    try:
        found = ec2.describe_launch_templates(LaunchTemplateNames=[ctx.base_name])
    except ClientError as error:
        if error_code(error).endswith("NotFoundException"):
            return None
        raise
    templates = found["LaunchTemplates"]
    return templates[0] if templates else None


def ensure_template_version(
    ctx: RegionContext, *, image: ReleaseImage, profile: str, security_group_id: str
) -> TemplateVersion:
    """Find the release's version whose data matches, or add one."""
    ec2 = ctx.client("ec2")
    root_device, root_size = _root_device(ctx, image.image_id)
    data = launch_data(
        ctx,
        image=image,
        root_device=root_device,
        root_size=root_size,
        profile=profile,
        security_group_id=security_group_id,
    )

    template = find_template(ctx)
    name = f"{ctx.base_name} {image.release_id}"
    if template is None:
        ctx.record("launch-template", name, Action.CREATE, image.image_id)
        if ctx.dry_run:
            return TemplateVersion(PENDING, PENDING)
        created = ec2.create_launch_template(
            LaunchTemplateName=ctx.base_name,
            VersionDescription=image.release_id,
            LaunchTemplateData=data,
            TagSpecifications=ctx.tag_specs("launch-template", "launch-template"),
        )["LaunchTemplate"]
        ctx.step_done("template")
        return TemplateVersion(
            created["LaunchTemplateId"], str(created["LatestVersionNumber"])
        )

    template_id = template["LaunchTemplateId"]
    for version in _versions(ctx, template_id):
        if version.get("VersionDescription") == image.release_id and contains(
            version["LaunchTemplateData"], data
        ):
            ctx.record("launch-template", name, Action.UNCHANGED, image.image_id)
            return TemplateVersion(template_id, str(version["VersionNumber"]))

    ctx.record("launch-template", name, Action.UPDATE, f"new version {image.image_id}")
    if ctx.dry_run:
        return TemplateVersion(template_id, PENDING)
    created = ec2.create_launch_template_version(
        LaunchTemplateId=template_id,
        VersionDescription=image.release_id,
        LaunchTemplateData=data,
    )["LaunchTemplateVersion"]
    ctx.step_done("template")
    return TemplateVersion(template_id, str(created["VersionNumber"]))


def _versions(ctx: RegionContext, template_id: str) -> list[dict[str, Any]]:
    paginator = ctx.client("ec2").get_paginator("describe_launch_template_versions")
    versions: list[dict[str, Any]] = []
    for page in paginator.paginate(LaunchTemplateId=template_id):
        versions.extend(page["LaunchTemplateVersions"])
    return sorted(versions, key=lambda v: int(v["VersionNumber"]), reverse=True)


def _root_device(ctx: RegionContext, image_id: str) -> tuple[str, int | None]:
    """Return the AMI's root device name and its volume size in GiB."""
    image = ctx.client("ec2").describe_images(ImageIds=[image_id])["Images"][0]
    name = str(image.get("RootDeviceName") or "/dev/xvda")
    for mapping in image.get("BlockDeviceMappings", []):
        if mapping.get("DeviceName") == name and "VolumeSize" in mapping.get("Ebs", {}):
            return name, int(mapping["Ebs"]["VolumeSize"])
    return name, None


# DeleteLaunchTemplateVersions takes at most 200 versions a call.
MAX_DELETE_VERSIONS = 200


@dataclass(frozen=True)
class VersionCleanup:
    """Launch template versions that no group uses, and the new default version."""

    template_id: str
    delete: tuple[str, ...]
    # The version made the default before the deletions. "" keeps the default.
    new_default: str = ""

    @property
    def has_changes(self) -> bool:
        return bool(self.delete or self.new_default)


def plan_version_cleanup(
    template_id: str,
    versions: list[str],
    *,
    default: str,
    keep: set[str],
    new_default: str = "",
) -> VersionCleanup:
    """Return which of `versions` to delete: all but `keep`.

    AWS rejects deleting the default version. With `new_default` the default
    moves there first, otherwise the default version is kept.
    """
    unused = [version for version in versions if version not in keep]
    move = bool(new_default) and new_default != default and default in unused
    if default in unused and not move:
        unused.remove(default)
    return VersionCleanup(
        template_id=template_id,
        delete=tuple(unused),
        new_default=new_default if move else "",
    )


def retire_versions(
    ctx: RegionContext, *, keep: set[str], new_default: str = ""
) -> VersionCleanup | None:
    """Delete the launch template versions that no remaining group uses, so
    that prune can free their AMIs. Each deletion is recorded in the plan."""
    template = find_template(ctx)
    if template is None:
        return None
    template_id = template["LaunchTemplateId"]
    described = _versions(ctx, template_id)
    releases = {
        str(item["VersionNumber"]): str(item.get("VersionDescription", ""))
        for item in described
    }
    cleanup = plan_version_cleanup(
        template_id,
        list(releases),
        default=str(template["DefaultVersionNumber"]),
        keep=keep,
        new_default=new_default,
    )

    if cleanup.new_default:
        ctx.record(
            "launch-template",
            ctx.base_name,
            Action.UPDATE,
            f"default version {cleanup.new_default}",
        )
    for version in cleanup.delete:
        ctx.record(
            "launch-template-version",
            f"{ctx.base_name} {version}",
            Action.DELETE,
            f"release {releases[version]}",
        )

    if not ctx.dry_run and cleanup.has_changes:
        apply_version_cleanup(ctx, cleanup)
    return cleanup


def apply_version_cleanup(ctx: RegionContext, cleanup: VersionCleanup) -> None:
    # NOTE: moto 5.2.5 does not implement DeleteLaunchTemplateVersions, so this
    # call is tested with botocore's Stubber only, never against a server.
    ec2 = ctx.client("ec2")
    if cleanup.new_default:
        ec2.modify_launch_template(
            LaunchTemplateId=cleanup.template_id, DefaultVersion=cleanup.new_default
        )
    versions = list(cleanup.delete)
    for start in range(0, len(versions), MAX_DELETE_VERSIONS):
        try:
            response = ec2.delete_launch_template_versions(
                LaunchTemplateId=cleanup.template_id,
                Versions=versions[start : start + MAX_DELETE_VERSIONS],
            )
        except ResponseParserError:
            # moto 5.2 returns HTTP 500 for this call, which AWS implements.
            if ctx.config.target != "local":
                raise
            log.warning(
                "The emulator does not implement DeleteLaunchTemplateVersions: "
                "versions %s of %s in %s stay, and their AMIs stay in use",
                ", ".join(versions),
                cleanup.template_id,
                ctx.region,
            )
            break
        for failed in response.get("UnsuccessfullyDeletedLaunchTemplateVersions", []):
            # The next run plans the deletion again.
            log.warning(
                "Failed to delete launch template version %s in %s: %s",
                failed.get("VersionNumber"),
                ctx.region,
                failed.get("ResponseError", {}).get("Message", ""),
            )
    ctx.step_done("template-versions")
