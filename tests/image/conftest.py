"""Hosts for the image suite.

`--hosts` names the hosts to check, such as `chroot:///path/to/root` for a
local root filesystem or `ssh://ec2-user@HOST` for a build instance.
Without `--hosts` the suite bakes a local root filesystem once per session
(reusing the cached base root) and checks it; that needs root.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml

from infra.config import REPO_ROOT, parse_config

BAKE_DIR = REPO_ROOT / "build" / "image-tests"
ROOT_REASON = (
    "the image suite bakes a local root filesystem, which needs root for "
    "chroot and mmdebstrap: run it as root or pass --hosts"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--expected-manifest",
        action="store",
        default=None,
        help="release manifest JSON the image must carry (default: no comparison)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lockdown: checks of the lockdown step, which runs after the SSH checks on AWS",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host_spec" in metafunc.fixturenames:
        hosts = metafunc.config.option.hosts
        specs = hosts.split(",") if hosts else [None]
        metafunc.parametrize(
            "host_spec",
            specs,
            scope="session",
            indirect=True,
            ids=[spec or "local-bake" for spec in specs],
        )


@pytest.fixture(scope="session")
def host_spec(request: pytest.FixtureRequest) -> str | None:
    return request.param


@pytest.fixture(scope="session")
def local_bake(
    request: pytest.FixtureRequest, host_spec: str | None
) -> Iterator[dict[str, Any]]:
    """Bake a local root filesystem for this session and remove it at the end."""
    if host_spec is not None:
        yield {}
        return
    if os.geteuid() != 0:
        pytest.skip(ROOT_REASON)
    from infra import bake

    data = yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text())
    config = parse_config(data)
    work_dir = BAKE_DIR / str(os.getpid())
    try:
        eif = bake.resolve_eif(config, eif=None, work_dir=work_dir)
        manifest = bake.release_manifest(config, eif, commit=bake.git_commit())
        root = bake.build_local_root(
            config,
            manifest,
            eif=eif,
            work_dir=work_dir,
            cache_dir=REPO_ROOT / "build" / "cache",
        )
        yield {"root": root, "manifest": json.loads(manifest.to_json())}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def host(
    request: pytest.FixtureRequest, host_spec: str | None, local_bake: dict[str, Any]
) -> Any:
    option = request.config.option
    spec = host_spec or f"chroot://{local_bake['root']}"
    connection = option.connection
    # testinfra reads a chroot path only with --connection=chroot, because a
    # URL such as chroot:///srv/root has an empty host part.
    if spec.startswith("chroot://"):
        spec, connection = spec.removeprefix("chroot://"), "chroot"
    return testinfra.get_host(
        spec,
        connection=connection,
        ssh_identity_file=option.ssh_identity_file,
        ssh_config=option.ssh_config,
        ssh_extra_args=option.ssh_extra_args,
        sudo=option.sudo,
        sudo_user=option.sudo_user,
    )


@pytest.fixture(scope="session")
def expected_manifest(
    request: pytest.FixtureRequest, local_bake: dict[str, Any]
) -> dict[str, Any] | None:
    path = request.config.getoption("expected_manifest")
    if path:
        return json.loads(Path(path).read_text())
    return local_bake.get("manifest")


@pytest.fixture(scope="session")
def os_id(host: Any) -> str:
    for line in host.file("/etc/os-release").content_string.splitlines():
        if line.startswith("ID="):
            return line.split("=", 1)[1].strip('"')
    return "unknown"


@pytest.fixture
def amazon_linux(os_id: str) -> None:
    """Skip a check that needs nitro-cli, which is packaged for Amazon Linux only."""
    if os_id != "amzn":
        pytest.skip(
            "nitro-cli and the allocator are packaged for Amazon Linux only, "
            f"not {os_id}"
        )
