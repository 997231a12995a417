"""The prober: one probe per cache period, deadlines, metrics and state logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from healthcheck.checks import CheckResult
from healthcheck.metrics import HealthMetrics
from healthcheck.prober import Prober


def passing(name: str, calls: list[str] | None = None) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        if calls is not None:
            calls.append(name)
        return CheckResult(check=name, ok=True, reason="ok", detail="", seconds=0.01)

    return check


def failing(name: str, reason: str) -> Callable[[], CheckResult]:
    def check() -> CheckResult:
        return CheckResult(check=name, ok=False, reason=reason, detail="x", seconds=0)

    return check


@pytest.fixture
def make_prober() -> Iterator[Callable[..., Prober]]:
    probers: list[Prober] = []

    def make(
        checks: dict[str, Callable[[], CheckResult]],
        *,
        deadline_seconds: float = 1.0,
        cache_seconds: float = 60.0,
    ) -> Prober:
        prober = Prober(
            checks=checks,
            metrics=HealthMetrics(),
            deadline_seconds=deadline_seconds,
            cache_seconds=cache_seconds,
        )
        probers.append(prober)
        return prober

    yield make
    for prober in probers:
        prober.close()


def test_healthy_when_all_pass(make_prober: Callable[..., Prober]) -> None:
    result = make_prober({"a": passing("a"), "b": passing("b")}).current()
    assert result.ok
    assert result.failing is None


def test_first_failing_named(make_prober: Callable[..., Prober]) -> None:
    prober = make_prober(
        {"enclave": failing("enclave", "debug-mode"), "notary": failing("notary", "x")}
    )
    failing_check = prober.current().failing
    assert failing_check is not None
    assert failing_check.check == "enclave"
    assert failing_check.reason == "debug-mode"


def test_cached_within_period(make_prober: Callable[..., Prober]) -> None:
    calls: list[str] = []
    prober = make_prober({"a": passing("a", calls)})
    for _ in range(5):
        prober.current()
    assert calls == ["a"]


def test_probes_again_after_period(make_prober: Callable[..., Prober]) -> None:
    calls: list[str] = []
    now = [0.0]
    prober = Prober(
        checks={"a": passing("a", calls)},
        deadline_seconds=1.0,
        cache_seconds=2.0,
        metrics=HealthMetrics(),
        clock=lambda: now[0],
    )
    prober.current()
    now[0] = 1.0
    prober.current()
    now[0] = 3.0
    prober.current()
    prober.close()
    assert calls == ["a", "a"]


def test_burst_waits_for_one_probe(make_prober: Callable[..., Prober]) -> None:
    release = threading.Event()
    calls: list[str] = []

    def slow() -> CheckResult:
        calls.append("slow")
        release.wait(5)
        return CheckResult(check="slow", ok=True, reason="ok", detail="", seconds=0)

    prober = make_prober({"slow": slow}, deadline_seconds=5.0)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(prober.current().ok))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    release.set()
    for thread in threads:
        thread.join()
    assert calls == ["slow"]
    assert results == [True] * 10


def test_overrun_check_times_out(make_prober: Callable[..., Prober]) -> None:
    release = threading.Event()

    def stuck() -> CheckResult:
        release.wait(5)
        return CheckResult(check="stuck", ok=True, reason="ok", detail="", seconds=0)

    prober = make_prober({"stuck": stuck, "a": passing("a")}, deadline_seconds=0.05)
    result = prober.current()
    release.set()
    assert result.failing is not None
    assert result.failing.check == "stuck"
    assert result.failing.reason == "timeout"


def test_raising_check_fails(make_prober: Callable[..., Prober]) -> None:
    def broken() -> CheckResult:
        raise RuntimeError("bug")

    result = make_prober({"broken": broken}).current()
    assert result.failing is not None
    assert result.failing.reason == "error"


def test_metrics_count_failures(make_prober: Callable[..., Prober]) -> None:
    prober = make_prober({"enclave": failing("enclave", "no-enclave")}, cache_seconds=0)
    prober.current()
    prober.current()
    metrics = prober.metrics
    assert metrics.probes.value() == 2
    assert metrics.failures.value(check="enclave", reason="no-enclave") == 2
    assert metrics.healthy.value() == 0
    assert metrics.latency.count(check="enclave") == 2


def test_enclave_state_gauge(make_prober: Callable[..., Prober]) -> None:
    def terminating() -> CheckResult:
        return CheckResult(
            check="enclave",
            ok=False,
            reason="not-running",
            detail="",
            seconds=0,
            enclave_state="TERMINATING",
        )

    prober = make_prober({"enclave": terminating})
    prober.current()
    assert prober.metrics.enclave_state.value(state="TERMINATING") == 1
    assert prober.metrics.enclave_state.value(state="RUNNING") == 0


def test_logs_only_changes(
    make_prober: Callable[..., Prober], caplog: pytest.LogCaptureFixture
) -> None:
    state = {"ok": True}

    def flipping() -> CheckResult:
        if state["ok"]:
            return CheckResult(check="e", ok=True, reason="ok", detail="", seconds=0)
        return CheckResult(
            check="e", ok=False, reason="debug-mode", detail="", seconds=0
        )

    prober = make_prober({"e": flipping}, cache_seconds=0)
    with caplog.at_level(logging.INFO, logger="healthcheck.prober"):
        prober.current()
        prober.current()
        state["ok"] = False
        prober.current()
        prober.current()
    health = [record.__dict__["health"] for record in caplog.records]
    assert health == ["healthy", "unhealthy"]
    assert caplog.records[1].__dict__["reason"] == "debug-mode"
