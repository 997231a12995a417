"""A request-rate limit for Route 53 calls shared by the threads of a process.

Route 53 allows about five API requests per second per account. Regions roll
out on concurrent threads and all call it, so each call waits for its slot
here. The adaptive retry mode of the clients covers throttling errors caused
by other processes using the same account.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit


class RateLimiter:
    """Space calls at least 1 / `per_second` seconds apart across threads."""

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second = per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller's slot comes."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self.per_second
        if slot > now:
            self._sleep(slot - now)


ROUTE53_LIMIT = RateLimiter(per_second=5.0)


def is_rate_limited(client: Any) -> bool:
    """Tell whether the client talks to Route 53 itself.

    The limit is Route 53's. The local emulator listens on loopback and has no
    such limit, so spacing its calls would only slow local runs down.
    """
    meta = getattr(client, "meta", None)
    host = urlsplit(getattr(meta, "endpoint_url", "") or "").hostname
    if not host:
        return True
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def call(client: Any, operation: str, **params: Any) -> Any:
    """Call a Route 53 operation in its turn under the process-wide limit."""
    if is_rate_limited(client):
        ROUTE53_LIMIT.wait()
    return getattr(client, operation)(**params)
