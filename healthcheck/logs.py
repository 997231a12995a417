"""Structured logs: one JSON object per line on standard output, repeats limited.

journald stores each line as one entry; the JSON keeps the fields searchable.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "repeated"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        # timezone.utc, not datetime.UTC, which Python 3.9 lacks.
        utc = timezone.utc  # noqa: UP017
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        repeated = getattr(record, "repeated", 0)
        if repeated:
            entry["repeated"] = repeated
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, sort_keys=False)


class RepeatFilter(logging.Filter):
    """Pass the first of identical messages per window, then one per window.

    A passed record carries `repeated`, the count of copies dropped since the
    previous one passed, so the log still shows how often it happened.
    """

    def __init__(
        self, window_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # Message key to (time it last passed, copies dropped since).
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window_seconds:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            record.repeated = seen[1] if seen else 0
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:
                self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        for key, (passed, _) in list(self._seen.items()):
            if now - passed >= self.window_seconds:
                del self._seen[key]


def setup_logging(*, repeat_seconds: float, level: int = logging.INFO) -> None:
    """Send every record of the health service to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter(repeat_seconds))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
