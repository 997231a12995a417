"""Run the checks at most once per cache period, one probe at a time.

A burst of /healthcheck requests costs one probe: the first request past
the cache period runs it, and the others get the last result or, before
there is one, wait for the running probe up to the deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from healthcheck.checks import CheckResult
from healthcheck.metrics import HealthMetrics

log = logging.getLogger(__name__)

Check = Callable[[], CheckResult]


@dataclass(frozen=True)
class HealthResult:
    """The outcome of one probe: every check's result, in the order checked."""

    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    @property
    def failing(self) -> CheckResult | None:
        """The first failing check, or None when healthy."""
        for result in self.results:
            if not result.ok:
                return result
        return None


class Prober:
    """Run named checks in parallel, each bounded by the deadline, and cache."""

    def __init__(
        self,
        *,
        checks: dict[str, Check],
        deadline_seconds: float,
        cache_seconds: float,
        metrics: HealthMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = checks
        self.deadline_seconds = deadline_seconds
        self.cache_seconds = cache_seconds
        self.metrics = metrics
        self._clock = clock
        self._condition = threading.Condition()
        self._last: HealthResult | None = None
        self._last_at = 0.0
        self._probing = False
        # A check that overruns the deadline keeps its worker until its own
        # timeout ends it, so the pool has room for one overrun per check.
        self._pool = ThreadPoolExecutor(
            max_workers=2 * len(checks), thread_name_prefix="check"
        )

    def current(self) -> HealthResult:
        """Return the cached result while fresh, else probe.

        While another thread probes, return the last result at once, or wait
        for the first probe up to the deadline.
        """
        with self._condition:
            last = self._last
            if last is not None and self._clock() - self._last_at < self.cache_seconds:
                return last
            if self._probing:
                return self._wait_for_probe()
            self._probing = True
        try:
            result = self.probe()
        except BaseException:
            with self._condition:
                self._probing = False
                self._condition.notify_all()
            raise
        with self._condition:
            self._last = result
            self._last_at = self._clock()
            self._probing = False
            self._condition.notify_all()
        return result

    def _wait_for_probe(self) -> HealthResult:
        # Called with the condition held while another thread probes.
        if self._last is not None:
            return self._last
        self._condition.wait_for(
            lambda: not self._probing, timeout=self.deadline_seconds
        )
        if self._last is not None:
            return self._last
        pending = CheckResult(
            check="probe",
            ok=False,
            reason="pending",
            detail="the first probe has not finished",
            seconds=self.deadline_seconds,
        )
        return HealthResult(results=(pending,))

    def probe(self) -> HealthResult:
        """Run every check now, in parallel; a check past the deadline fails."""
        started = self._clock()
        futures = {
            name: self._pool.submit(check) for name, check in self.checks.items()
        }
        wait(list(futures.values()), timeout=self.deadline_seconds)
        results = []
        for name, future in futures.items():
            if future.done():
                results.append(self._outcome(name, future.result, started))
            else:
                future.cancel()
                results.append(
                    CheckResult(
                        check=name,
                        ok=False,
                        reason="timeout",
                        detail=f"{name} check took over {self.deadline_seconds} s",
                        seconds=self._clock() - started,
                    )
                )
        result = HealthResult(results=tuple(results))
        self._record(result)
        return result

    def _outcome(
        self, name: str, get: Callable[[], CheckResult], started: float
    ) -> CheckResult:
        try:
            return get()
        except Exception as error:
            log.exception("%s check raised %s", name, type(error).__name__)
            return CheckResult(
                check=name,
                ok=False,
                reason="error",
                detail=f"{name} check raised {type(error).__name__}",
                seconds=self._clock() - started,
            )

    def _record(self, result: HealthResult) -> None:
        metrics = self.metrics
        metrics.probes.inc()
        for check in result.results:
            metrics.checks.inc(check=check.check)
            metrics.latency.observe(check.seconds, check=check.check)
            if not check.ok:
                metrics.failures.inc(check=check.check, reason=check.reason)
            if check.enclave_state is not None:
                self._set_enclave_state(check.enclave_state)
        metrics.healthy.set(1.0 if result.ok else 0.0)
        self._log_change(result)

    def _set_enclave_state(self, state: str) -> None:
        for known in ("RUNNING", "TERMINATING", "EMPTY", "NONE", "UNKNOWN"):
            self.metrics.enclave_state.set(1.0 if known == state else 0.0, state=known)

    def _log_change(self, result: HealthResult) -> None:
        previous = self._last
        before = _summary(previous) if previous is not None else None
        after = _summary(result)
        if before == after:
            return
        failing = result.failing
        if failing is None:
            log.info("health changed to healthy", extra={"health": "healthy"})
            return
        log.warning(
            "health changed to unhealthy: %s check failed (%s): %s",
            failing.check,
            failing.reason,
            failing.detail,
            extra={
                "health": "unhealthy",
                "check": failing.check,
                "reason": failing.reason,
            },
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _summary(result: HealthResult) -> tuple[tuple[str, str], ...]:
    return tuple((check.check, check.reason) for check in result.results)
