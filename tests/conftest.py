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
    emulator, tagged as a bake would tag it, and returns its image id and
    manifest. It takes the place of `invoke bake` in tests of later stages.
    """
    from standins.images import register_release_image, sample_manifest

    from enclave.manifest import ReleaseManifest

    def register(
        region: str, *, version: str = "0.1.0", pcr0: str = "a" * 96
    ) -> tuple[str, ReleaseManifest]:
        manifest = sample_manifest(version=version, pcr0=pcr0)
        return register_release_image(aws, region, manifest), manifest

    return register
