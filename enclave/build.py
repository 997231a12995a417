"""Build the notary EIF with Docker and nitro-cli, and describe a release by it.

`build_enclave` runs `docker build` on enclave/image/ and `nitro-cli
build-enclave` on the result, then checks that nitro-cli's PCRs equal the ones
enclave.eif computes from the written file. Given an existing EIF instead, it
only inspects and copies it. Either way the build folder ends up with the EIF
and a measurements JSON in nitro-cli's shape.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from enclave.eif import EifInfo, inspect_eif
from enclave.manifest import ReleaseManifest
from infra.config import Config, EnclaveBuild
from infra.errors import UserError

log = logging.getLogger(__name__)

IMAGE_DIR = Path(__file__).resolve().parent / "image"
REQUIRED_TOOLS = ("docker", "nitro-cli")
EIF_NAME = "notary.eif"
MEASUREMENTS_NAME = "measurements.json"
DEFAULT_OUTPUT = Path("build/enclave")
DEFAULT_TAG = "notary-enclave:build"
PCR_KEYS = ("PCR0", "PCR1", "PCR2", "PCR8")


@dataclass(frozen=True)
class BuildResult:
    """The paths of a built EIF and its measurements, and the EIF's details."""

    eif: Path
    measurements: Path
    info: EifInfo


def missing_tools(tools: tuple[str, ...] = REQUIRED_TOOLS) -> list[str]:
    """Return the tools in `tools` that are not found on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def require_tools(tools: tuple[str, ...] = REQUIRED_TOOLS) -> None:
    """Raise UserError naming every missing build tool and the two ways on."""
    missing = missing_tools(tools)
    if missing:
        raise UserError(
            f"{' and '.join(missing)} not found on PATH: build on an Amazon "
            "Linux 2023 host with Docker and the aws-nitro-enclaves-cli and "
            "aws-nitro-enclaves-cli-devel packages, or pass an existing EIF "
            "with --eif FILE"
        )


def notary_ref(build: EnclaveBuild) -> str:
    """Return the notary image reference: by version, and by digest if given."""
    ref = f"{build.notary_image}:{build.notary_version}"
    if build.notary_digest:
        ref = f"{ref}@{build.notary_digest}"
    return ref


def docker_build(
    *, tag: str, ref: str, vsock_port: int, context: Path = IMAGE_DIR
) -> None:
    """Build the enclave's container image; Docker's output goes to stderr."""
    command = [
        "docker",
        "build",
        "--build-arg",
        f"NOTARY_REF={ref}",
        "--build-arg",
        f"VSOCK_PORT={vsock_port}",
        "--tag",
        tag,
        str(context),
    ]
    log.info("building the container image %s from %s", tag, ref)
    _run(command)


def nitro_build(*, tag: str, output: Path) -> dict[str, str]:
    """Run `nitro-cli build-enclave` and return the measurements it prints."""
    command = [
        "nitro-cli",
        "build-enclave",
        "--docker-uri",
        tag,
        "--output-file",
        str(output),
    ]
    log.info("building the EIF %s from %s", output, tag)
    stdout = _run(command, capture=True)
    try:
        measurements = json.loads(stdout)["Measurements"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(
            "nitro-cli build-enclave printed no Measurements JSON; run it by hand "
            f"to see why: {' '.join(command)}"
        ) from None
    if not isinstance(measurements, dict):
        raise UserError(
            "nitro-cli build-enclave printed Measurements that are not a map"
        )
    return {str(key): str(value) for key, value in measurements.items()}


def _run(command: list[str], *, capture: bool = False) -> str:
    try:
        result = subprocess.run(
            command, check=False, text=True, stdout=subprocess.PIPE if capture else None
        )
    except FileNotFoundError:
        raise UserError(f"{command[0]} not found on PATH") from None
    if result.returncode != 0:
        raise UserError(
            f"{' '.join(command[:2])} failed with exit status {result.returncode}; "
            "its output above says why"
        )
    return result.stdout or ""


def compare_measurements(nitro: dict[str, str], info: EifInfo) -> None:
    """Raise UserError when nitro-cli's PCRs differ from the computed ones."""
    computed = info.measurements()
    for key in PCR_KEYS:
        expected = nitro.get(key)
        actual = computed.get(key)
        if expected is None and actual is None:
            continue
        if expected is None or actual is None or expected.lower() != actual:
            raise UserError(
                f"{key} differs for {info.path}: nitro-cli printed {expected}, the "
                f"file measures {actual}; keep this EIF out of a release and "
                "report the difference"
            )


