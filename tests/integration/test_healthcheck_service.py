"""The health service as a process: real TLS clients, stand-in nitro-cli and notary."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from standins.processes import (
    REPO_ROOT,
    Running,
    make_tls_files,
    start_health,
    start_notary,
    stop,
    write_case,
)

from healthcheck.config import HealthConfig

PCR0 = "a" * 96


def find_python_39() -> str | None:
    """Return a working python3.9, or None (a pyenv shim may exist but fail)."""
    candidates = [
        *(
            str(path)
            for path in Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")
        ),
        shutil.which("python3.9"),
    ]
    for candidate in candidates:
        if candidate is None:
            continue
        check = subprocess.run(
            [candidate, "-c", "import ssl"], capture_output=True, timeout=30
        )
        if check.returncode == 0:
            return candidate
    return None


# Amazon Linux 2023 ships Python 3.9, so the service must run on it too.
PYTHON_39 = find_python_39()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("health")
    make_tls_files(directory)
    manifest = {"version": "0.1.0", "pcr0": PCR0, "pcr1": "b" * 96, "pcr2": "c" * 96}
    (directory / "release.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="module")
def notary() -> Iterator[Running]:
    running = start_notary()
    yield running
    stop(running)


@pytest.fixture(scope="module")
def base_config(workdir: Path, notary: Running) -> HealthConfig:
    return HealthConfig(
        port=0,
        bind_address="127.0.0.1",
        cert_file=str(workdir / "cert.pem"),
        key_file=str(workdir / "key.pem"),
        notary_port=notary.port,
        manifest_file=str(workdir / "release.json"),
        nitro_cli="nitro-cli",
        deadline_seconds=1.0,
        cache_seconds=0.0,
        socket_timeout_seconds=1.0,
        log_repeat_seconds=0.0,
    )


@pytest.fixture(scope="module")
def case_file(workdir: Path) -> Path:
    return workdir / "case.json"


@pytest.fixture(scope="module")
def service(
    workdir: Path, base_config: HealthConfig, case_file: Path
) -> Iterator[Running]:
    """One service with no cache, so each request runs the current case."""
    write_case(case_file, "running")
    running = start_health(workdir, base_config, case_file=case_file)
    yield running
    stop(running)


@pytest.fixture
def start_service(
    workdir: Path, base_config: HealthConfig, case_file: Path
) -> Iterator[Any]:
    """Return a function that starts a service with config changes."""
    started: list[Running] = []

    def start(**changes: Any) -> Running:
        write_case(case_file, "running")
        running = start_health(
            workdir, replace(base_config, **changes), case_file=case_file
        )
        started.append(running)
        return running

    yield start
    for running in started:
        stop(running)


def client_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    return context


def get(
    port: int,
    path: str = "/healthcheck",
    *,
    method: str = "GET",
    version: ssl.TLSVersion | None = None,
) -> tuple[int, bytes, http.client.HTTPResponse, str]:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", port, timeout=10, context=client_context(version)
    )
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        sock = connection.sock
        negotiated = sock.version() if isinstance(sock, ssl.SSLSocket) else ""
        return response.status, body, response, negotiated or ""
    finally:
        connection.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_healthy_over_tls_version(service: Running, version: ssl.TLSVersion) -> None:
    status, body, _, negotiated = get(service.port, version=version)
    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert negotiated == {"TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}[version.name]


@pytest.mark.parametrize(
    ("case", "settings", "reason"),
    [
        ("debug", {}, "debug-mode"),
        ("terminating", {}, "not-running"),
        ("none", {}, "no-enclave"),
        ("two", {}, "enclave-count"),
        ("wrong-name", {}, "enclave-name"),
        ("measured", {"pcr0": "f" * 96}, "pcr-mismatch"),
        ("fail", {}, "nitro-cli-failed"),
        ("garbage", {}, "nitro-cli-output"),
        ("slow", {"delay": 5}, "timeout"),
    ],
)
def test_enclave_failure_gives_503(
    service: Running, case_file: Path, case: str, settings: dict[str, Any], reason: str
) -> None:
    write_case(case_file, case, **settings)
    try:
        status, body, _, _ = get(service.port)
    finally:
        write_case(case_file, "running")
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "check": "enclave",
        "reason": reason,
    }


def test_matching_measurements_healthy(service: Running, case_file: Path) -> None:
    write_case(case_file, "measured", pcr0=PCR0.upper())
    try:
        status, _, _, _ = get(service.port)
    finally:
        write_case(case_file, "running")
    assert status == 200


def test_missing_nitro_cli_gives_503(start_service: Any, workdir: Path) -> None:
    running = start_service(nitro_cli=str(workdir / "absent-nitro-cli"))
    status, body, _, _ = get(running.port)
    assert status == 503
    assert json.loads(body)["reason"] == "nitro-cli-missing"


def test_unreadable_manifest_gives_503(start_service: Any, workdir: Path) -> None:
    running = start_service(manifest_file=str(workdir / "absent.json"))
    status, body, _, _ = get(running.port)
    entries = [json.loads(line) for line in running.log_lines()]
    assert status == 503
    assert json.loads(body)["reason"] == "manifest"
    assert any("release manifest" in entry["message"] for entry in entries)


def test_unreadable_api_key_gives_503(start_service: Any, workdir: Path) -> None:
    running = start_service(api_key_file=str(workdir / "absent-key"))
    status, body, _, _ = get(running.port)
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "check": "notary",
        "reason": "api-key",
    }


def test_unreachable_notary_gives_503(start_service: Any) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        running = start_service(notary_port=port)
        status, body, _, _ = get(running.port)
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "check": "notary",
        "reason": "unreachable",
    }


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (("--delay", "3"), "timeout"),
        (("--api-key", "secret"), "status-401"),
        (("--status", "500"), "status-500"),
        (("--body", "Nope"), "body"),
    ],
)
def test_notary_failure_gives_503(
    start_service: Any, arguments: tuple[str, ...], reason: str
) -> None:
    notary = start_notary(*arguments)
    try:
        running = start_service(notary_port=notary.port)
        status, body, _, _ = get(running.port)
    finally:
        stop(notary)
    assert status == 503
    assert json.loads(body) == {
        "status": "unhealthy",
        "check": "notary",
        "reason": reason,
    }


def test_api_key_sent_to_notary(start_service: Any, workdir: Path) -> None:
    key_file = workdir / "api-key"
    key_file.write_text("secret\n")
    notary = start_notary("--api-key", "secret")
    try:
        running = start_service(notary_port=notary.port, api_key_file=str(key_file))
        status, _, _, _ = get(running.port)
    finally:
        stop(notary)
    assert status == 200


def test_notary_over_tls(start_service: Any, workdir: Path) -> None:
    notary = start_notary(
        "--cert", str(workdir / "cert.pem"), "--key", str(workdir / "key.pem")
    )
    try:
        running = start_service(notary_port=notary.port, notary_tls=True)
        status, _, _, _ = get(running.port)
    finally:
        stop(notary)
    assert status == 200


def test_unknown_path_404(service: Running) -> None:
    status, body, _, _ = get(service.port, "/nothing")
    assert status == 404
    assert json.loads(body) == {"error": "not found"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_method_405(service: Running, method: str) -> None:
    status, _, response, _ = get(service.port, method=method)
    assert status == 405
    assert response.getheader("Allow") == "GET, HEAD"


def test_head_has_no_body(service: Running) -> None:
    status, body, _, _ = get(service.port, method="HEAD")
    assert status == 200
    assert body == b""


def test_oversized_request_rejected(service: Running) -> None:
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        client_context().wrap_socket(raw) as connection,
    ):
        filler = "X-Filler: " + "a" * 1000 + "\r\n"
        request = "GET /healthcheck HTTP/1.1\r\nHost: x\r\n" + filler * 20 + "\r\n"
        connection.sendall(request.encode())
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")


def test_oversized_request_line_rejected(service: Running) -> None:
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        client_context().wrap_socket(raw) as connection,
    ):
        connection.sendall(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")
    assert service.process.poll() is None
    assert all(line.startswith("{") for line in service.log_lines())


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET /healthcheck HTTP/1.1\r\nno colon here\r\n\r\n"],
)
def test_malformed_request_400(service: Running, request_bytes: bytes) -> None:
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        client_context().wrap_socket(raw) as connection,
    ):
        connection.sendall(request_bytes)
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400")


def test_too_many_headers_431(service: Running) -> None:
    headers = b"".join(b"X-%d: 1\r\n" % index for index in range(100))
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        client_context().wrap_socket(raw) as connection,
    ):
        connection.sendall(b"GET /healthcheck HTTP/1.1\r\n" + headers + b"\r\n")
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")


def test_keep_alive_serves_two(service: Running) -> None:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", service.port, timeout=10, context=client_context()
    )
    statuses = []
    try:
        for _ in range(2):
            connection.request("GET", "/healthcheck")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()
    assert statuses == [200, 200]


def test_slow_request_closed(service: Running) -> None:
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw,
        client_context().wrap_socket(raw) as connection,
    ):
        connection.sendall(b"GET /healthcheck HTTP/1.1\r\n")
        # The service's socket timeout is 1 s; the headers never end.
        answer = connection.recv(4096)
    assert answer == b""


def test_silent_client_closed(service: Running) -> None:
    # A client that never starts the TLS handshake is closed at the timeout.
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw:
        answer = raw.recv(4096)
    assert answer == b""


def test_connection_limit_closes_longest_waiting(start_service: Any) -> None:
    running = start_service(max_connections=2)
    address = ("127.0.0.1", running.port)
    with (
        socket.create_connection(address, timeout=10) as oldest,
        socket.create_connection(address, timeout=10),
        socket.create_connection(address, timeout=10),
    ):
        try:
            answer = oldest.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b""


def test_connection_limit_rejects_when_busy(
    start_service: Any, case_file: Path
) -> None:
    # One connection, busy with a probe that waits for the stand-in
    # nitro-cli until the probe deadline: no waiting connection to close.
    running = start_service(max_connections=1, deadline_seconds=3.0)
    write_case(case_file, "slow", delay=10)
    statuses: list[int] = []
    busy = threading.Thread(target=lambda: statuses.append(get(running.port)[0]))
    busy.start()
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as extra:
            try:
                answer = extra.recv(4096)
            except ConnectionResetError:
                answer = b""
    finally:
        busy.join()
        write_case(case_file, "running")
    _, body, _, _ = get(running.port, "/metrics")
    assert answer == b""
    assert statuses == [503]
    assert metric(body.decode(), "notary_health_connections_rejected_total") == 1


# A TLS record header announcing a 512-byte ClientHello that never comes.
HANDSHAKE_DRIP = b"\x16\x03\x01\x02\x00" + b"\x01" * 100
REQUEST_DRIP = b"X-Drip: " + b"a" * 100


def drip(
    connection: socket.socket,
    data: bytes,
    *,
    interval: float,
    give_up: float,
    outcomes: list[str],
) -> None:
    """Send one byte per interval until the server closes the connection."""
    end = time.monotonic() + give_up
    outcome = "open"
    for byte in data:
        if time.monotonic() > end:
            break
        try:
            connection.sendall(bytes([byte]))
            connection.settimeout(interval)
            if connection.recv(4096) == b"":
                outcome = "closed"
                break
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (OSError, ssl.SSLError):
            outcome = "closed"
            break
    outcomes.append(outcome)


def metric(text: str, name: str) -> int:
    found = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    return int(found.group(1)) if found else 0


def test_slow_drip_cannot_lock_out(start_service: Any) -> None:
    limit = 8
    deadline = 1.5
    running = start_service(max_connections=limit, socket_timeout_seconds=deadline)
    address = ("127.0.0.1", running.port)

    connections: list[tuple[socket.socket, bytes]] = []
    # More slow clients than the cap: first ones that finish the handshake
    # and send a request line, then ones that never finish the handshake.
    for _ in range(limit):
        raw = socket.create_connection(address, timeout=10)
        tls = client_context().wrap_socket(raw)
        tls.sendall(b"GET /healthcheck HTTP/1.1\r\n")
        connections.append((tls, REQUEST_DRIP))
    for _ in range(limit // 2):
        raw = socket.create_connection(address, timeout=10)
        connections.append((raw, HANDSHAKE_DRIP))

    outcomes: list[str] = []
    threads = [
        threading.Thread(
            target=drip,
            args=(connection, data),
            kwargs={"interval": 0.25, "give_up": deadline * 4, "outcomes": outcomes},
        )
        for connection, data in connections
    ]
    try:
        for thread in threads:
            thread.start()
        status, _, _, _ = get(running.port)
        for thread in threads:
            thread.join()
    finally:
        for connection, _ in connections:
            connection.close()

    _, body, _, _ = get(running.port, "/metrics")
    text = body.decode()
    handshake = 'notary_health_slow_connections_closed_total{stage="handshake"}'
    request = 'notary_health_slow_connections_closed_total{stage="request"}'
    events = [json.loads(line).get("event") for line in running.log_lines()]
    assert status == 200
    assert outcomes == ["closed"] * len(connections)
    assert metric(text, handshake) >= 1
    assert metric(text, request) >= 1
    assert metric(text, "notary_health_connections_evicted_total") >= 1
    assert "slow-connection" in events


def test_service_survives_bad_input(service: Running) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 this is no TLS handshake\r\n\r\n")
        raw.recv(4096)
    status, _, _, _ = get(service.port)
    assert service.process.poll() is None
    assert status == 200


def test_metrics_prometheus_text(service: Running) -> None:
    get(service.port)
    status, body, response, _ = get(service.port, "/metrics")
    text = body.decode()
    assert status == 200
    content_type = response.getheader("Content-Type") or ""
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'notary_health_checks_total{check="enclave"}' in text
    assert 'notary_health_enclave_state{state="RUNNING"} 1' in text
    assert "notary_health_check_duration_seconds_bucket" in text


def test_burst_costs_one_probe(start_service: Any) -> None:
    running = start_service(cache_seconds=60.0)
    statuses: list[int] = []

    def request() -> None:
        statuses.append(get(running.port)[0])

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, body, _, _ = get(running.port, "/metrics")
    assert statuses == [200] * 20
    assert "notary_health_probes_total 1\n" in body.decode()


def test_logs_are_json_lines(start_service: Any, case_file: Path) -> None:
    running = start_service()
    get(running.port)
    write_case(case_file, "debug")
    get(running.port)
    stop(running)
    entries = [json.loads(line) for line in running.log_lines()]
    events = [entry.get("event") for entry in entries]
    changes = [entry for entry in entries if "health" in entry]
    assert events[0] == "start"
    assert events[-1] == "stop"
    assert [entry["health"] for entry in changes] == ["healthy", "unhealthy"]
    assert changes[1]["reason"] == "debug-mode"


@pytest.mark.skipif(PYTHON_39 is None, reason="needs a python3.9 interpreter")
def test_runs_on_python_39(
    workdir: Path, base_config: HealthConfig, case_file: Path
) -> None:
    write_case(case_file, "running")
    running = start_health(workdir, base_config, case_file=case_file, python=PYTHON_39)
    try:
        healthy, _, _, _ = get(running.port)
        write_case(case_file, "debug")
        unhealthy, body, _, _ = get(running.port)
    finally:
        write_case(case_file, "running")
        stop(running)
    assert healthy == 200
    assert unhealthy == 503
    assert json.loads(body)["reason"] == "debug-mode"


def test_help_lists_config() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "healthcheck", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--config FILE" in result.stdout


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config_file = tmp_path / "healthcheck.json"
    config_file.write_text('{"port": "7048"}')
    result = subprocess.run(
        [sys.executable, "-m", "healthcheck", "--config", str(config_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "port is '7048': expected int" in result.stderr
