"""The open connections of the health service, and which one to close when full.

When max_connections are open, a new connection takes the place of the one
that has waited longest for a complete request (a slow or idle client), so
slow clients cannot lock health checkers out. A connection that is serving
a request is never closed for a new one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Tracked:
    """One open connection: its file descriptor and since when it has waited."""

    fd: int
    client: str
    # None while a request is being served.
    waiting_since: float | None


class ConnectionTable:
    """Count open connections up to a cap; make room by closing the longest waiting."""

    def __init__(
        self, limit: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[int, Tracked] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def admit(self, fd: int, client: str) -> tuple[Tracked | None, Tracked | None]:
        """Register a new connection; return it (None if refused) and the one closed.

        The closed connection's socket is shut down, which wakes its thread;
        that thread still closes the socket itself.
        """
        with self._lock:
            evicted = None
            if len(self._open) >= self.limit:
                evicted = self._longest_waiting()
                if evicted is None:
                    return None, None
                del self._open[evicted.fd]
                _shut_down(evicted.fd)
            tracked = Tracked(fd=fd, client=client, waiting_since=self._clock())
            self._open[fd] = tracked
            return tracked, evicted

    def set_waiting(self, fd: int, *, waiting: bool) -> None:
        """Mark a connection as waiting for a request, or as serving one."""
        with self._lock:
            tracked = self._open.get(fd)
            if tracked is not None:
                tracked.waiting_since = self._clock() if waiting else None

    def release(self, tracked: Tracked) -> None:
        """Forget a connection; call before its socket is closed."""
        with self._lock:
            if self._open.get(tracked.fd) is tracked:
                del self._open[tracked.fd]

    # NOTE: there is no cap per client address, because clients behind a load
    # balancer without client IP preservation share one. A flood of more than
    # `limit` new connections within one request's few milliseconds can still
    # close a health checker's connection.
    def _longest_waiting(self) -> Tracked | None:
        waiting = [t for t in self._open.values() if t.waiting_since is not None]
        if not waiting:
            return None
        return min(waiting, key=lambda tracked: tracked.waiting_since or 0.0)


def _shut_down(fd: int) -> None:
    # The caller holds the table's lock and the connection is still in the
    # table, so its thread has not closed the descriptor yet. Shutting down a
    # duplicate ends the connection for every descriptor that refers to it.
    with contextlib.suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()
