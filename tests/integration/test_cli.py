"""The task layer as a user runs it: `invoke` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.config import REPO_ROOT

INVOKE = [sys.executable, "-m", "invoke"]


def run_invoke(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NOTARY_STATE_DIR": str(state_dir)}
    return subprocess.run(
        [*INVOKE, *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_list_shows_one_line_help(state_dir: Path) -> None:
    result = run_invoke("--list", state_dir=state_dir)

    assert result.returncode == 0
    assert "validate" in result.stdout
    assert "emulator.start" in result.stdout


def test_validate_example(state_dir: Path) -> None:
    result = run_invoke("validate", state_dir=state_dir)

    assert result.returncode == 0
    assert "config valid: 4 regions" in result.stderr


def test_validate_bad_config_one_line(tmp_path: Path, state_dir: Path) -> None:
    data = yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text())
    data["enclave"]["cid"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))

    result = run_invoke("validate", "--config", str(path), state_dir=state_dir)
    lines = result.stderr.strip().splitlines()

    assert result.returncode == 1
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "enclave.cid" in lines[0]
    assert "Traceback" not in result.stderr


def test_validate_starts_no_emulator(tmp_path: Path, state_dir: Path) -> None:
    result = run_invoke("validate", state_dir=state_dir)

    assert result.returncode == 0
    assert not (state_dir / "emulator.json").exists()


def test_emulator_lifecycle(state_dir: Path) -> None:
    started = run_invoke("emulator.start", state_dir=state_dir)
    try:
        status = run_invoke("emulator.status", state_dir=state_dir)

        assert started.returncode == 0
        assert status.returncode == 0
        assert status.stdout.strip() == started.stdout.strip()
        assert status.stdout.startswith("http://127.0.0.1:")
    finally:
        stopped = run_invoke("emulator.stop", state_dir=state_dir)

    assert stopped.returncode == 0
    after = run_invoke("emulator.status", state_dir=state_dir)
    assert after.returncode == 1
    assert "not running" in after.stderr


def test_option_of_wrong_type_one_line(state_dir: Path) -> None:
    result = run_invoke("prune", "--keep", "abc", state_dir=state_dir)

    assert result.returncode == 1
    assert "invalid value 'abc' for --keep: expected a number" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "emulator.json").exists()


def test_sample_output_directory(tmp_path: Path, state_dir: Path) -> None:
    result = run_invoke(
        "enclave.sample", "--output", str(tmp_path), state_dir=state_dir
    )

    assert result.returncode == 1
    assert "is a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_help_shows_options(state_dir: Path) -> None:
    result = run_invoke("verify", "--help", state_dir=state_dir)

    assert result.returncode == 0
    assert "--document" in result.stdout


@pytest.mark.parametrize("folder", ["docs", "infra"])
def test_validate_from_subfolder(state_dir: Path, folder: str) -> None:
    # The invoke script, as users run it: `python -m` would put the working
    # folder first on sys.path, where infra/copy.py hides the copy module.
    script = Path(sys.executable).parent / "invoke"
    result = subprocess.run(
        [str(script), "validate"],
        cwd=REPO_ROOT / folder,
        env={**os.environ, "NOTARY_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0
    assert "config valid" in result.stderr
