"""Run Packer as a subprocess and parse its `-machine-readable` output.

Packer (1.6.6 here) prints `timestamp,target,type,data...` per line with
commas inside data written as `%!(PACKER_COMMA)` and newlines as `\\n`. That
output does not scrub sensitive variables, so this module never logs a raw
line: it logs the unescaped UI text with every known secret replaced.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import UserError

log = logging.getLogger(__name__)

COMMA = "%!(PACKER_COMMA)"
REDACTED = "<redacted>"
# Provisioning scripts announce each step with this prefix and report a known
# failure on a line that starts with "error: ".
STEP_MARKER = "notary-step: "
SCRIPT_ERROR = "error: "
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BUILDER_PREFIX = re.compile(r"^(?:==> |    )?[\w.-]+: ")


@dataclass(frozen=True)
class MachineLine:
    """One parsed line of `-machine-readable` output, data fields unescaped."""

    timestamp: int
    target: str
    type: str
    data: tuple[str, ...]


@dataclass(frozen=True)
class Artifact:
    """The output of one build. For amazon-ebs `id` is `region:ami-...`, with
    several regions joined by commas."""

    builder: str
    index: int
    id: str = ""
    builder_id: str = ""
    description: str = ""

    @property
    def image_ids(self) -> dict[str, str]:
        """Return the AMI ids of an amazon-ebs artifact by region."""
        images: dict[str, str] = {}
        for part in self.id.split(","):
            region, sep, image_id = part.partition(":")
            if sep and image_id.startswith("ami-"):
                images[region] = image_id
        return images


@dataclass
class BuildResult:
    """Artifacts, errors and the last provisioning step of one Packer run."""

    returncode: int = 0
    artifacts: list[Artifact] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    ui_errors: list[str] = field(default_factory=list)
    step: str = ""
    other_output: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.errors


class PackerError(UserError):
    """A failed Packer run: the message names Packer's error and the step."""

    def __init__(self, message: str, *, result: BuildResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def unescape(text: str) -> str:
    """Undo Packer's escaping of commas and newlines in one data field."""
    return text.replace(COMMA, ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(line: str) -> MachineLine | None:
    """Parse one machine-readable line, or return None for any other text."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return MachineLine(
        timestamp=int(parts[0]),
        target=parts[1],
        type=parts[2],
        data=tuple(unescape(part) for part in parts[3:]),
    )


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every non-empty secret in `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def find_packer(executable: str | None = None) -> str:
    """Return the path of the Packer binary, or raise UserError."""
    name = executable or os.environ.get("PACKER", "packer")
    path = shutil.which(name)
    if path is None:
        raise UserError(
            f"packer not found (looked for {name!r} on PATH): install Packer "
            "1.6.6 or newer, or set PACKER to its path"
        )
    return path


class _Collector:
    """Fold machine-readable lines into a BuildResult and report UI text."""

    def __init__(self, on_progress: Callable[[str], None], secrets: Sequence[str]):
        self.result = BuildResult()
        self.on_progress = on_progress
        self.secrets = secrets
        self._artifacts: dict[tuple[str, int], dict[str, str]] = {}

    def feed(self, raw: str) -> None:
        line = parse_line(_ANSI.sub("", raw))
        if line is None:
            text = redact(_ANSI.sub("", raw).rstrip(), self.secrets)
            if text:
                self.result.other_output.append(text)
                self.on_progress(text)
            return
        if line.type == "ui" and len(line.data) >= 2:
            for text in line.data[1].splitlines():
                self._ui(redact(text, self.secrets))
                if line.data[0] == "error" and text.strip():
                    self.result.ui_errors.append(redact(text, self.secrets))
        elif line.type == "artifact" and len(line.data) >= 3:
            self._artifact(line)
        elif line.type == "error" and line.data:
            self.result.errors.append(redact(line.data[0], self.secrets))

    def _ui(self, text: str) -> None:
        if not text.strip():
            return
        self.on_progress(text)
        body = _BUILDER_PREFIX.sub("", text, count=1).strip()
        if body.startswith(STEP_MARKER):
            self.result.step = body.removeprefix(STEP_MARKER).split()[0]
        elif body.startswith(SCRIPT_ERROR):
            self.result.script_errors.append(body.removeprefix(SCRIPT_ERROR))

    def _artifact(self, line: MachineLine) -> None:
        try:
            index = int(line.data[0])
        except ValueError:
            return
        key, value = line.data[1], ",".join(line.data[2:])
        self._artifacts.setdefault((line.target, index), {})[key] = value

    def finish(self, returncode: int) -> BuildResult:
        self.result.returncode = returncode
        for (builder, index), values in sorted(self._artifacts.items()):
            if values.get("end") is None and not values.get("id"):
                continue
            self.result.artifacts.append(
                Artifact(
                    builder=builder,
                    index=index,
                    id=values.get("id", ""),
                    builder_id=values.get("builder-id", ""),
                    description=values.get("string", ""),
                )
            )
        return self.result


def _variable_arguments(variables: Mapping[str, str]) -> list[str]:
    arguments: list[str] = []
    for name, value in sorted(variables.items()):
        arguments += ["-var", f"{name}={value}"]
    return arguments


def run(
    command: str,
    template: Path,
    *,
    only: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    on_progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
    packer: str | None = None,
) -> BuildResult:
    """Run `packer COMMAND -machine-readable` on `template` and parse it.

    `command` is "build" or "validate". Progress lines go to `on_progress`
    (default: the log at INFO) with `secrets` replaced. Raises PackerError
    when Packer fails, naming its error line and the failing step.
    """
    executable = find_packer(packer)
    arguments = [executable, command, "-machine-readable"]
    if command == "build":
        arguments.append("-color=false")
    if only:
        arguments.append("-only=" + ",".join(only))
    arguments += _variable_arguments(variables or {})
    arguments.append(str(template))
    collector = _Collector(on_progress or _log_progress, secrets)
    log.debug("Running packer %s on %s (only %s)", command, template, list(only))
    with subprocess.Popen(
        arguments,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=template.parent,
    ) as process:
        assert process.stdout is not None  # stdout=PIPE guarantees it
        try:
            _read_output(process, collector, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise PackerError(
                f"packer {command} timed out after {timeout:.0f} s in step "
                f"{collector.result.step or 'unknown'}: raise the timeout or "
                "check the build's progress lines"
            ) from None
    result = collector.finish(process.returncode)
    if not result.ok:
        raise PackerError(failure_message(command, result), result=result)
    return result


def _read_output(
    process: subprocess.Popen[str], collector: _Collector, timeout: float | None
) -> None:
    # A timer kills Packer at the deadline, which also ends the blocking read.
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    if timer is not None:
        timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            collector.feed(raw)
        process.wait()
    finally:
        if timer is not None:
            timer.cancel()
    if timed_out.is_set():
        raise subprocess.TimeoutExpired(process.args, timeout or 0)


def failure_message(command: str, result: BuildResult) -> str:
    """Return one line naming Packer's error and the failing step."""
    if result.script_errors:
        cause = result.script_errors[-1]
    elif result.errors:
        cause = result.errors[-1]
    elif result.ui_errors:
        cause = result.ui_errors[0]
    elif result.other_output:
        cause = result.other_output[-1]
    else:
        cause = f"exit status {result.returncode}"
    cause = " ".join(cause.split())
    where = f" in step {result.step}" if result.step else ""
    return f"packer {command} failed{where}: {cause}"


def _log_progress(text: str) -> None:
    log.info("packer: %s", text)
