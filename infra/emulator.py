"""The local AWS emulator: moto in server mode on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.config import REPO_ROOT
from infra.errors import UserError

log = logging.getLogger(__name__)

# NOTARY_STATE_DIR moves the state folder, which tests use to keep their own
# emulator apart from the user's.
STATE_DIR = Path(os.environ.get("NOTARY_STATE_DIR") or REPO_ROOT / ".state")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Emulator:
    pid: int
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _state_file(state_dir: Path) -> Path:
    return state_dir / "emulator.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(port: int) -> bool:
    """Tell whether the server responds to HTTP on `port`.

    The dashboard page is small and fixed; /moto-api/data.json is not a
    readiness check because it serialises the emulator's whole state, which
    grows to tens of megabytes after a rollout.
    """
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _recorded(state_dir: Path) -> Emulator | None:
    try:
        record = json.loads(_state_file(state_dir).read_text())
        emulator = Emulator(pid=int(record["pid"]), port=int(record["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # Signals to pid 0 or -1 reach a whole process group or every process.
    return emulator if emulator.pid > 1 else None


def _is_emulator(pid: int) -> bool:
    """Tell whether `pid` is a live moto server, not a process that reused
    the pid after the emulator ended."""
    if not _alive(pid):
        return False
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"moto.server" in command_line


def status(state_dir: Path = STATE_DIR, *, wait: float = 20.0) -> Emulator | None:
    """Return the running emulator recorded in `state_dir`, or None.

    A live server that is slow to respond, as on a loaded machine, gets `wait`
    seconds before it counts as not running.
    """
    emulator = _recorded(state_dir)
    if emulator is None or not _is_emulator(emulator.pid):
        return None
    deadline = time.monotonic() + wait
    while not _answers(emulator.port):
        if time.monotonic() > deadline or not _is_emulator(emulator.pid):
            return None
        time.sleep(0.2)
    return emulator


def start(
    state_dir: Path = STATE_DIR,
    *,
    port: int | None = None,
    timeout: float = 30.0,
    wait: float = 20.0,
) -> Emulator:
    """Start the emulator unless it already runs; return it.

    The server outlives this process so that state survives from one task to
    the next; `stop` ends it.
    """
    recorded = _recorded(state_dir)
    if recorded and _is_emulator(recorded.pid):
        if status(state_dir, wait=wait):
            return recorded
        # Starting a second server would orphan the first and split the state.
        raise UserError(
            f"the emulator (pid {recorded.pid}) runs but does not respond on port "
            f"{recorded.port}: run invoke emulator.stop, then try again"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    environment = {
        **os.environ,
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    log_file = (state_dir / "emulator.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=environment,
        start_new_session=True,
    )
    log_file.close()
    emulator = Emulator(pid=process.pid, port=port)
    deadline = time.monotonic() + timeout
    while not _answers(port):
        if process.poll() is not None:
            raise UserError(
                f"the emulator exited with status {process.returncode}: see "
                f"{state_dir / 'emulator.log'}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise UserError(
                f"the emulator did not respond on port {port} within {timeout:.0f} s: "
                f"see {state_dir / 'emulator.log'}"
            )
        time.sleep(0.1)
    _state_file(state_dir).write_text(json.dumps({"pid": emulator.pid, "port": port}))
    log.info("Emulator started at %s (pid %d)", emulator.endpoint_url, emulator.pid)
    return emulator


def stop(state_dir: Path = STATE_DIR, *, timeout: float = 10.0) -> bool:
    """Stop the recorded emulator; return False when none was running.

    Only a live moto server is signalled: a recorded pid that now belongs to
    another process, after the emulator ended, is left alone.
    """
    recorded = _recorded(state_dir)
    _state_file(state_dir).unlink(missing_ok=True)
    if recorded is None or not _is_emulator(recorded.pid):
        if recorded is not None and _alive(recorded.pid):
            log.warning(
                "Left pid %d alone: it is not the emulator; removed the stale record",
                recorded.pid,
            )
        return False
    pid = recorded.pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_emulator(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _is_emulator(pid):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)
    log.info("Emulator stopped (pid %d)", pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status of a stopped emulator that is our own child, so
    it leaves no zombie behind. A live server or another's child is left alone.
    """
    if _is_emulator(pid):
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def require_running(state_dir: Path = STATE_DIR) -> Emulator:
    """Return the running emulator, starting it on demand."""
    return status(state_dir) or start(state_dir)
