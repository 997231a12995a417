"""Remove old releases' AMIs and snapshots that nothing uses any more.

Per region, AMIs are grouped by release id and the releases ordered by the
newest creation date in each group. Releases after the newest `keep` are
pruned, except AMIs that a launch template version or an Auto Scaling group
still references.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from infra import tags
from infra.aws import Aws
from infra.plan import Action, Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Image:
    """One of this project's AMIs, with what prune needs to know."""

    image_id: str
    release_id: str
    creation_date: str
    snapshot_ids: list[str]


def list_images(aws: Aws, region: str) -> list[Image]:
    """Return this project's AMIs in `region` that carry a release id."""
    ec2 = aws.client("ec2", region)
    filters = [
        {"Name": f"tag:{tags.PROJECT}", "Values": [aws.config.project]},
        {"Name": "tag-key", "Values": [tags.RELEASE]},
    ]
    images = []
    for page in ec2.get_paginator("describe_images").paginate(
        Owners=["self"], Filters=filters
    ):
        for image in page["Images"]:
            release_id = tags.from_list(image.get("Tags")).get(tags.RELEASE)
            if not release_id:
                continue
            images.append(
                Image(
                    image_id=image["ImageId"],
                    release_id=release_id,
                    creation_date=image.get("CreationDate", ""),
                    snapshot_ids=[
                        mapping["Ebs"]["SnapshotId"]
                        for mapping in image.get("BlockDeviceMappings", [])
                        if mapping.get("Ebs", {}).get("SnapshotId")
                    ],
                )
            )
    return images


def releases_to_prune(images: list[Image], *, keep: int) -> list[str]:
    """Return the release ids older than the newest `keep`, newest first."""
    newest: dict[str, str] = {}
    for image in images:
        newest[image.release_id] = max(
            newest.get(image.release_id, ""), image.creation_date
        )
    ordered = sorted(newest, key=lambda release: newest[release], reverse=True)
    return ordered[keep:]


def images_in_use(aws: Aws, region: str) -> dict[str, str]:
    """Return the AMI ids that launch templates or Auto Scaling groups in
    `region` reference, each with a description of one user.

    NOTE: instances launched outside Auto Scaling and AMIs shared with other
    accounts are not checked, so such users do not protect an AMI.
    """
    used: dict[str, str] = {}
    ec2 = aws.client("ec2", region)
    for template in _launch_templates(ec2):
        template_id = template["LaunchTemplateId"]
        for version in _template_versions(ec2, template_id, None):
            image_id = version.get("LaunchTemplateData", {}).get("ImageId")
            if image_id:
                used.setdefault(
                    image_id,
                    f"launch template {template_id} version {version['VersionNumber']}",
                )
    for group_name, image_id in _group_images(aws, region):
        used.setdefault(image_id, f"Auto Scaling group {group_name}")
    return used


def _launch_templates(ec2: Any) -> list[dict[str, Any]]:
    templates: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_launch_templates").paginate():
        templates.extend(page["LaunchTemplates"])
    return templates


def _template_versions(
    ec2: Any, template_id: str, version: str | None
) -> list[dict[str, Any]]:
    request: dict[str, Any] = {"LaunchTemplateId": template_id}
    if version:
        request["Versions"] = [version]
    versions: list[dict[str, Any]] = []
    paginator = ec2.get_paginator("describe_launch_template_versions")
    for page in paginator.paginate(**request):
        versions.extend(page["LaunchTemplateVersions"])
    return versions


def _group_images(aws: Aws, region: str) -> list[tuple[str, str]]:
    """Return (group name, AMI id) for each Auto Scaling group's image, read
    from its launch template version or its launch configuration."""
    autoscaling = aws.client("autoscaling", region)
    ec2 = aws.client("ec2", region)
    found: list[tuple[str, str]] = []
    paginator = autoscaling.get_paginator("describe_auto_scaling_groups")
    for page in paginator.paginate():
        for group in page["AutoScalingGroups"]:
            name = group["AutoScalingGroupName"]
            for image_id in _images_of_group(autoscaling, ec2, group):
                found.append((name, image_id))
    return found


def _images_of_group(autoscaling: Any, ec2: Any, group: dict[str, Any]) -> list[str]:
    spec = group.get("LaunchTemplate") or (
        group.get("MixedInstancesPolicy", {})
        .get("LaunchTemplate", {})
        .get("LaunchTemplateSpecification")
    )
    if spec:
        template_id = spec.get("LaunchTemplateId")
        if not template_id:
            template_id = ec2.describe_launch_templates(
                LaunchTemplateNames=[spec["LaunchTemplateName"]]
            )["LaunchTemplates"][0]["LaunchTemplateId"]
        versions = _template_versions(
            ec2, template_id, spec.get("Version") or "$Default"
        )
        return [
            version["LaunchTemplateData"]["ImageId"]
            for version in versions
            if version.get("LaunchTemplateData", {}).get("ImageId")
        ]
    configuration = group.get("LaunchConfigurationName")
    if configuration:
        answer = autoscaling.describe_launch_configurations(
            LaunchConfigurationNames=[configuration]
        )
        return [item["ImageId"] for item in answer["LaunchConfigurations"]]
    return []


def plan_region(aws: Aws, region: str, *, keep: int) -> Plan:
    """Return the region's prune plan: DELETE entries for each AMI and
    snapshot to remove, UNCHANGED for old AMIs kept because they are in use."""
    plan = Plan()
    images = list_images(aws, region)
    old = set(releases_to_prune(images, keep=keep))
    if not old:
        return plan
    used = images_in_use(aws, region)
    for image in sorted(images, key=lambda item: item.creation_date):
        if image.release_id not in old:
            continue
        if image.image_id in used:
            plan.add(
                region,
                "ami",
                image.image_id,
                Action.UNCHANGED,
                f"release {image.release_id} in use by {used[image.image_id]}",
            )
            continue
        plan.add(
            region, "ami", image.image_id, Action.DELETE, f"release {image.release_id}"
        )
        for snapshot_id in image.snapshot_ids:
            plan.add(
                region, "snapshot", snapshot_id, Action.DELETE, f"of {image.image_id}"
            )
    return plan


def apply_plan(aws: Aws, plan: Plan) -> None:
    """Deregister the plan's AMIs, then delete their snapshots."""
    # NOTE: a launch template version created between planning and this call
    # is not seen, so plan and apply should not run during a rollout.
    for entry in plan.changes:
        ec2 = aws.client("ec2", entry.region)
        if entry.resource == "ami":
            ec2.deregister_image(ImageId=entry.name)
            log.info(
                "Deregistered %s in %s (%s)", entry.name, entry.region, entry.detail
            )
        elif entry.resource == "snapshot":
            ec2.delete_snapshot(SnapshotId=entry.name)
            log.info("Deleted snapshot %s in %s", entry.name, entry.region)
