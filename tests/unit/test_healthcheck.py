"""Health service pieces without processes: config, enclave judgement, logs."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthcheck.checks import Expected, evaluate_enclaves, load_expected
from healthcheck.config import ConfigError, HealthConfig
from healthcheck.connections import ConnectionTable
from healthcheck.deadline import Deadline, DeadlineReader, RequestTooSlow
from healthcheck.logs import JsonFormatter, RepeatFilter
from healthcheck.metrics import Counter, HealthMetrics, Histogram
from healthcheck.server import LimitedReader, RequestTooLarge

EXPECTED = Expected(enclave_name="notary", pcrs={"PCR0": "a" * 96, "PCR1": "b" * 96})


def enclave(**changes: Any) -> dict[str, Any]:
    entry = {
        "EnclaveName": "notary",
        "EnclaveID": "i-0-enc0",
        "EnclaveCID": 16,
        "NumberOfCPUs": 2,
        "MemoryMiB": 2048,
        "State": "RUNNING",
        "Flags": "NONE",
    }
    entry.update(changes)
    return entry


def test_config_round_trip() -> None:
    config = HealthConfig(port=9000, api_key_file="/etc/notary/api-key")
    loaded = HealthConfig.from_dict(json.loads(config.to_json()))
    assert loaded == config


def test_config_defaults_match_image() -> None:
    config = HealthConfig()
    assert config.port == 7048
    assert config.notary_port == 7047
    assert config.cert_file == "/var/lib/notary/tls/cert.pem"
    assert config.manifest_file == "/etc/notary/release.json"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"prot": 1}, "unknown key 'prot'"),
        ({"port": "7048"}, "port is '7048': expected int"),
        ({"port": True}, "port is True: expected int"),
        ({"notary_tls": 1}, "notary_tls is 1: expected bool"),
        ({"port": 70000}, "port 70000 is out of range"),
        ({"deadline_seconds": 0}, "deadline_seconds must be above 0"),
        ({"max_request_bytes": 10}, "max_request_bytes 10 is too small"),
        ({"enclave_name": ""}, "enclave_name is empty"),
    ],
)
def test_config_rejects(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HealthConfig.from_dict(data)


def test_config_accepts_int_for_float() -> None:
    assert HealthConfig.from_dict({"cache_seconds": 5}).cache_seconds == 5


def test_config_load_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        HealthConfig.load(tmp_path / "absent.json")


def test_config_load_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "healthcheck.json"
    path.write_text("{port: 1}")
    with pytest.raises(ConfigError, match="invalid JSON at line 1"):
        HealthConfig.load(path)


def test_manifest_pcrs_lowered(tmp_path: Path) -> None:
    manifest = tmp_path / "release.json"
    manifest.write_text(json.dumps({"pcr0": "AB", "pcr1": "cd", "pcr8": None}))
    config = HealthConfig(manifest_file=str(manifest), enclave_name="n")
    expected = load_expected(config)
    assert expected.pcrs == {"PCR0": "ab", "PCR1": "cd"}
    assert expected.enclave_name == "n"


@pytest.mark.parametrize(
    ("enclaves", "reason", "state"),
    [
        ([enclave()], "ok", "RUNNING"),
        ([], "no-enclave", "NONE"),
        ([enclave(), enclave()], "enclave-count", None),
        ([enclave(State="TERMINATING")], "not-running", "TERMINATING"),
        ([enclave(State="WEIRD")], "not-running", "UNKNOWN"),
        ([enclave(Flags="DEBUG_MODE")], "debug-mode", "RUNNING"),
        ([enclave(EnclaveName="other")], "enclave-name", "RUNNING"),
        (
            [enclave(Measurements={"PCR0": "A" * 96, "PCR1": "b" * 96})],
            "ok",
            "RUNNING",
        ),
        ([enclave(Measurements={"PCR0": "a" * 96})], "ok", "RUNNING"),
        (
            [enclave(Measurements={"PCR0": "a" * 96, "PCR1": "0" * 96})],
            "pcr-mismatch",
            "RUNNING",
        ),
        ({"State": "RUNNING"}, "nitro-cli-output", None),
        (["RUNNING"], "nitro-cli-output", None),
    ],
)
def test_evaluate_enclaves(enclaves: Any, reason: str, state: str | None) -> None:
    result = evaluate_enclaves(json.dumps(enclaves), EXPECTED)
    assert result[0] == reason
    assert result[2] == state


def test_evaluate_invalid_json() -> None:
    assert evaluate_enclaves("[", EXPECTED)[0] == "nitro-cli-output"


def record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    entry = logging.LogRecord(
        "healthcheck.test", logging.INFO, "", 0, message, args, None
    )
    entry.__dict__.update(extra)
    return entry


def test_json_formatter_fields() -> None:
    line = JsonFormatter().format(record("state %s", "ok", reason="debug-mode"))
    entry = json.loads(line)
    assert entry["message"] == "state ok"
    assert entry["level"] == "info"
    assert entry["logger"] == "healthcheck.test"
    assert entry["reason"] == "debug-mode"
    assert "\n" not in line


def test_repeat_filter_limits_repeats() -> None:
    now = [0.0]
    limiter = RepeatFilter(60.0, clock=lambda: now[0])
    passed = [limiter.filter(record("same")) for _ in range(5)]
    now[0] = 61.0
    late = record("same")
    assert passed == [True, False, False, False, False]
    assert limiter.filter(late)
    assert late.__dict__["repeated"] == 4


def test_repeat_filter_passes_different() -> None:
    limiter = RepeatFilter(60.0, clock=lambda: 0.0)
    assert limiter.filter(record("one"))
    assert limiter.filter(record("two"))


def test_counter_renders_labels() -> None:
    counter = Counter("x_total", "Things.")
    counter.inc(check="enclave", reason='say "hi"')
    lines = counter.render()
    assert lines[0] == "# HELP x_total Things."
    assert lines[1] == "# TYPE x_total counter"
    assert lines[2] == 'x_total{check="enclave",reason="say \\"hi\\""} 1'


def test_histogram_buckets_cumulative() -> None:
    histogram = Histogram("d_seconds", "Time.", buckets=(0.1, 1.0))
    histogram.observe(0.05)
    histogram.observe(0.5)
    lines = histogram.render()
    assert 'd_seconds_bucket{le="0.1"} 1' in lines
    assert 'd_seconds_bucket{le="1"} 2' in lines
    assert 'd_seconds_bucket{le="+Inf"} 2' in lines
    assert "d_seconds_count 2" in lines


def test_metrics_render_ends_with_newline() -> None:
    assert HealthMetrics().render().endswith("\n")


def test_reader_rejects_large_request() -> None:
    reader = LimitedReader(io.BytesIO(b"a" * 100 + b"\n"), max_bytes=50)
    with pytest.raises(RequestTooLarge):
        reader.readline(65537)


def test_reader_reset_restores_budget() -> None:
    reader = LimitedReader(io.BytesIO(b"abc\n" * 20), max_bytes=8)
    first = [reader.readline(), reader.readline()]
    reader.reset()
    assert first == [b"abc\n", b"abc\n"]
    assert reader.readline() == b"abc\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 2.0
    assert deadline.remaining() == 3.0


def test_deadline_restart() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 9.0
    deadline.restart()
    assert deadline.remaining() == 5.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


def test_deadline_reader_reads(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    client.sendall(b"GET / HTTP/1.1\r\n")
    reader = io.BufferedReader(DeadlineReader(server, Deadline(5.0)))
    assert reader.readline() == b"GET / HTTP/1.1\r\n"


def test_deadline_reader_passed(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    client.sendall(b"GET")
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 5.0
    with pytest.raises(RequestTooSlow):
        DeadlineReader(server, deadline).read(3)


def test_deadline_reader_times_out(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    # Bytes keep arriving, but the line never ends before the deadline.
    client.sendall(b"G")
    reader = io.BufferedReader(DeadlineReader(server, Deadline(0.05)))
    with pytest.raises(RequestTooSlow):
        reader.readline()


def test_table_admits_up_to_limit() -> None:
    table = ConnectionTable(2)
    table.admit(10, "a")
    table.set_waiting(10, waiting=False)
    table.admit(11, "b")
    table.set_waiting(11, waiting=False)
    assert table.admit(12, "c") == (None, None)


def test_table_evicts_longest_waiting(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    server, client = pair
    clock = FakeClock()
    table = ConnectionTable(2, clock=clock)
    table.admit(server.fileno(), "slow")
    clock.now += 1.0
    table.admit(99999, "newer")
    admitted, evicted = table.admit(99998, "new")
    assert admitted is not None
    assert evicted is not None
    assert evicted.client == "slow"
    assert client.recv(1) == b""


def test_table_release_frees_slot() -> None:
    table = ConnectionTable(1)
    tracked, _ = table.admit(10, "a")
    assert tracked is not None
    table.release(tracked)
    assert len(table) == 0


def test_table_release_keeps_reused_fd() -> None:
    table = ConnectionTable(2)
    old, _ = table.admit(10, "old")
    assert old is not None
    table.release(old)
    table.admit(10, "new")
    table.release(old)
    assert len(table) == 1
