"""The two checks behind /healthcheck: the enclave, and the notary via the bridge.

Each check returns a CheckResult for every failure of what it checks, and
the prober turns an unexpected exception into the reason "error". `reason`
is a short token for metrics and the 503 body, `detail` one line for the log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthcheck.config import HealthConfig

# nitro-cli describe-enclaves reports these states; anything else is unknown.
ENCLAVE_STATES = ("RUNNING", "TERMINATING", "EMPTY")
PCR_NAMES = ("PCR0", "PCR1", "PCR2", "PCR8")
# The notary's /healthcheck body is the two bytes "Ok"; read a little more to
# tell a longer body apart.
MAX_NOTARY_BODY = 64


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    check: str
    ok: bool
    reason: str
    detail: str
    seconds: float
    enclave_state: str | None = None


@dataclass(frozen=True)
class Expected:
    """The baked release's enclave name and PCRs, which the enclave must match."""

    enclave_name: str
    pcrs: dict[str, str]


def load_expected(config: HealthConfig) -> Expected:
    """Read the release manifest's PCRs; lower-case hex as nitro-cli prints them."""
    manifest = json.loads(Path(config.manifest_file).read_text())
    if not isinstance(manifest, dict):
        raise ValueError(f"{config.manifest_file}: expected a JSON object")
    pcrs = {}
    for name in PCR_NAMES:
        value = manifest.get(name.lower())
        if isinstance(value, str) and value:
            pcrs[name] = value.lower()
    return Expected(enclave_name=config.enclave_name, pcrs=pcrs)


def evaluate_enclaves(output: str, expected: Expected) -> tuple[str, str, str | None]:
    """Judge describe-enclaves output; return (reason, detail, enclave state).

    The reason is "ok" when exactly one enclave is RUNNING, is not in debug
    mode, has the expected name and, where the output has Measurements, the
    expected PCRs.
    """
    try:
        enclaves = json.loads(output)
    except ValueError:
        return "nitro-cli-output", "describe-enclaves printed invalid JSON", None
    if not isinstance(enclaves, list) or not all(
        isinstance(entry, dict) for entry in enclaves
    ):
        return "nitro-cli-output", "describe-enclaves printed no list of enclaves", None
    if not enclaves:
        return "no-enclave", "no enclave is running", "NONE"
    if len(enclaves) > 1:
        return "enclave-count", f"{len(enclaves)} enclaves found, expected 1", None
    enclave = enclaves[0]
    state = str(enclave.get("State", "UNKNOWN"))
    if state not in ENCLAVE_STATES:
        state = "UNKNOWN"
    if state != "RUNNING":
        return "not-running", f"enclave state is {state}", state
    if "DEBUG_MODE" in str(enclave.get("Flags", "")):
        return "debug-mode", "enclave runs in debug mode", state
    name = enclave.get("EnclaveName")
    if name != expected.enclave_name:
        return (
            "enclave-name",
            f"enclave name is {name!r}, expected {expected.enclave_name!r}",
            state,
        )
    return _compare_pcrs(enclave.get("Measurements"), expected) + (state,)


def _compare_pcrs(measurements: Any, expected: Expected) -> tuple[str, str]:
    if not isinstance(measurements, dict):
        return "ok", "enclave running"
    for name, value in expected.pcrs.items():
        reported = measurements.get(name)
        if reported is None:
            continue
        if str(reported).lower() != value:
            return "pcr-mismatch", f"{name} differs from the release manifest"
    return "ok", "enclave running with the release's PCRs"


def check_enclave(config: HealthConfig, expected: Expected) -> CheckResult:
    """Run `nitro-cli describe-enclaves` within the deadline and judge its output."""
    started = time.monotonic()

    def result(reason: str, detail: str, state: str | None = None) -> CheckResult:
        return CheckResult(
            check="enclave",
            ok=reason == "ok",
            reason=reason,
            detail=detail,
            seconds=time.monotonic() - started,
            enclave_state=state,
        )

    try:
        # A new session, so a timeout can kill nitro-cli and anything it started.
        process = subprocess.Popen(
            [config.nitro_cli, "describe-enclaves"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        return result("nitro-cli-missing", f"cannot run {config.nitro_cli}: {error}")
    try:
        stdout, stderr = process.communicate(timeout=config.deadline_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return result("timeout", f"nitro-cli took over {config.deadline_seconds} s")
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip().splitlines()
        last = message[-1][:200] if message else ""
        return result(
            "nitro-cli-failed",
            f"nitro-cli exited with status {process.returncode}: {last}",
        )
    reason, detail, state = evaluate_enclaves(stdout.decode(errors="replace"), expected)
    return result(reason, detail, state)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def read_api_key(config: HealthConfig) -> str | None:
    """Return the notary's API key from api_key_file, or None when it is unset."""
    if not config.api_key_file:
        return None
    return Path(config.api_key_file).read_text().strip()


def check_notary(config: HealthConfig, api_key: str | None) -> CheckResult:
    """GET the notary's /healthcheck through the bridge: 200 with body "Ok"."""
    started = time.monotonic()

    def result(reason: str, detail: str) -> CheckResult:
        return CheckResult(
            check="notary",
            ok=reason == "ok",
            reason=reason,
            detail=detail,
            seconds=time.monotonic() - started,
        )

    connection = _connection(config)
    headers = {"Connection": "close"}
    if api_key:
        headers["X-API-Key"] = api_key
    try:
        connection.request("GET", "/healthcheck", headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_NOTARY_BODY)
    # On Python 3.9, which the image may have, socket.timeout is no TimeoutError.
    except (socket.timeout, TimeoutError):  # noqa: UP041
        return result("timeout", f"notary took over {config.deadline_seconds} s")
    except ConnectionRefusedError:
        return result("unreachable", "connection to the bridge refused")
    except ssl.SSLError as error:
        return result("tls", f"TLS to the notary failed: {error.reason}")
    except (OSError, http.client.HTTPException) as error:
        return result("unreachable", f"notary request failed: {error}")
    finally:
        connection.close()
    if response.status != 200:
        return result(f"status-{response.status}", f"notary answered {response.status}")
    if body.strip() != b"Ok":
        return result("body", "notary answered 200 without the body Ok")
    return result("ok", "notary answered Ok")


def _connection(config: HealthConfig) -> http.client.HTTPConnection:
    timeout = config.deadline_seconds
    if not config.notary_tls:
        return http.client.HTTPConnection(
            config.notary_host, config.notary_port, timeout=timeout
        )
    # The notary's certificate is self-signed or for its public name, and the
    # bridge is on loopback, so the check proves liveness, not identity.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return http.client.HTTPSConnection(
        config.notary_host, config.notary_port, timeout=timeout, context=context
    )
