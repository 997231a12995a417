"""Health service against nginx with a new TLS connection per request; bridge
throughput through socat against a direct TCP connection.

Load balancers and Route 53 open a new connection for every check, so each
request here does a full TCP and TLS handshake ("Connection: close"). The
load generator is wrk when installed (apt-get install wrk), otherwise a
Python thread pool, which is itself slower and is named in the output.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from standins.processes import (
    Running,
    free_port,
    make_tls_files,
    start_health,
    start_notary,
    start_socat,
    stop,
    wait_for_port,
    write_case,
)

from healthcheck.config import HealthConfig

CLIENTS = 50
# Rounds alternate between the two servers, so load from other work on the
# machine falls on both alike. Each figure is the median over the rounds.
ROUNDS = 3
ROUND_SECONDS = 4
WARMUP_SECONDS = 1
GOAL_RATIO = 0.5
GOAL_P99_MS = 20.0
BRIDGE_BYTES = 512 * 2**20
BRIDGE_GOAL = 0.8
NGINX = "/usr/sbin/nginx"

NGINX_CONFIG = """\
worker_processes auto;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {root}/cert.pem;
        ssl_certificate_key {root}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "Ok"; }}
    }}
}}
"""

# A sink that reads one connection to its end and sends back the byte count,
# so the sender times the whole transfer.
SINK = """
import socket, sys
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
buffer = bytearray(1 << 20)
while True:
    connection, _ = server.accept()
    total = 0
    while True:
        count = connection.recv_into(buffer)
        if not count:
            break
        total += count
    connection.sendall(str(total).encode())
    connection.close()
