"""Benchmark the local bake: cold (no base root cache) and warm wall times,
and the size of the compressed root filesystem archive.

Needs root. Starts its own emulator in a temporary folder and stops it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import yaml

from infra import bake, emulator
from infra.aws import Aws
from infra.config import REPO_ROOT, parse_config

WARM_GOAL_SECONDS = 60.0


def _timed_bake(aws: Aws, options: bake.BakeOptions) -> tuple[float, bake.BakeResult]:
    start = time.monotonic()
    result = bake.bake(aws.config, aws, options=options)
    return time.monotonic() - start, result


def run() -> str:
    if os.geteuid() != 0:
        return "Not measured: the local bake needs root for chroot and mmdebstrap."
    logging.basicConfig(level=logging.WARNING)
    config = parse_config(yaml.safe_load((REPO_ROOT / "deploy.yaml").read_text()))
    with tempfile.TemporaryDirectory(prefix="bench-bake-") as scratch:
        work = Path(scratch)
        server = emulator.start(work / "emulator")
        try:
            aws = Aws(config, endpoint_url=server.endpoint_url)
            cold_options = bake.BakeOptions(
                build_dir=work / "cold", cache_dir=work / "cache"
            )
            cold, _ = _timed_bake(aws, cold_options)
            # The warm bake rebuilds the same release with --force, so it runs
            # every step again but reuses the cached base root.
            warm_options = bake.BakeOptions(
                force=True, build_dir=work / "warm", cache_dir=work / "cache"
            )
            warm, result = _timed_bake(aws, warm_options)
        finally:
            emulator.stop(work / "emulator")
    size_mib = (result.archive_bytes or 0) / 2**20
    verdict = "meets" if warm < WARM_GOAL_SECONDS else "misses"
    return f"""## Bake (local target)

`python -m benchmarks bake`: `infra.bake.bake` with the example deploy.yaml
and the sample EIF against a fresh emulator, one run each. Cold builds the
Debian bookworm base root with mmdebstrap from the machine's apt mirror, so
its time depends on that mirror. Warm rebuilds the same release with --force
and reuses the cached base root.

| measure | value |
|---|---|
| cold bake (mmdebstrap, provision, testinfra, archive, register) | {cold:.1f} s |
| warm bake (cached base root) | {warm:.1f} s |
| compressed root filesystem archive (tar + zstd) | {size_mib:.1f} MiB |

The warm bake {verdict} the goal of {WARM_GOAL_SECONDS:.0f} s.
"""
