"""enclave.build without the real tools: missing tools, --eif, manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from enclave.build import (
    build_enclave,
    compare_measurements,
    manifest_for_eif,
    notary_ref,
    require_real_eif,
)
from enclave.eif import inspect_eif
from enclave.eif_writer import SAMPLE_BUILD_TIME, write_eif, write_sample_eif
from infra.config import Config, EnclaveBuild
from infra.errors import UserError

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return write_sample_eif(tmp_path / "sample.eif", version="1.0.0")


@pytest.fixture
def real(tmp_path: Path) -> Path:
    """An EIF without sample metadata, as nitro-cli builds before metadata."""
    sections = [(1, b"kernel"), (2, b"cmdline"), (3, b"boot"), (3, b"app")]
    return write_eif(tmp_path / "real.eif", sections=sections)


def test_missing_tools_message(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as caught:
        build_enclave(config, output_dir=tmp_path / "out")
    message = str(caught.value)
    assert message.startswith("docker and nitro-cli not found on PATH")
    assert "Amazon Linux 2023" in message
    assert "aws-nitro-enclaves-cli" in message
    assert "--eif FILE" in message
    assert "\n" not in message


def test_missing_tools_no_output(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError):
        build_enclave(config, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_nitro_cli_only(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n# Stand-in docker for this test; never run.\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="^nitro-cli not found on PATH"):
        build_enclave(config, output_dir=tmp_path / "out")


def test_given_eif_copied(
    tmp_path: Path, config: Config, sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = build_enclave(config, output_dir=tmp_path / "out", eif=sample)
    assert result.eif.read_bytes() == sample.read_bytes()
    assert result.info.path == result.eif


def test_given_eif_measurements(tmp_path: Path, config: Config, sample: Path) -> None:
    result = build_enclave(config, output_dir=tmp_path / "out", eif=sample)
    document = json.loads(result.measurements.read_text())
    info = inspect_eif(sample)
    assert document["Measurements"]["PCR0"] == info.pcr0
    assert document["Measurements"]["PCR2"] == info.pcr2
    assert document["sha256"] == info.sha256


def test_given_eif_in_place(tmp_path: Path, config: Config) -> None:
    out = tmp_path / "out"
    out.mkdir()
    eif = write_sample_eif(out / "notary.eif", version="1.0.0")
    result = build_enclave(config, output_dir=out, eif=eif)
    assert result.eif == eif
    assert sorted(p.name for p in out.iterdir()) == ["measurements.json", "notary.eif"]


def test_sample_rejected_for_aws(tmp_path: Path, config: Config, sample: Path) -> None:
    aws_config = config.model_copy(update={"target": "aws"})
    with pytest.raises(UserError, match="is the sample EIF, which does not boot"):
        build_enclave(aws_config, output_dir=tmp_path / "out", eif=sample)
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_eif_leaves_nothing(tmp_path: Path, config: Config) -> None:
    bad = tmp_path / "bad.eif"
    bad.write_bytes(b"not an eif at all")
    with pytest.raises(UserError, match="not an EIF"):
        build_enclave(config, output_dir=tmp_path / "out", eif=bad)
    assert list((tmp_path / "out").iterdir()) == []


def test_require_real_eif_aws_sample(sample: Path) -> None:
    with pytest.raises(UserError, match="target: local"):
        require_real_eif(inspect_eif(sample), "aws")


def test_require_real_eif_local_sample(sample: Path) -> None:
    require_real_eif(inspect_eif(sample), "local")


def test_require_real_eif_aws_real(real: Path) -> None:
    require_real_eif(inspect_eif(real), "aws")


def test_manifest_sample(sample: Path) -> None:
    manifest = manifest_for_eif(sample, version="1.0.0", git_commit="c" * 40)
    info = inspect_eif(sample)
    assert manifest.sample is True
    assert manifest.build_time == SAMPLE_BUILD_TIME
    assert manifest.pcr0 == info.pcr0
    assert manifest.pcr1 == info.pcr1
    assert manifest.pcr2 == info.pcr2
    assert manifest.eif_sha256 == info.sha256
    assert manifest.pcr8 is None


def test_manifest_time_from_file(real: Path) -> None:
    os.utime(real, (1_700_000_000, 1_700_000_000))
    manifest = manifest_for_eif(real, version="1.0.0", git_commit="c" * 40)
    assert manifest.build_time == "2023-11-14T22:13:20Z"
    assert manifest.sample is False


def test_manifest_given_info(sample: Path, real: Path) -> None:
    info = inspect_eif(real)
    manifest = manifest_for_eif(sample, version="1.0.0", git_commit="c" * 40, info=info)
    assert manifest.pcr0 == info.pcr0


def test_manifest_deterministic(sample: Path) -> None:
    first = manifest_for_eif(sample, version="1.0.0", git_commit="c" * 40)
    second = manifest_for_eif(sample, version="1.0.0", git_commit="c" * 40)
    assert first == second


def test_compare_mismatch(sample: Path) -> None:
    info = inspect_eif(sample)
    nitro = {**info.measurements(), "PCR1": "00" * 48}
    with pytest.raises(UserError, match="PCR1 differs"):
        compare_measurements(nitro, info)


def test_compare_extra_pcr8(sample: Path) -> None:
    info = inspect_eif(sample)
    nitro = {**info.measurements(), "PCR8": "11" * 48}
    with pytest.raises(UserError, match="PCR8 differs"):
        compare_measurements(nitro, info)


def test_compare_upper_case(sample: Path) -> None:
    info = inspect_eif(sample)
    nitro = {key: value.upper() for key, value in info.measurements().items()}
    compare_measurements(nitro, info)


def test_notary_ref_version() -> None:
    ref = notary_ref(EnclaveBuild())
    assert ref == "ghcr.io/tlsnotary/tlsn/notary-server:v0.1.0-alpha.12"


def test_notary_ref_digest() -> None:
    ref = notary_ref(EnclaveBuild(notary_digest=DIGEST))
    assert ref.endswith(f":v0.1.0-alpha.12@{DIGEST}")
