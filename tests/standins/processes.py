"""Start and stop the processes the health and bridge tests run against.

Every helper returns a Running record with the process id; `stop` ends that
process alone, by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from healthcheck.config import HealthConfig

STANDINS = Path(__file__).resolve().parent
REPO_ROOT = STANDINS.parent.parent
NITRO_CLI = STANDINS / "nitro-cli"
SOCAT = "/usr/bin/socat"
# The image runs the service with the system Python, so the tests do too:
# it proves the service needs nothing outside the standard library.
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else None


@dataclass
class Running:
    """A process started for a test, and the loopback port it serves."""

    process: subprocess.Popen[Any]
    port: int
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(running: Running, *, timeout: float = 5.0) -> None:
    """Stop one process by its pid: SIGTERM, then SIGKILL after `timeout`."""
    process = running.process
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _read_port(
    stream: IO[str], process: subprocess.Popen[Any], description: str
) -> str:
    line = stream.readline()
    if not line:
        process.wait(timeout=5)
        raise RuntimeError(f"{description} exited with status {process.returncode}")
    return line


def make_tls_files(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed P-256 key and certificate, as the instance makes them."""
    key = directory / "key.pem"
    cert = directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    key.chmod(0o600)
    return key, cert


def start_notary(*arguments: str) -> Running:
    """Start the stand-in notary on a free loopback port."""
    process = subprocess.Popen(
        [sys.executable, str(STANDINS / "notary.py"), "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = _read_port(process.stdout, process, "stand-in notary")
    return Running(process=process, port=int(line.split()[1]))


# The options of notary-bridge.service before its addresses.
BRIDGE_UNIT_OPTIONS = ["-b", "131072"]


def start_socat(
    *, listen_port: int, target_port: int, options: list[str] | None = None
) -> Running:
    """Run socat TCP-LISTEN to TCP-CONNECT, as the bridge unit does with vsock,
    with the unit's options unless `options` is given."""
    process = subprocess.Popen(
        [
            SOCAT,
            *(BRIDGE_UNIT_OPTIONS if options is None else options),
            f"TCP-LISTEN:{listen_port},bind=127.0.0.1,fork,reuseaddr",
            f"TCP-CONNECT:127.0.0.1:{target_port}",
        ],
        stderr=subprocess.PIPE,
    )
    wait_for_port(listen_port, process=process)
    return Running(process=process, port=listen_port)


def wait_for_port(
    port: int, *, process: subprocess.Popen[Any], timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def write_case(path: Path, case: str, **settings: Any) -> None:
    """Set what the stand-in nitro-cli prints on its next run."""
    path.write_text(json.dumps({"case": case, **settings}))


def start_health(
    directory: Path, config: HealthConfig, *, case_file: Path, python: str | None = None
) -> Running:
    """Start `python -m healthcheck` on a free port; stdout goes to a log file."""
    config_file = directory / f"healthcheck-{time.monotonic_ns()}.json"
    config_file.write_text(config.to_json())
    log = config_file.with_suffix(".log")
    environment = {
        **os.environ,
        "NITRO_CLI_STANDIN_CASE": str(case_file),
        "PYTHONPATH": str(REPO_ROOT),
        "PATH": f"{STANDINS}:{os.environ.get('PATH', '')}",
    }
    executable = python or SYSTEM_PYTHON or sys.executable
    with log.open("w") as output:
        process = subprocess.Popen(
            [executable, "-m", "healthcheck", "--config", str(config_file)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=directory,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("event") == "start":
                return Running(process=process, port=int(entry["port"]), log=log)
        if process.poll() is not None:
            raise RuntimeError(f"health service exited: {log.read_text()}")
        time.sleep(0.02)
    stop(Running(process=process, port=0))
    raise RuntimeError("health service did not log its start within 10 s")


def socat_available() -> bool:
    return shutil.which(SOCAT) is not None
