"""The AWS provisioning path (scripts/remote-run.sh) against a local root.

A stand-in `ssh` on PATH runs each remote command in a Debian root through
chroot. So the upload, the steps with sudo, testinfra over its ssh backend and
the lockdown run as on a build instance, with no network traffic. Needs root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra import bake, rootfs
from infra.config import REPO_ROOT, Config

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and the base root need root"),
    pytest.mark.slow,
]
CACHE = REPO_ROOT / "build" / "cache"
REMOTE_RUN = bake.TEMPLATE.parent / "scripts" / "remote-run.sh"
BUILD_USER = "builder"
# Drops ssh's options and host, then runs the remote command in the root.
FAKE_SSH = """#!/bin/sh
while [ $# -gt 0 ]; do
    case "$1" in
    -o|-i|-p|-F|-l) shift 2 ;;
    -*) shift ;;
    *) break ;;
    esac
done
shift
exec chroot "$FAKE_SSH_ROOT" /bin/sh -c "$*"
"""


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    """Return a Debian root that plays the build instance, with a build user
    and a sudo that runs its arguments as root."""
    root = rootfs.extract(rootfs.base_root(cache_dir=CACHE).path, tmp_path / "root")
    sudo = root / "usr" / "local" / "bin" / "sudo"
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(0o755)
    subprocess.run(
        ["chroot", str(root), "useradd", "--create-home", BUILD_USER], check=True
    )
    return root


@pytest.fixture
def environment(tmp_path: Path, instance: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_SSH_ROOT": str(instance),
        "REMOTE_PROVISION": "1",
        "PYTHON": sys.executable,
        "SSH_HOST": "127.0.0.1",
        "SSH_PORT": "22",
        "SSH_USER": BUILD_USER,
        "SSH_PRIVATE_KEY": "not a key: the stand-in ssh never reads it",
    }


def remote_step(step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(REMOTE_RUN), step],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_remote_steps_provision(
    config: Config, tmp_path: Path, instance: Path, environment: dict[str, str]
) -> None:
    eif = bake.resolve_eif(config, eif=None, work_dir=tmp_path)
    manifest = bake.release_manifest(config, eif, commit="0" * 40)
    staging = bake.render_staging(config, manifest, eif=eif, staging=tmp_path / "s")
    environment["STAGING_DIR"] = str(staging)
    for step in ("upload", "nitro", "install-files", "testinfra", "lockdown"):
        completed = remote_step(step, environment)
        assert completed.returncode == 0, (step, completed.stdout, completed.stderr)
    shadow = (instance / "etc" / "shadow").read_text()
    builder = next(line for line in shadow.splitlines() if line.startswith("builder:"))
    assert builder.split(":")[1].startswith("!")
    assert not (instance / "tmp" / "notary-staging").exists()
    bake.run_testinfra(f"chroot://{instance}", extra=("-m", "lockdown"))


def test_remote_skipped_without_communicator(environment: dict[str, str]) -> None:
    environment["REMOTE_PROVISION"] = "0"
    completed = remote_step("install-files", environment)
    assert completed.returncode == 0
    assert "skipped: no communicator" in completed.stdout
