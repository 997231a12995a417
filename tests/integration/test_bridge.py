"""The inbound bridge: real socat, TCP to TCP, in front of the stand-in notary.

On an instance the bridge listens on TCP 7047 and connects to the enclave's
vsock port. Here both sides are TCP on loopback, with the same socat options.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from standins.processes import (
    BRIDGE_UNIT_OPTIONS,
    Running,
    free_port,
    socat_available,
    start_notary,
    start_socat,
    stop,
)

from infra.config import REPO_ROOT

pytestmark = pytest.mark.skipif(not socat_available(), reason="needs /usr/bin/socat")

CONCURRENT_CLIENTS = 100


@pytest.fixture(scope="module")
def notary() -> Iterator[Running]:
    running = start_notary()
    yield running
    stop(running)


@pytest.fixture
def bridge(notary: Running) -> Iterator[Running]:
    running = start_socat(listen_port=free_port(), target_port=notary.port)
    yield running
    stop(running)


def healthcheck(port: int, path: str = "/healthcheck") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_bridge_forwards_request(bridge: Running) -> None:
    assert healthcheck(bridge.port) == (200, b"Ok")


def test_bridge_forwards_other_paths(bridge: Running) -> None:
    status, body = healthcheck(bridge.port, "/info")
    assert status == 200
    assert b'"version":"stand-in"' in body


def test_bridge_concurrent_connections(bridge: Running) -> None:
    with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
        answers = list(
            pool.map(lambda _: healthcheck(bridge.port), range(CONCURRENT_CLIENTS))
        )
    assert answers == [(200, b"Ok")] * CONCURRENT_CLIENTS


def test_bridge_long_connection(bridge: Running) -> None:
    # One connection carries many requests, as a prover's session does.
    connection = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    statuses = []
    try:
        for _ in range(20):
            connection.request("GET", "/healthcheck")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()
    assert statuses == [200] * 20


def test_bridge_restart(notary: Running) -> None:
    port = free_port()
    first = start_socat(listen_port=port, target_port=notary.port)
    before = healthcheck(port)
    stop(first)
    with pytest.raises(ConnectionRefusedError):
        healthcheck(port)
    second = start_socat(listen_port=port, target_port=notary.port)
    try:
        after = healthcheck(port)
    finally:
        stop(second)
    assert before == (200, b"Ok")
    assert first.process.returncode is not None
    assert after == (200, b"Ok")


def test_bridge_notary_down(notary: Running) -> None:
    # socat accepts, fails to connect onward, and closes: the client sees a
    # closed connection, which the health service reports as unreachable.
    port = free_port()
    bridge = start_socat(listen_port=port, target_port=free_port())
    try:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            healthcheck(port)
        still_running = bridge.process.poll() is None
    finally:
        stop(bridge)
    assert still_running


def test_bridge_options_match_unit() -> None:
    unit = REPO_ROOT / "packer" / "files" / "systemd" / "notary-bridge.service"
    command = f"/usr/bin/socat {' '.join(BRIDGE_UNIT_OPTIONS)} TCP-LISTEN:"

    assert command in unit.read_text()
