"""enclave.build with stand-in docker and nitro-cli executables, and the tasks.

The stand-ins are small scripts named docker and nitro-cli in a folder that
is the only PATH entry: the stand-in docker records its arguments, the
stand-in nitro-cli copies a prepared EIF and prints the measurements a test
chooses. The code under test runs them as it would run the real tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enclave.build import build_enclave
from enclave.eif import inspect_eif
from enclave.eif_writer import write_eif, write_sample_eif
from infra.config import REPO_ROOT, Config, EnclaveBuild
from infra.errors import UserError

DIGEST = "sha256:" + "cd" * 32

STAND_IN_DOCKER = f"""#!{sys.executable}
# Stand-in for docker in tests: records its arguments, builds nothing.
import json, os, sys
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(["docker", *sys.argv[1:]]) + "\\n")
"""

STAND_IN_NITRO_CLI = f"""#!{sys.executable}
# Stand-in for nitro-cli in tests: copies STAND_IN_EIF to --output-file and
# prints STAND_IN_MEASUREMENTS as build-enclave's Measurements.
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(["nitro-cli", *args]) + "\\n")
if os.environ.get("STAND_IN_FAIL"):
    print("stand-in nitro-cli: failing on request", file=sys.stderr)
    sys.exit(3)
shutil.copyfile(os.environ["STAND_IN_EIF"], args[args.index("--output-file") + 1])
measurements = json.loads(os.environ["STAND_IN_MEASUREMENTS"])
print(json.dumps({{"Measurements": measurements}}))
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put stand-in docker and nitro-cli alone on PATH; return their log file."""
    folder = tmp_path / "stand-in-bin"
    folder.mkdir()
    for name, text in (("docker", STAND_IN_DOCKER), ("nitro-cli", STAND_IN_NITRO_CLI)):
        script = folder / name
        script.write_text(text)
        script.chmod(0o755)
    log = tmp_path / "stand-in.log"
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("STAND_IN_LOG", str(log))
    eif = write_eif(
        tmp_path / "built.eif",
        sections=[(1, b"kernel"), (2, b"cmdline"), (3, b"boot"), (3, b"notary")],
    )
    monkeypatch.setenv("STAND_IN_EIF", str(eif))
    measurements = inspect_eif(eif).measurements()
    monkeypatch.setenv("STAND_IN_MEASUREMENTS", json.dumps(measurements))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_build_writes_outputs(tmp_path: Path, config: Config, stand_ins: Path) -> None:
    result = build_enclave(config, output_dir=tmp_path / "out")
    assert result.eif.read_bytes() == Path(os.environ["STAND_IN_EIF"]).read_bytes()
    document = json.loads(result.measurements.read_text())
    assert document["Measurements"]["PCR0"] == result.info.pcr0


def test_build_runs_docker_then_nitro(
    tmp_path: Path, config: Config, stand_ins: Path
) -> None:
    build_enclave(config, output_dir=tmp_path / "out", tag="notary-enclave:test")
    docker, nitro = calls(stand_ins)
    assert docker[:2] == ["docker", "build"]
    assert "VSOCK_PORT=7047" in docker
    assert docker[-1] == str(REPO_ROOT / "enclave" / "image")
    assert nitro[:4] == [
        "nitro-cli",
        "build-enclave",
        "--docker-uri",
        "notary-enclave:test",
    ]


def test_build_passes_digest(tmp_path: Path, config: Config, stand_ins: Path) -> None:
    enclave = config.enclave.model_copy(
        update={"build": EnclaveBuild(notary_digest=DIGEST)}
    )
    pinned = config.model_copy(update={"enclave": enclave})
    build_enclave(pinned, output_dir=tmp_path / "out")
    docker = calls(stand_ins)[0]
    expected = (
        f"NOTARY_REF=ghcr.io/tlsnotary/tlsn/notary-server:v0.1.0-alpha.12@{DIGEST}"
    )
    assert expected in docker


def test_build_pcr_mismatch(
    tmp_path: Path, config: Config, stand_ins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = {**json.loads(os.environ["STAND_IN_MEASUREMENTS"]), "PCR2": "00" * 48}
    monkeypatch.setenv("STAND_IN_MEASUREMENTS", json.dumps(wrong))
    with pytest.raises(UserError, match="PCR2 differs"):
        build_enclave(config, output_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_build_nitro_fails(
    tmp_path: Path, config: Config, stand_ins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STAND_IN_FAIL", "1")
    with pytest.raises(UserError, match="nitro-cli build-enclave failed with exit"):
        build_enclave(config, output_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def run_invoke(*args: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    invoke = Path(sys.executable).parent / "invoke"
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [str(invoke), "--search-root", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_task_build_missing_tools(tmp_path: Path) -> None:
    config = REPO_ROOT / "deploy.yaml"
    result = run_invoke(
        "enclave.build", "--config", str(config), path=str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: docker and nitro-cli not found")
    assert len(result.stderr.strip().splitlines()) == 1


def test_task_describe_json(tmp_path: Path) -> None:
    eif = write_sample_eif(tmp_path / "s.eif", version="1.0.0")
    result = run_invoke(
        "enclave.describe", "--eif", str(eif), "--json", path="", cwd=tmp_path
    )
    document = json.loads(result.stdout)
    info = inspect_eif(eif)
    assert document["pcr0"] == info.pcr0
    assert document["sha256"] == info.sha256
    assert document["sample"] is True


def test_task_describe_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.eif"
    bad.write_bytes(b"garbage" * 100)
    result = run_invoke("enclave.describe", "--eif", str(bad), path="", cwd=tmp_path)
    assert result.returncode == 1
    assert "not an EIF" in result.stderr
    assert "Traceback" not in result.stderr


def test_task_sample(tmp_path: Path) -> None:
    output = tmp_path / "sample.eif"
    result = run_invoke(
        "enclave.sample",
        "--output",
        str(output),
        "--release-version",
        "2.0.0",
        path="",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert inspect_eif(output).metadata["ImageVersion"] == "2.0.0"  # type: ignore[index]
