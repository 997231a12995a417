"""The main job: bake, copy and roll out every region, then report."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from infra.bake import BakeOptions, require_root_for
from infra.cli import CONFIG_HELP, connect, console, notary_task, open_config
from infra.cli.health import health
from infra.cli.rollout import status
from infra.demo import StageReport, run_demo


def print_stage(report: StageReport) -> None:
    if report.changed:
        console.print(
            f"{report.name}: {len(report.changes)} changes in {report.seconds:.1f} s"
        )
        for change in report.changes:
            console.print(f"  {change}", markup=False, highlight=False)
    else:
        console.print(f"{report.name}: nothing to change ({report.seconds:.1f} s)")


def summary_table(reports: list[StageReport]) -> Table:
    table = Table(title="summary")
    table.add_column("stage")
    table.add_column("changes", justify="right")
    table.add_column("seconds", justify="right")
    for report in reports:
        table.add_row(report.name, str(len(report.changes)), f"{report.seconds:.1f}")
    table.add_row("total", "", f"{sum(report.seconds for report in reports):.1f}")
    return table


@notary_task(
    help={
        "config": CONFIG_HELP,
        "force": "bake the release again even if its AMI exists (default off)",
    }
)
def demo(context: Any, config: str = "", force: bool = False) -> None:
    """Bake, copy and roll out the release everywhere, then show status and health."""
    loaded = open_config(config)
    require_root_for(loaded)
    aws = connect(loaded)
    reports = run_demo(
        loaded, aws, options=BakeOptions(force=force), on_stage=print_stage
    )
    status(context, config=config)
    console.print(summary_table(reports))
    if not any(report.changed for report in reports):
        console.print("nothing to change: every region already runs this release")
    health(context, all_=True, config=config)


TASKS: list[Any] = [demo]