def write_measurements(info: EifInfo, path: Path) -> Path:
    """Write the measurements JSON: nitro-cli's shape plus size and sha256."""
    document = {
        "Measurements": info.measurements(),
        "sha256": info.sha256,
        "size": info.size,
    }
    _write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        # mkstemp creates the file as 0600; measurements are not secret.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_enclave(
    config: Config,
    *,
    output_dir: Path = DEFAULT_OUTPUT,
    eif: Path | None = None,
    tag: str = DEFAULT_TAG,
) -> BuildResult:
    """Build the notary EIF, or take an existing one, into `output_dir`.

    With `eif`, inspect that file and copy it; otherwise run Docker and
    nitro-cli, which must both be on PATH. A target of aws rejects the
    sample EIF. The EIF appears in `output_dir` only after its PCRs check out.
    """
    if eif is None:
        require_tools()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / EIF_NAME
    if eif is not None:
        info = inspect_eif(Path(eif))
        require_real_eif(info, config.target)
        if Path(eif).resolve() != target.resolve():
            _copy_atomic(Path(eif), target)
    else:
        info = _build_with_tools(config, target=target, tag=tag)
    info = dataclasses.replace(info, path=target)
    measurements = write_measurements(info, output_dir / MEASUREMENTS_NAME)
    log.debug("wrote %s and %s (PCR0 %s)", target, measurements, info.pcr0)
    return BuildResult(eif=target, measurements=measurements, info=info)


def _build_with_tools(config: Config, *, target: Path, tag: str) -> EifInfo:
    # NOTE: tested only with stand-in docker and nitro-cli scripts, never yet
    # run with the real tools on Amazon Linux 2023.
    docker_build(
        tag=tag,
        ref=notary_ref(config.enclave.build),
        vsock_port=config.enclave.vsock_port,
    )
    partial = target.with_name(f".{target.name}.building")
    try:
        nitro = nitro_build(tag=tag, output=partial)
        info = inspect_eif(partial)
        compare_measurements(nitro, info)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return info


def _copy_atomic(source: Path, target: Path) -> None:
    partial = target.with_name(f".{target.name}.copying")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def require_real_eif(info: EifInfo, target: str) -> None:
    """Raise UserError when the sample EIF is meant for real AWS.

    The sample's kernel and ramdisks are filler, so it does not boot on
    Nitro; it serves only `target: local` rehearsals.
    """
    if target == "aws" and info.sample:
        raise UserError(
            f"{info.path} is the sample EIF, which does not boot on Nitro: build "
            "the notary EIF with invoke enclave.build on an Amazon Linux 2023 "
            "host and set enclave.eif to it, or use target: local"
        )


def manifest_for_eif(
    eif: Path, *, version: str, git_commit: str, info: EifInfo | None = None
) -> ReleaseManifest:
    """Inspect `eif` and return the release manifest that describes it.

    Pass `info` from an earlier inspect_eif of the same file to skip a
    second read.

    build_time is the BuildTime that nitro-cli records in the EIF's metadata,
    and the sample carries a fixed one. Without it, build_time is the file's
    modification time in UTC, so re-running on the same file gives the same
    manifest.
    """
    if info is None:
        info = inspect_eif(Path(eif))
    build_time = info.build_time or _modification_time(Path(eif))
    return ReleaseManifest(
        version=version,
        git_commit=git_commit,
        eif_sha256=info.sha256,
        pcr0=info.pcr0,
        pcr1=info.pcr1,
        pcr2=info.pcr2,
        build_time=build_time,
        sample=info.sample,
        pcr8=info.pcr8,
    )


def _modification_time(path: Path) -> str:
    stamp = datetime.fromtimestamp(int(path.stat().st_mtime), tz=UTC)
    return stamp.isoformat().replace("+00:00", "Z")
