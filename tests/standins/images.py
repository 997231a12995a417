"""A stand-in for `invoke bake`: a release AMI registered in the emulator and
tagged as a bake tags it, for tests and benchmarks of the later stages."""

from __future__ import annotations

from enclave.manifest import ReleaseManifest
from infra import tags
from infra.aws import Aws


def sample_manifest(*, version: str = "0.1.0", pcr0: str = "a" * 96) -> ReleaseManifest:
    """Return a release manifest with fixed digests; `pcr0` tells releases apart."""
    return ReleaseManifest(
        version=version,
        git_commit="0123456789abcdef0123456789abcdef01234567",
        eif_sha256="e" * 64,
        pcr0=pcr0,
        pcr1="b" * 96,
        pcr2="c" * 96,
        build_time="2026-12-01T00:00:00Z",
        sample=True,
    )


def register_release_image(aws: Aws, region: str, manifest: ReleaseManifest) -> str:
    """Register the release's AMI in `region`, tag it, and return its id."""
    ec2 = aws.client("ec2", region)
    image_id: str = ec2.register_image(
        Name=f"{aws.config.project}-{manifest.release_id}",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
        EnaSupport=True,
        BlockDeviceMappings=[
            {
                "DeviceName": "/dev/xvda",
                "Ebs": {"VolumeSize": 8, "VolumeType": "gp3", "Encrypted": True},
            }
        ],
    )["ImageId"]
    image_tags = aws.config.resource_tags(**manifest.image_tags())
    ec2.create_tags(Resources=[image_id], Tags=tags.to_list(image_tags))
    return image_id
