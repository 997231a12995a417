"""Tasks for the health stage."""

from __future__ import annotations

from typing import Any

from invoke import Exit
from rich.table import Table

from infra.cli import (
    CONFIG_HELP,
    connect,
    make_console,
    notary_task,
    open_config,
    print_json,
)
from infra.errors import UserError
from infra.probe import RegionHealth, probe_regions


@notary_task(
    help={
        "region": "region to check; repeat for several (default: --all)",
        "all": "check every region in the config (default when no --region)",
        "json": "print JSON instead of a table (default off)",
        "timeout": "seconds to wait for each /healthcheck response (default 5)",
        "remote": "send GET /healthcheck to each load balancer's public DNS name "
        "(target aws only; default off, which sends no request)",
        "config": CONFIG_HELP,
    },
    iterable=["region"],
)
def health(
    context: Any,
    region: list[str] | None = None,
    all_: bool = False,
    json_: bool = False,
    timeout: float = 5.0,
    remote: bool = False,
    config: str = "",
) -> None:
    """Check each region from outside: load balancer, targets, Route 53."""
    if all_ and region:
        raise UserError("pass --region or --all, not both")
    loaded = open_config(config)
    if remote and loaded.target != "aws":
        raise UserError(
            f"--remote needs target: aws, and the config has target: {loaded.target}"
        )
    regions = loaded.region_names if all_ or not region else list(region)
    results = probe_regions(
        connect(loaded), loaded, regions, timeout=timeout, allow_remote=remote
    )
    if json_:
        print_json([result.to_dict() for result in results])
    else:
        output = make_console(stderr=False)
        output.print(render_table(results))
        for line in problem_lines(results):
            output.print(line, markup=False, highlight=False)
    failed = [result.region for result in results if result.verdict != "healthy"]
    if failed:
        raise Exit(f"not healthy: {', '.join(failed)}", code=1)


def render_table(results: list[RegionHealth]) -> Table:
    """Return one row per region: verdict, targets, Route 53 and /healthcheck."""
    table = Table(title="Region health")
    for column in ("region", "verdict", "load balancer", "targets", "Route 53"):
        table.add_column(column)
    table.add_column("/healthcheck")
    for result in results:
        targets = [
            f"{target.instance_id} {target.state}"
            for group in result.target_groups
            for target in group.targets
        ]
        checks = [f"{check.id[:8]} {check.status}" for check in result.health_checks]
        table.add_row(
            result.region,
            result.verdict,
            result.load_balancer or "-",
            "\n".join(targets) or "-",
            "\n".join(checks) or "-",
            result.endpoint.status,
        )
    return table


def problem_lines(results: list[RegionHealth]) -> list[str]:
    """Return one line per problem or note, prefixed with its region."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"{result.region}: {result.error}")
        lines.extend(f"{result.region}: {problem}" for problem in result.problems)
        lines.extend(f"{result.region}: note: {note}" for note in result.notes)
    return lines


# The tasks this module adds to the command line.
TASKS: list[Any] = [health]
