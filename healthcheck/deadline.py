"""An absolute deadline per request, enforced on every read from the socket.

A socket timeout alone restarts with each read, so a client that sends one
byte every few seconds would hold its connection for ever.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable


class RequestTooSlow(Exception):
    """The TLS handshake or the request line and headers missed the deadline."""


class Deadline:
    """A point in time `seconds` after the last restart."""

    def __init__(
        self, seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._clock = clock
        self.restart()

    def restart(self) -> None:
        """Start the time budget of a new request."""
        self.started = self._clock()
        self._end = self.started + self.seconds

    def remaining(self) -> float:
        """Return the seconds left; 0 or less once the deadline has passed."""
        return self._end - self._clock()


class DeadlineReader(io.RawIOBase):
    """Read a socket with the timeout set to the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self.deadline.remaining()
        if remaining <= 0:
            raise RequestTooSlow
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        # socket.timeout, not TimeoutError: Python 3.9 keeps them apart.
        except socket.timeout:  # noqa: UP041
            raise RequestTooSlow from None