"""


@dataclass(frozen=True)
class LoadResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    # Responses other than 200, and connections that failed or timed out.
    non_200: int
    socket_errors: int
    generator: str


def _wrk_milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_with_wrk(url: str, *, seconds: int) -> LoadResult:
    """Run wrk with a new connection per request; parse rate and latency."""
    output = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CLIENTS}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "5s",
            "-H",
            "Connection: close",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    non_200 = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return LoadResult(
        rate,
        _wrk_milliseconds(p50),
        _wrk_milliseconds(p99),
        int(non_200.group(1)) if non_200 else 0,
        sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
        if socket_errors
        else 0,
        "wrk",
    )


def load_with_threads(port: int, path: str, *, seconds: int) -> LoadResult:
    """Python fallback: CLIENTS threads, each a new TLS connection per request."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    latencies: list[float] = []
    counts = {"non_200": 0, "socket_errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        mine: list[float] = []
        non_200 = socket_errors = 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                    context.wrap_socket(raw) as connection,
                ):
                    connection.sendall(request)
                    response = b""
                    while chunk := connection.recv(4096):
                        response += chunk
            except OSError:
                socket_errors += 1
                continue
            mine.append(time.perf_counter() - started)
            if not response.startswith(b"HTTP/1.1 200"):
                non_200 += 1
        with lock:
            latencies.extend(mine)
            counts["non_200"] += non_200
            counts["socket_errors"] += socket_errors

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    last = max(len(latencies) - 1, 0)
    return LoadResult(
        len(latencies) / seconds,
        latencies[last // 2] * 1000 if latencies else 0.0,
        latencies[min(last, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0,
        counts["non_200"],
        counts["socket_errors"],
        "Python threads",
    )


def load(port: int, path: str, *, seconds: int) -> LoadResult:
    if shutil.which("wrk"):
        return load_with_wrk(f"https://127.0.0.1:{port}{path}", seconds=seconds)
    return load_with_threads(port, path, seconds=seconds)


def median_result(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        statistics.median(result.requests_per_second for result in results),
        statistics.median(result.p50_ms for result in results),
        statistics.median(result.p99_ms for result in results),
        sum(result.non_200 for result in results),
        sum(result.socket_errors for result in results),
        results[0].generator,
    )


def alternate(ports: list[int], path: str) -> list[LoadResult]:
    """Load each port in turn for ROUNDS rounds; return each port's medians."""
    for port in ports:
        load(port, path, seconds=WARMUP_SECONDS)
    rounds: list[list[LoadResult]] = [[] for _ in ports]
    for _ in range(ROUNDS):
        for index, port in enumerate(ports):
            rounds[index].append(load(port, path, seconds=ROUND_SECONDS))
    return [median_result(results) for results in rounds]


def start_nginx(root: Path) -> Running:
    port = free_port()
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / name).mkdir(exist_ok=True)
    config = root / "nginx.conf"
    config.write_text(NGINX_CONFIG.format(root=root, port=port))
    process = subprocess.Popen(
        [NGINX, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")],
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, process=process)
    return Running(process=process, port=port)


def probe_failures(port: int) -> str:
    """Return the service's failed checks by reason, read from its /metrics."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    url = f"https://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        text = response.read().decode()
    pattern = re.compile(
        r'^notary_health_check_failures_total\{check="(\w+)",reason="([\w-]+)"\} (\d+)',
        re.M,
    )
    found = [
        f"{check} {reason}: {count}" for check, reason, count in pattern.findall(text)
    ]
    return ", ".join(found) or "none"


def health_versus_nginx(root: Path) -> tuple[LoadResult, LoadResult, str]:
    make_tls_files(root)
    (root / "release.json").write_text('{"pcr0": "' + "a" * 96 + '"}')
    case_file = root / "case.json"
    write_case(case_file, "running")
    notary = start_notary()
    started: list[Running] = [notary]
    try:
        config = HealthConfig(
            port=0,
            bind_address="127.0.0.1",
            cert_file=str(root / "cert.pem"),
            key_file=str(root / "key.pem"),
            notary_port=notary.port,
            manifest_file=str(root / "release.json"),
            nitro_cli="nitro-cli",
        )
        service = start_health(root, config, case_file=case_file)
        started.append(service)
        nginx = start_nginx(root)
        started.append(nginx)
        health, static = alternate([service.port, nginx.port], "/healthcheck")
        failures = probe_failures(service.port)
    finally:
        for running in reversed(started):
            stop(running)
    return health, static, failures


def transfer(port: int, size: int) -> float:
    """Send `size` bytes to the sink through `port`; return bytes per second."""
    chunk = memoryview(bytes(1 << 20))
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        sent = 0
        while sent < size:
            connection.sendall(chunk)
            sent += len(chunk)
        connection.shutdown(socket.SHUT_WR)
        received = int(connection.recv(64) or b"0")
    seconds = time.perf_counter() - started
    if received != sent:
        raise RuntimeError(f"sink received {received} of {sent} bytes")
    return sent / seconds


def bridge_versus_direct() -> tuple[float, float, float]:
    """Return bytes/s direct, through socat as the unit runs it, and with socat's
    default 8 KiB buffer."""
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    bridge = start_socat(listen_port=free_port(), target_port=sink_port)
    small = start_socat(listen_port=free_port(), target_port=sink_port, options=[])
    try:
        transfer(sink_port, 32 * 2**20)
        direct = max(transfer(sink_port, BRIDGE_BYTES) for _ in range(2))
        bridged = max(transfer(bridge.port, BRIDGE_BYTES) for _ in range(2))
        small_buffer = max(transfer(small.port, BRIDGE_BYTES) for _ in range(2))
    finally:
        stop(small)
        stop(bridge)
        stop(Running(process=sink, port=sink_port))
    return direct, bridged, small_buffer


def run() -> str:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-health-") as directory:
        root = Path(directory)
        root.chmod(0o755)
        health, static, failures = health_versus_nginx(root)
    direct, bridged, small_buffer = bridge_versus_direct()
    ratio = health.requests_per_second / static.requests_per_second
    bridge_ratio = bridged / direct
    rate_goal = "met" if ratio >= GOAL_RATIO else "missed"
    p99_goal = "met" if health.p99_ms < GOAL_P99_MS else "missed"
    bridge_goal = "met" if bridge_ratio >= BRIDGE_GOAL else "missed"
    return f"""## Health service

`benchmarks/health.py`: {CLIENTS} concurrent clients, {ROUNDS} rounds of
{ROUND_SECONDS} s per server taken in turn after a {WARMUP_SECONDS} s warm-up
each, medians over the rounds, a new TCP and TLS connection per request
(`Connection: close`), load from {health.generator} on the same machine. The
health service runs with the system Python, a stand-in nitro-cli and a
stand-in notary, and the default 2 s result cache. nginx {_nginx_version()}
runs one worker per core (`worker_processes auto`, Debian's default) with
`return 200` over TLS 1.2/1.3. {_latency_note(health.generator)} The
1-minute load average was {load_before:.1f} before the run, from other
work on the machine.

| server | requests/s | p50 ms | p99 ms | non-200 | socket errors |
|---|---|---|---|---|---|
{_row("health service", health)}
{_row("nginx", static)}

Failed checks inside the health service during the run, from its
/metrics: {failures}. A failed check answers 503 (non-200 above) until
the next probe, which comes after the 2 s cache.

Ratio health/nginx: {ratio:.2f} (goal at least {GOAL_RATIO}: {rate_goal}).
Health p99 {health.p99_ms:.1f} ms (goal under {GOAL_P99_MS:.0f} ms: {p99_goal}).

### Inbound bridge

{BRIDGE_BYTES // 2**20} MiB over one loopback TCP connection into a Python sink,
best of 2:

| path | MiB/s | ratio to direct |
|---|---|---|
{_bridge_row("direct", direct, direct)}
{_bridge_row("socat, the unit's options (`-b 131072`)", bridged, direct)}
{_bridge_row("socat, its default 8 KiB buffer", small_buffer, direct)}

Goal at least {BRIDGE_GOAL} with the unit's options: {bridge_goal}. On an
instance the far side is vsock, not TCP, and socat shares no cores with the
sender and sink as it does here.
"""


def _row(name: str, result: LoadResult) -> str:
    return (
        f"| {name} | {result.requests_per_second:.0f} | {result.p50_ms:.1f} | "
        f"{result.p99_ms:.1f} | {result.non_200} | {result.socket_errors} |"
    )


def _latency_note(generator: str) -> str:
    if generator == "wrk":
        return (
            "wrk times each request from its first byte written to the "
            "response, so the latencies leave out the TCP and TLS handshakes."
        )
    return "Latencies include the TCP and TLS handshakes."


def _bridge_row(name: str, rate: float, direct: float) -> str:
    return f"| {name} | {rate / 2**20:.0f} | {rate / direct:.2f} |"


def _nginx_version() -> str:
    result = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    return result.stderr.strip().split("/")[-1] or "unknown"
