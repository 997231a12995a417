"""Poll until a condition holds, with a deadline: our own waiter.

botocore's waiters have fixed budgets (the image waiter gives up after ten
minutes) and no progress reporting, so long waits use this instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PollTimeout(Exception):
    """The condition did not hold before the deadline."""


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float,
    description: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `check` every `interval` seconds until it returns a value that is
    not None, and return that value.

    Raise PollTimeout naming `description` when `timeout` seconds pass first.
    """
    deadline = clock() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if clock() >= deadline:
            raise PollTimeout(
                f"timed out after {timeout:.0f} s waiting for {description}"
            )
        log.debug("Waiting for %s", description)
        sleep(interval)
