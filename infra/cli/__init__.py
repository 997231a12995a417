"""Shared plumbing for the Invoke tasks: logging, known failures, clients.

Each task module holds thin tasks over library functions. Decorate them with
`notary_task`, which adds `--verbose` and turns a UserError into one line on
standard error with exit status 1.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Exit, task
from invoke.exceptions import ParseError
from invoke.parser import Argument
from rich.console import Console
from rich.logging import RichHandler

from infra import emulator
from infra.aws import Aws
from infra.config import DEFAULT_CONFIG, REPO_ROOT, Config, load_config
from infra.errors import UserError

CONFIG_HELP = f"deployment config file (default {DEFAULT_CONFIG})"
# Without a terminal rich wraps at 80 columns, which cuts AMI ids and region
# names out of tables in logs and CI output; 160 fits every table here.
WIDTH_WITHOUT_TERMINAL = 160


def make_console(*, stderr: bool) -> Console:
    """Return a console that keeps tables whole when output is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else WIDTH_WITHOUT_TERMINAL
    return Console(stderr=stderr, width=width)


console = make_console(stderr=True)


def _cast_or_parse_error(set_value: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap Argument.set_value so a value of the wrong type is a ParseError.

    invoke 3.0 lets the ValueError of its int() or float() cast escape as a
    traceback; invoke prints a ParseError as one line and exits with 1.
    """

    @functools.wraps(set_value)
    def set_checked(self: Argument, value: Any, cast: bool = True) -> Any:
        try:
            return set_value(self, value, cast)
        except ValueError:
            kind = getattr(self.kind, "__name__", "value")
            raise ParseError(
                f"invalid value {value!r} for --{(self.name or '').replace('_', '-')}: "
                f"expected {'a number' if kind in ('int', 'float') else kind}"
            ) from None

    return set_checked


if not getattr(Argument.set_value, "__wrapped__", None):
    Argument.set_value = _cast_or_parse_error(Argument.set_value)  # type: ignore[method-assign]


def setup_logging(verbose: bool) -> None:
    """Send log records to standard error; quiet the AWS and HTTP libraries."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def notary_task(
    *, help: dict[str, str] | None = None, **options: Any
) -> Callable[..., Any]:
    """Declare an Invoke task with `--verbose` and one-line known failures."""

    def decorate(body: Callable[..., Any]) -> Any:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def run(context: Any, *args: Any, verbose: bool = False, **kwargs: Any) -> Any:
            setup_logging(verbose)
            try:
                return body(context, *args, **kwargs)
            except UserError as error:
                raise Exit(f"error: {error}", code=1) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None

        verbose = inspect.Parameter(
            "verbose", inspect.Parameter.KEYWORD_ONLY, default=False
        )
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), verbose]
        )
        del run.__wrapped__
        task_help = {**(help or {}), "verbose": "log debug detail (default off)"}
        return task(run, help=task_help, **options)

    return decorate


def open_config(path: str | Path | None) -> Config:
    """Load the named config, or deploy.yaml from the working folder, or else
    the one beside tasks.py, which invoke itself finds from subfolders."""
    if path:
        return load_config(Path(path))
    if DEFAULT_CONFIG.exists():
        return load_config(DEFAULT_CONFIG)
    return load_config(REPO_ROOT / DEFAULT_CONFIG)


def connect(config: Config) -> Aws:
    """Return clients for the config's target, starting the emulator if local."""
    if config.target == "local":
        return Aws(config, endpoint_url=emulator.require_running().endpoint_url)
    return Aws(config)


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
