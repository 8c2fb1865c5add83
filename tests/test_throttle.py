"""The per-connection token bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from collab_server.transport.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_one_seconds_worth_passes_then_the_rate_holds() -> None:
    clock = Clock()
    throttle = Throttle(10, clock)
    assert [throttle.take() for _ in range(10)] == [0.0] * 10
    assert throttle.take() == pytest.approx(0.1)  # the 11th waits for a token
    clock.now += 0.1
    assert throttle.take() == pytest.approx(0.1)  # the token it waited for is spent
    clock.now += 5  # an idle spell refills the bucket, but only to one second's worth
    assert [throttle.take() for _ in range(10)] == [0.0] * 10
    assert throttle.take() > 0


def test_zero_means_no_limit() -> None:
    throttle = Throttle(0, Clock())
    assert all(throttle.take() == 0 for _ in range(10_000))
