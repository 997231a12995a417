"""Shared fixtures: a moto server on a free loopback port, and configs."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import emulator
from infra.aws import Aws
from infra.config import REPO_ROOT, Config, parse_config

EXAMPLE_CONFIG = REPO_ROOT / "deploy.yaml"


@pytest.fixture(scope="session")
def emulator_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[emulator.Emulator]:
    """Run one moto server for the test session, stopped by its pid at the end."""
    state_dir = tmp_path_factory.mktemp("emulator")
    server = emulator.start(state_dir)
    yield server
    emulator.stop(state_dir)


@pytest.fixture
def emulator_url(emulator_server: emulator.Emulator) -> Iterator[str]:
    """Return the endpoint of an emptied emulator: each test starts clean."""
    import urllib.request

    request = urllib.request.Request(
        f"{emulator_server.endpoint_url}/moto-api/reset", method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()
    yield emulator_server.endpoint_url


@pytest.fixture
def config_data() -> dict[str, Any]:
    """Return the example deployment as a mutable mapping."""
    return copy.deepcopy(yaml.safe_load(EXAMPLE_CONFIG.read_text()))


@pytest.fixture
def config(config_data: dict[str, Any]) -> Config:
    return parse_config(config_data)


@pytest.fixture
def aws(config: Config, emulator_url: str) -> Aws:
    """Return clients for the example deployment against a clean emulator."""
    return Aws(config, endpoint_url=emulator_url)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def make_release_image(aws: Aws) -> Any:
    """Return a function that registers a release AMI in a region of the
    emulator, tagged as a bake would tag it, and returns its image id.

    It stands in for `invoke bake` in tests of the later stages.
    """
    from enclave.manifest import ReleaseManifest
    from infra import tags

    def register(
        region: str, *, version: str = "0.1.0", pcr0: str = "a" * 96
    ) -> tuple[str, ReleaseManifest]:
        manifest = ReleaseManifest(
            version=version,
            git_commit="0123456789abcdef0123456789abcdef01234567",
            eif_sha256="e" * 64,
            pcr0=pcr0,
            pcr1="b" * 96,
            pcr2="c" * 96,
            build_time="2026-12-01T00:00:00Z",
            sample=True,
        )
        ec2 = aws.client("ec2", region)
        image_id = ec2.register_image(
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
        return image_id, manifest

    return register
