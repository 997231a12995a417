"""Tag keys this tool sets on AWS resources; AWS state is found by them."""

PROJECT = "notary:project"
RELEASE = "notary:release"
VERSION = "notary:version"
GIT_COMMIT = "notary:git-commit"
EIF_SHA256 = "notary:eif-sha256"
PCR0 = "notary:pcr0"
PCR1 = "notary:pcr1"
PCR2 = "notary:pcr2"
SAMPLE = "notary:sample"
BASE_IMAGE = "notary:base-image"
BUILD_TIME = "notary:build-time"
REGION = "notary:region"
# The role of a resource within a region's deployment, such as "nlb" or "asg".
COMPONENT = "notary:component"
SOURCE_IMAGE = "notary:source-image"


def to_list(tags: dict[str, str]) -> list[dict[str, str]]:
    """Return tags in the Key/Value list form most AWS APIs take."""
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def from_list(tags: list[dict[str, str]] | None) -> dict[str, str]:
    """Return a Key/Value tag list as a mapping."""
    return {tag["Key"]: tag["Value"] for tag in tags or []}
