"""Tasks that check the config and manage the local emulator."""

from __future__ import annotations

from typing import Any

from invoke import Exit

from infra import emulator
from infra.cli import CONFIG_HELP, console, notary_task, open_config


@notary_task(help={"config": CONFIG_HELP})
def validate(context: Any, config: str = "") -> None:
    """Check the deployment config without calling AWS."""
    loaded = open_config(config)
    regions = ", ".join(loaded.region_names)
    console.print(
        f"config valid: {len(loaded.regions)} regions ({regions}), default "
        f"{loaded.default_region.name}, target {loaded.target}"
    )


@notary_task(help={"port": "loopback port to listen on (default: a free one)"})
def start(context: Any, port: int = 0) -> None:
    """Start the local AWS emulator, or report the one running."""
    running = emulator.start(port=port or None)
    print(running.endpoint_url)


@notary_task()
def stop(context: Any) -> None:
    """Stop the local AWS emulator."""
    if emulator.stop():
        console.print("emulator stopped")
    else:
        console.print("emulator was not running")


@notary_task()
def status(context: Any) -> None:
    """Print the emulator's endpoint URL; exit 1 when it is not running."""
    running = emulator.status()
    if running is None:
        raise Exit("emulator not running: start it with invoke emulator.start", code=1)
    print(running.endpoint_url)
