"""Tasks for the bake stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra import bake as bake_lib
from infra.cli import CONFIG_HELP, connect, notary_task, open_config, print_json


@notary_task(
    help={
        "config": CONFIG_HELP,
        "force": "rebuild even if this release already has an AMI; the old AMI "
        "is replaced only after the new image passed its tests (default off)",
        "eif": "EIF file to bake (default: enclave.eif from the config, or the "
        "sample EIF for target local)",
        "keep_work": "keep the staging folder and root filesystem under "
        "build/bake/ (default off)",
    }
)
def bake(
    context: Any,
    config: str | None = None,
    force: bool = False,
    eif: str | None = None,
    keep_work: bool = False,
) -> None:
    """Bake the release into an immutable machine image (AMI)."""
    deployment = open_config(config)
    # The root check comes first, before the emulator starts or any file is made.
    bake_lib.require_root_for(deployment)
    aws = connect(deployment)
    options = bake_lib.BakeOptions(
        force=force, eif=Path(eif) if eif else None, keep_work=keep_work
    )
    result = bake_lib.bake(deployment, aws, options=options)
    print_json(result.to_dict())


# The tasks this module adds to the command line.
TASKS: list[Any] = [bake]
