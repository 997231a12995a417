"""The whole pipeline in order: bake, copy, roll out every region, report.

Each stage calls the same library functions as its task and returns a
StageReport, so `invoke demo` prints what it created and how long each stage
took, and a re-run reports that nothing changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infra import copy as image_copy
from infra.aws import Aws
from infra.bake import BakeOptions, bake
from infra.config import Config
from infra.errors import UserError
from infra.releases import resolve_release
from infra.rollout import RegionResult, rollout_region
from infra.rollout.fleet import region_order, run_regions

log = logging.getLogger(__name__)


@dataclass
class StageReport:
    """The outcome of one stage: changes and failures in words, and wall time."""

    name: str
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class DemoFailed(UserError):
    """A failed stage. The message names the stage and what to run next."""


def _timed(report: StageReport, work: Callable[[], None]) -> StageReport:
    started = time.monotonic()
    try:
        work()
    finally:
        report.seconds = time.monotonic() - started
    return report


def bake_stage(
    config: Config, aws: Aws, *, options: BakeOptions
) -> tuple[str, StageReport]:
    """Bake the config's release, or reuse its AMI, and return the release id."""
    report = StageReport("bake")
    release: list[str] = []

    def work() -> None:
        result = bake(config, aws, options=options)
        release.append(result.release_id)
        if not result.reused:
            report.changes.append(
                f"AMI {result.image_id} of {result.release_id} in {result.region}"
            )

    _timed(report, work)
    return release[0], report


def copy_stage(config: Config, aws: Aws, *, release_id: str) -> StageReport:
    """Copy the release's AMI to every region and verify each copy."""
    report = StageReport("copy")

    def work() -> None:
        source = image_copy.describe_source(aws, resolve_release(aws, release_id))
        settings = image_copy.CopySettings(
            timeout=config.copy_.timeout_seconds,
            interval=config.copy_.poll_seconds,
            deprecate_after_days=config.deprecate_after_days,
        )
        results = image_copy.copy_release(
            aws,
            source=source,
            regions=config.region_names,
            settings=settings,
            concurrency=config.copy_.concurrency,
        )
        for result in results:
            if result.error:
                report.failures.append(f"{result.region}: {result.error}")
            elif result.copied:
                report.changes.append(f"AMI {result.image_id} in {result.region}")
        checks = image_copy.verify_release(
            aws, source=source, regions=config.region_names
        )
        for check in checks:
            if not check.ok:
                report.failures.append(f"{check.region}: {'; '.join(check.problems)}")

    return _timed(report, work)


def rollout_stage(
    config: Config,
    aws: Aws,
    *,
    release_id: str,
    rollout: Callable[[str], RegionResult] | None = None,
) -> StageReport:
    """Roll the release out to every region, the default region first."""
    report = StageReport("rollout")

    def one_region(region: str) -> RegionResult:
        return rollout_region(aws, config, region, release_id=release_id)

    def work() -> None:
        regions = region_order(config, config.region_names, default_first=True)
        results = run_regions(
            regions,
            rollout or one_region,
            concurrency=config.rollout.concurrency,
            canary=config.default_region.name,
        )
        for result in results:
            if result.outcome == "failed":
                report.failures.append(f"{result.region}: {result.message}")
                continue
            for entry in result.plan.changes:
                report.changes.append(
                    f"{entry.action} {entry.resource} {entry.name} in {result.region}"
                )

    return _timed(report, work)


def run_demo(
    config: Config,
    aws: Aws,
    *,
    options: BakeOptions | None = None,
    on_stage: Callable[[StageReport], None] | None = None,
) -> list[StageReport]:
    """Run bake, copy and rollout in order, and stop at the first failed stage."""
    reports: list[StageReport] = []

    def finish(report: StageReport) -> None:
        reports.append(report)
        if on_stage:
            on_stage(report)
        if report.failures:
            raise DemoFailed(
                f"{report.name} failed in {len(report.failures)} place(s): "
                f"{report.failures[0]}; fix it and run invoke demo again, which "
                "completes only what is missing"
            )

    release_id, baked = bake_stage(config, aws, options=options or BakeOptions())
    finish(baked)
    finish(copy_stage(config, aws, release_id=release_id))
    finish(rollout_stage(config, aws, release_id=release_id))
    return reports
