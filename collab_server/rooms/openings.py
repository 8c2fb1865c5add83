"""How many rooms a process holds, and how fast one client may bring rooms into memory.

Creating a room and loading a cold one cost the same (a store round trip, a document, a shape),
and an anonymous client made 10,474 rooms in 30 s over REST and 7,889 in 25 s by joining. Each
client address gets a token bucket of openings (a room brought into memory, or created over
REST); a join of a room already in memory costs nothing. Past the bucket, or past the number of
rooms a process holds, the request is refused with `RoomsBusy` (REST 429/503, WebSocket 1013).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from collab_server.metrics import Metrics

logger = logging.getLogger(__name__)

# Buckets of addresses that have not opened a room for this long are full again: forgotten.
FORGET_AFTER_SECONDS = 120.0
MAX_ADDRESSES = 100_000  # beyond this, the buckets are swept before a new one is made
# Rooms leave memory within COLLAB_ROOM_IDLE_SECONDS of their last client: retry after about that.
RETRY_WHEN_FULL_SECONDS = 30.0


class RoomsBusy(Exception):
    """A room cannot be opened now; `retry_after` seconds from now it may."""

    def __init__(self, reason: str, retry_after: float, *, per_client: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.per_client = per_client  # the client's own rate (429), not the process's cap (503)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class Openings:
    def __init__(self, per_minute: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute  # 0: no limit
        self._now = now
        self._buckets: dict[str, _Bucket] = {}

    def take(self, address: str | None) -> None:
        """Spend one opening of `address` (None: the server's own work, never limited)."""
        if address is None or not self.per_minute:
            return
        now = self._now()
        rate = self.per_minute / 60
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= MAX_ADDRESSES:
                self._forget_idle(now)
                while len(self._buckets) >= MAX_ADDRESSES:  # the oldest made go first
                    del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[address] = _Bucket(self.per_minute, now)
        bucket.tokens = min(self.per_minute, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1:
            raise RoomsBusy(
                f"more than {self.per_minute:g} rooms opened a minute from one address",
                (1 - bucket.tokens) / rate,
                per_client=True,
            )
        bucket.tokens -= 1

    def _forget_idle(self, now: float) -> None:
        idle = [a for a, b in self._buckets.items() if now - b.at > FORGET_AFTER_SECONDS]
        for address in idle:
            del self._buckets[address]


class RoomGate:
    """The process's cap on rooms in memory, then each client's openings; refusals counted in
    `/metrics` and logged."""

    def __init__(self, max_rooms: int, openings: Openings, metrics: Metrics) -> None:
        self.max_rooms = max_rooms
        self._openings = openings
        self._metrics = metrics

    def admit(self, room_id: str, opener: str | None, in_memory: int) -> None:
        """May `opener` bring `room_id` into memory beside `in_memory` rooms? `RoomsBusy` if
        not."""
        if in_memory >= self.max_rooms:
            self._metrics.openings_refused["full"] += 1
            logger.warning("refused to open room %s: %d in memory", room_id, self.max_rooms)
            raise RoomsBusy(
                f"the server holds all the rooms it may ({self.max_rooms})",
                RETRY_WHEN_FULL_SECONDS,
                per_client=False,
            )
        self.take(opener)

    def take(self, opener: str | None) -> None:
        """Spend one of `opener`'s openings (a room created over REST, or a load)."""
        try:
            self._openings.take(opener)
        except RoomsBusy:
            self._metrics.openings_refused["rate"] += 1
            logger.info("refused a room opening from %s: over its rate", opener)
            raise
