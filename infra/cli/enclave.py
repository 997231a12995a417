"""Tasks for the enclave stage: build, describe and sample EIFs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enclave.build import DEFAULT_OUTPUT, EIF_NAME, build_enclave
from enclave.eif import inspect_eif, summary_rows
from enclave.eif_writer import write_sample_eif
from infra.cli import CONFIG_HELP, notary_task, open_config, print_json
from infra.errors import UserError

SAMPLE_OUTPUT = DEFAULT_OUTPUT / "sample.eif"


@notary_task(
    help={
        "config": CONFIG_HELP,
        "eif": "existing EIF to take instead of building with Docker and "
        "nitro-cli (default: build)",
        "output": f"build folder for the EIF and measurements.json (default "
        f"{DEFAULT_OUTPUT})",
    }
)
def build(context: Any, config: str = "", eif: str = "", output: str = "") -> None:
    """Build the notary EIF and check nitro-cli's PCRs against our own."""
    loaded = open_config(config)
    result = build_enclave(
        loaded,
        output_dir=Path(output) if output else DEFAULT_OUTPUT,
        eif=Path(eif) if eif else None,
    )
    print(f"EIF {result.eif}, measurements {result.measurements}")
    print(f"PCR0 {result.info.pcr0}")


@notary_task(
    help={
        "eif": f"EIF file to inspect (default {DEFAULT_OUTPUT / EIF_NAME})",
        "json": "print JSON with PCRs, sizes and sha256 instead of a summary "
        "(default off)",
    }
)
def describe(context: Any, eif: str = "", json: bool = False) -> None:
    """Print an EIF's PCRs, sections and sizes without nitro-cli."""
    info = inspect_eif(Path(eif) if eif else DEFAULT_OUTPUT / EIF_NAME)
    if json:
        print_json(info.to_dict())
        return
    width = max(len(label) for label, _ in summary_rows(info))
    for label, value in summary_rows(info):
        print(f"{label:<{width}}  {value}")


@notary_task(
    help={
        "config": CONFIG_HELP + "; gives the release version",
        "output": f"file to write (default {SAMPLE_OUTPUT})",
        "release_version": "release version to record in the sample's metadata "
        "(default: version from the config)",
    }
)
def sample(
    context: Any, config: str = "", output: str = "", release_version: str = ""
) -> None:
    """Write the small sample EIF for local rehearsals; it does not boot on Nitro."""
    version = release_version or open_config(config).version
    path = Path(output) if output else SAMPLE_OUTPUT
    if path.is_dir():
        raise UserError(
            f"--output {path} is a directory: name a file such as {path / 'sample.eif'}"
        )
    path = write_sample_eif(path, version=version)
    info = inspect_eif(path)
    print(f"wrote sample EIF {path} ({info.size} bytes), PCR0 {info.pcr0}")


# The tasks this module adds to the command line.
TASKS: list[Any] = [build, describe, sample]
