"""Tasks for the rollout stage: rollout, rollback, status and destroy."""

from __future__ import annotations

from typing import Any

from invoke import Exit
from rich.table import Table

from infra.cli import (
    CONFIG_HELP,
    connect,
    console,
    make_console,
    notary_task,
    open_config,
    print_json,
)
from infra.errors import UserError
from infra.plan import Plan
from infra.rollout import RegionResult, rollback_region, rollout_region
from infra.rollout.destroy import destroy_region
from infra.rollout.fleet import region_order, run_regions
from infra.rollout.status import RegionStatus, region_status


def print_plan(plan: Plan, *, title: str) -> None:
    table = Table(title=title)
    for column in ("region", "action", "resource", "name", "detail"):
        table.add_column(column)
    for entry in plan.entries:
        table.add_row(
            entry.region, str(entry.action), entry.resource, entry.name, entry.detail
        )
    console.print(table)


def print_results(results: list[RegionResult], *, dry_run: bool) -> None:
    for result in results:
        if dry_run or result.outcome == "applied":
            print_plan(result.plan, title=f"{result.region}: {result.message}")
        console.print(f"{result.region}: {result.outcome}: {result.message}")
    failed = [result.region for result in results if result.outcome == "failed"]
    if failed:
        raise Exit(f"error: rollout failed in {', '.join(failed)}", code=1)


@notary_task(
    iterable=["region"],
    help={
        "region": "region to roll out; repeat for several (default: none)",
        "all": "roll out every region in the config (default off)",
        "release": "release id to put live (default: newest of the config version)",
        "dry_run": "print the plan without any write call (default off)",
        "force": "break a stale or held deployment lock (default off)",
        "halt_on_failure": "start no further region after one fails (default off)",
        "concurrency": "regions rolled out at once (default: rollout.concurrency)",
        "canary": "finish the default region before the others (default on)",
        "config": CONFIG_HELP,
    },
)
def rollout(
    context: Any,
    region: list[str],
    all: bool = False,
    release: str = "",
    dry_run: bool = False,
    force: bool = False,
    halt_on_failure: bool = False,
    concurrency: int = 0,
    canary: bool = True,
    config: str = "",
) -> None:
    """Put a release live in regions with red/black Auto Scaling groups."""
    if all and region:
        raise UserError("pass --region or --all, not both")
    loaded = open_config(config)
    if all:
        region = loaded.region_names
    if not region:
        raise UserError("no region given: pass --region NAME (repeatable) or --all")
    for name in region:
        loaded.region(name)
    aws = connect(loaded)
    ordered = region_order(loaded, region, default_first=canary)
    results = run_regions(
        ordered,
        lambda name: rollout_region(
            aws,
            loaded,
            name,
            release_id=release or None,
            dry_run=dry_run,
            force=force,
        ),
        concurrency=concurrency or loaded.rollout.concurrency,
        halt_on_failure=halt_on_failure,
        canary=loaded.default_region.name if canary else None,
    )
    print_results(results, dry_run=dry_run)


@notary_task(
    help={
        "region": "region to roll back (required)",
        "dry_run": "print the plan without any write call (default off)",
        "force": "break a stale or held deployment lock (default off)",
        "config": CONFIG_HELP,
    }
)
def rollback(
    context: Any,
    region: str = "",
    dry_run: bool = False,
    force: bool = False,
    config: str = "",
) -> None:
    """Bring the previous release's group back into service in a region."""
    if not region:
        raise UserError("no region given: pass --region NAME")
    loaded = open_config(config)
    aws = connect(loaded)
    result = rollback_region(aws, loaded, region, dry_run=dry_run, force=force)
    print_results([result], dry_run=dry_run)


@notary_task(
    help={"json": "print JSON instead of tables (default off)", "config": CONFIG_HELP}
)
def status(context: Any, json: bool = False, config: str = "") -> None:
    """Show each region's serving releases, health, load balancer, DNS and lock."""
    loaded = open_config(config)
    aws = connect(loaded)
    statuses = [region_status(aws, loaded, name) for name in loaded.region_names]
    if json:
        print_json({"regions": [item.to_json() for item in statuses]})
        return
    print_status(statuses)


def print_status(statuses: list[RegionStatus]) -> None:
    """Print the status table and its warnings to standard output."""
    out = make_console(stderr=False)
    table = Table(title="rollout status")
    for column in ("region", "release", "ami", "asg"):
        table.add_column(column, overflow="fold")
    table.add_column("healthy")
    for column in ("dns name", "health check", "locations", "lock"):
        table.add_column(column, overflow="fold")
    for item in statuses:
        table.add_row(
            item.name,
            item.release or "-",
            item.ami or "-",
            item.asg or "-",
            f"{item.healthy}/{item.desired}",
            item.dns_name or "-",
            item.health_check or "-",
            ", ".join(item.locations) or "-",
            f"{item.lock['holder']} until {item.lock['expires']}" if item.lock else "-",
        )
    out.print(table)
    for item in statuses:
        for warning in item.warnings:
            out.print(f"warning: {warning}", markup=False, highlight=False)


@notary_task(
    help={
        "region": "region to remove (required)",
        "yes": "skip the confirmation prompt (default off)",
        "force": "break a stale or held deployment lock (default off)",
        "config": CONFIG_HELP,
    }
)
def destroy(
    context: Any,
    region: str = "",
    yes: bool = False,
    force: bool = False,
    config: str = "",
) -> None:
    """Remove a region's deployment; AMIs are left to prune."""
    if not region:
        raise UserError("no region given: pass --region NAME")
    loaded = open_config(config)
    aws = connect(loaded)
    plan = destroy_region(aws, loaded, region, dry_run=True)
    if not plan.changes:
        console.print(f"{region}: nothing to destroy")
        return
    print_plan(plan, title=f"{region}: to delete")
    if not yes:
        try:
            answer = input(f"delete {len(plan.changes)} resources in {region}? [y/N] ")
        except EOFError:
            # Standard input is closed, as in CI, so nothing is deleted.
            raise Exit(
                "destroy cancelled: standard input is closed, so pass --yes", code=1
            ) from None
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("destroy cancelled", code=1)
    done = destroy_region(aws, loaded, region, force=force)
    console.print(f"{region}: deleted {len(done.changes)} resources")


# The tasks this module adds to the command line.
TASKS: list[Any] = [rollout, rollback, status, destroy]
