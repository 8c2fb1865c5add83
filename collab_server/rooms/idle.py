"""One timer per room that nobody holds: when it fires the room is unloaded, unless a lease took
the room again first (which cancels it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class IdleTimers:
    def __init__(self, seconds: float, on_idle: Callable[[str], None]) -> None:
        self._seconds = seconds
        self._on_idle = on_idle
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def start(self, room_id: str) -> None:
        self.cancel(room_id)
        self._timers[room_id] = asyncio.get_running_loop().call_later(
            self._seconds, self._fire, room_id
        )

    def cancel(self, room_id: str) -> None:
        timer = self._timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _fire(self, room_id: str) -> None:
        del self._timers[room_id]
        self._on_idle(room_id)
