"""Counters, gauges and histograms rendered in the Prometheus text format 0.0.4."""

from __future__ import annotations

import math
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Probe latency buckets in seconds: the deadline is a few seconds at most.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _render_labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in pairs)
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Metric:
    """One metric family; subclasses hold samples keyed by label set."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help_text = help_text
        self._lock = threading.Lock()

    def render(self) -> list[str]:
        lines = [
            f"# HELP {self.name} {self.help_text}",
            f"# TYPE {self.name} {self.kind}",
        ]
        return lines + self._samples()

    def _samples(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(_labels(labels), 0.0)

    def _samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_render_labels(key)} {_number(v)}" for key, v in items]


class Gauge(Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str) -> None:
        super().__init__(name, help_text)
        self._values: dict[Labels, float] = {}

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[_labels(labels)] = value

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(_labels(labels), 0.0)

    def _samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_render_labels(key)} {_number(v)}" for key, v in items]


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[index] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            counts = self._counts.get(_labels(labels))
            return counts[-1] if counts else 0

    def _samples(self) -> list[str]:
        lines = []
        with self._lock:
            items = sorted((key, list(counts)) for key, counts in self._counts.items())
            sums = dict(self._sums)
        for key, counts in items:
            for index, bound in enumerate(self.buckets):
                count = counts[index]
                bucket = _render_labels(key, (("le", _number(bound)),))
                lines.append(f"{self.name}_bucket{bucket} {count}")
            lines.append(f"{self.name}_sum{_render_labels(key)} {_number(sums[key])}")
            lines.append(f"{self.name}_count{_render_labels(key)} {counts[-1]}")
        return lines


class HealthMetrics:
    """The metrics the health service exports on /metrics."""

    def __init__(self) -> None:
        self.probes = Counter("notary_health_probes_total", "Probes run (all checks).")
        self.checks = Counter("notary_health_checks_total", "Checks run, by check.")
        self.failures = Counter(
            "notary_health_check_failures_total", "Failed checks, by check and reason."
        )
        self.latency = Histogram(
            "notary_health_check_duration_seconds", "Time per check, in seconds."
        )
        self.healthy = Gauge(
            "notary_health_healthy", "1 when the last probe passed all checks, else 0."
        )
        self.enclave_state = Gauge(
            "notary_health_enclave_state",
            "1 for the enclave state the last probe saw (NONE: no enclave).",
        )
        self.requests = Counter(
            "notary_health_http_requests_total", "HTTP requests, by path and status."
        )
        self.rejected = Counter(
            "notary_health_connections_rejected_total",
            "Connections closed unserved because max_connections were open.",
        )
        self.evicted = Counter(
            "notary_health_connections_evicted_total",
            "Waiting connections closed to make room for a new one at max_connections.",
        )
        self.slow_closed = Counter(
            "notary_health_slow_connections_closed_total",
            "Connections closed for missing the deadline, by stage "
            "(handshake, request).",
        )

    def render(self) -> str:
        families: list[Metric] = [
            self.probes,
            self.checks,
            self.failures,
            self.latency,
            self.healthy,
            self.enclave_state,
            self.requests,
            self.rejected,
            self.evicted,
            self.slow_closed,
        ]
        lines: list[str] = []
        for family in families:
            lines.extend(family.render())
        return "\n".join(lines) + "\n"
