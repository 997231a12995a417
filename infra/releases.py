"""Find a release's AMI in a region by its tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra import tags
from infra.aws import Aws
from infra.config import Config
from infra.errors import UserError


@dataclass(frozen=True)
class ReleaseImage:
    region: str
    image_id: str
    release_id: str
    state: str
    creation_date: str
    tags: dict[str, str]


def _to_release_image(region: str, image: dict[str, Any]) -> ReleaseImage:
    image_tags = tags.from_list(image.get("Tags"))
    return ReleaseImage(
        region=region,
        image_id=image["ImageId"],
        release_id=image_tags.get(tags.RELEASE, ""),
        state=image.get("State", ""),
        creation_date=image.get("CreationDate", ""),
        tags=image_tags,
    )


def list_release_images(
    aws: Aws, region: str, *, release_id: str | None = None
) -> list[ReleaseImage]:
    """Return this project's AMIs in `region`, newest first."""
    filters = [{"Name": f"tag:{tags.PROJECT}", "Values": [aws.config.project]}]
    if release_id:
        filters.append({"Name": f"tag:{tags.RELEASE}", "Values": [release_id]})
    ec2 = aws.client("ec2", region)
    images = ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
    found = [_to_release_image(region, image) for image in images]
    return sorted(found, key=lambda image: image.creation_date, reverse=True)


def home_region(config: Config) -> str:
    """Return the region where bakes register AMIs: the default region."""
    return config.default_region.name


def resolve_release(aws: Aws, release_id: str | None) -> ReleaseImage:
    """Return the home region's AMI of `release_id`, or the newest one of the
    config's version when no id is given."""
    region = home_region(aws.config)
    images = list_release_images(aws, region, release_id=release_id)
    if not release_id:
        images = [
            image
            for image in images
            if image.tags.get(tags.VERSION) == aws.config.version
        ]
    if not images:
        wanted = release_id or f"version {aws.config.version}"
        raise UserError(
            f"no AMI of release {wanted} in {region}: run invoke bake first"
        )
    return images[0]
