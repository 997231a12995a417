"""Roll out several regions at once with bounded concurrency."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from infra.config import Config
from infra.errors import UserError
from infra.rollout import RegionResult

log = logging.getLogger(__name__)


def region_order(
    config: Config, regions: list[str], *, default_first: bool
) -> list[str]:
    """Return `regions` in config order, the default region first if asked."""
    ordered = [name for name in config.region_names if name in regions]
    default = config.default_region.name
    if default_first and default in ordered:
        ordered.remove(default)
        ordered.insert(0, default)
    return ordered


def run_regions(
    regions: list[str],
    run: Callable[[str], RegionResult],
    *,
    concurrency: int,
    halt_on_failure: bool = False,
    canary: str | None = None,
) -> list[RegionResult]:
    """Run `run` for each region, at most `concurrency` at a time.

    A region that raises UserError is reported as failed and the others go on,
    unless `halt_on_failure`, which starts no further region. `canary` runs
    alone before the rest, so its failure is seen before the others change.
    """
    results: dict[str, RegionResult] = {}
    halted = threading.Event()

    def run_one(region: str) -> RegionResult:
        if halted.is_set():
            return RegionResult(region, "", outcome="skipped", message="halted")
        try:
            return run(region)
        except UserError as error:
            log.error("%s failed: %s", region, error)
            if halt_on_failure:
                halted.set()
            return RegionResult(region, "", outcome="failed", message=str(error))

    rest = list(regions)
    if canary in rest:
        rest.remove(canary)
        results[canary] = run_one(canary)
    with ThreadPoolExecutor(max_workers=max(concurrency, 1)) as pool:
        futures: dict[str, Future[RegionResult]] = {
            region: pool.submit(run_one, region) for region in rest
        }
        for region, future in futures.items():
            results[region] = future.result()
    return [results[region] for region in regions]
