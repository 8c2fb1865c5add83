"""How fast one client's messages are read: a token bucket per connection.

A client over its rate is not closed and loses nothing: its socket is simply read more slowly, so
TCP pushes back on it while every other client in its room carries on at full speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    """`rate` messages a second, in bursts of up to one second's worth; 0 means no limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = rate
        self._last = clock()

    def take(self) -> float:
        """Count one message; the seconds to wait before reading the next (0: none)."""
        if not self._rate:
            return 0.0
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate) - 1
        self._last = now
        return max(0.0, -self._tokens / self._rate)
