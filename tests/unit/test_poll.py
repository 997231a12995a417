"""Our poller: returns the first result, times out with the description."""

from __future__ import annotations

import pytest

from infra.poll import PollTimeout, poll


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_returns_first_value() -> None:
    clock = FakeClock()
    answers = iter([None, None, "ready"])

    result = poll(
        lambda: next(answers),
        timeout=60,
        interval=5,
        description="the image",
        clock=clock.time,
        sleep=clock.sleep,
    )

    assert result == "ready"
    assert clock.sleeps == [5, 5]


def test_poll_times_out() -> None:
    clock = FakeClock()
    with pytest.raises(PollTimeout) as caught:
        poll(
            lambda: None,
            timeout=12,
            interval=5,
            description="ami-1 in eu-west-1",
            clock=clock.time,
            sleep=clock.sleep,
        )

    assert "ami-1 in eu-west-1" in str(caught.value)
    assert clock.now >= 12
