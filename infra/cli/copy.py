"""Tasks for the copy stage: copy a release's AMI to regions, prune old ones."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from infra import copy as image_copy
from infra import prune as image_prune
from infra.cli import (
    CONFIG_HELP,
    connect,
    console,
    make_console,
    notary_task,
    open_config,
    print_json,
)
from infra.config import Config
from infra.errors import UserError
from infra.plan import Action, Plan
from infra.releases import resolve_release


def _regions(config: Config, names: list[str] | None) -> list[str]:
    """Return the named regions, checked against the config, or all of them."""
    if not names:
        return config.region_names
    return [config.region(name).name for name in names]


class RegionProgress:
    """A rich progress bar per region, fed by the copy library's callback."""

    def __init__(self, progress: Progress, regions: list[str]) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {
            region: progress.add_task(region, total=100.0, status="queued")
            for region in regions
        }

    def __call__(self, region: str, status: str, percent: float | None) -> None:
        update: dict[str, Any] = {"status": status}
        if percent is not None:
            update["completed"] = percent
        self._progress.update(self._tasks[region], **update)


@notary_task(
    help={
        "config": CONFIG_HELP,
        "release": "release id to copy (default: the newest AMI of the config's "
        "version in the default region)",
        "region": "destination region, repeatable (default: every region)",
        "concurrency": "regions copied at once (default copy.concurrency, 4)",
        "timeout": "seconds to wait for each copy (default copy.timeout_seconds, "
        "14400)",
        "json": "print the region to AMI id mapping as JSON (default off)",
    },
    iterable=["region"],
)
def copy(
    context: Any,
    config: str = "",
    release: str = "",
    region: list[str] | None = None,
    concurrency: int = 0,
    timeout: int = 0,
    json: bool = False,
) -> None:
    """Copy a release's AMI to every region and verify the copies."""
    loaded = open_config(config)
    regions = _regions(loaded, region)
    if concurrency < 0 or timeout < 0:
        raise UserError(
            f"invalid --concurrency {concurrency} or --timeout {timeout}: use "
            "positive numbers, or omit them for the config's values"
        )

    aws = connect(loaded)
    source = image_copy.describe_source(aws, resolve_release(aws, release or None))
    settings = image_copy.CopySettings(
        timeout=timeout or loaded.copy_.timeout_seconds,
        interval=loaded.copy_.poll_seconds,
        deprecate_after_days=loaded.deprecate_after_days,
    )

    console.print(
        f"copying {source.release_id} ({source.image_id}) to {len(regions)} regions"
    )
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% {task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=json) as bar:
        results = image_copy.copy_release(
            aws,
            source=source,
            regions=regions,
            settings=settings,
            concurrency=concurrency or loaded.copy_.concurrency,
            progress=RegionProgress(bar, regions),
        )

    checks = image_copy.verify_release(aws, source=source, regions=regions)
    _print_copies(results, checks, json=json)
    failed = [result.region for result in results if not result.ok]
    failed += [
        check.region for check in checks if not check.ok and check.region not in failed
    ]
    if failed:
        raise UserError(
            f"copy of {source.release_id} incomplete in {', '.join(failed)}: fix the "
            "errors above and re-run invoke copy, which completes only what is missing"
        )


def _print_copies(
    results: list[image_copy.CopyResult],
    checks: list[image_copy.Verification],
    *,
    json: bool,
) -> None:
    if json:
        print_json({check.region: check.image_id for check in checks if check.ok})
        return
    errors = {result.region: result.error for result in results}
    table = Table("region", "AMI id", "status")
    for check in checks:
        status = errors.get(check.region) or "; ".join(check.problems) or "verified"
        table.add_row(check.region, check.image_id or "-", status)
    make_console(stderr=False).print(table)


@notary_task(
    help={
        "config": CONFIG_HELP,
        "keep": "newest releases to keep per region (default 2)",
        "dry_run": "print what would be removed and change nothing (default off)",
        "region": "region to prune, repeatable (default: every region)",
    },
    iterable=["region"],
)
def prune(
    context: Any,
    config: str = "",
    keep: int = 2,
    dry_run: bool = False,
    region: list[str] | None = None,
) -> None:
    """Deregister AMIs of old releases that nothing uses, and their snapshots."""
    loaded = open_config(config)
    regions = _regions(loaded, region)
    if keep < 1:
        raise UserError(f"--keep {keep} would remove every release: use 1 or more")
    aws = connect(loaded)
    plan = Plan()
    for name in regions:
        plan.extend(image_prune.plan_region(aws, name, keep=keep))
    _print_plan(plan, dry_run=dry_run)
    if not dry_run:
        image_prune.apply_plan(aws, plan)
        console.print(f"removed {len(plan.changes)} AMIs and snapshots")


def _print_plan(plan: Plan, *, dry_run: bool) -> None:
    if not plan.entries:
        console.print("nothing to prune")
        return
    verb = "would " if dry_run else ""
    table = Table("region", "resource", "id", "action", "detail")
    for entry in plan.entries:
        action = f"{verb}delete" if entry.action is Action.DELETE else "keep"
        table.add_row(entry.region, entry.resource, entry.name, action, entry.detail)
    make_console(stderr=False).print(table)


# The tasks this module adds to the command line.
TASKS: list[Any] = [copy, prune]
