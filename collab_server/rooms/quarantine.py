"""Rooms whose stored log cannot be replayed: kept out of memory until an admin recovers them.

A load that fails is not retried on every join (each would pay for the whole failed replay):
the room is refused at once for a while, then one load tries again (another process may have
taken back the update that failed), waiting twice as long after each failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

FIRST_RETRY_SECONDS = 60.0
LAST_RETRY_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    room_id: str
    reason: str
    since: datetime
    retry_after: float  # seconds between tries, doubled by each failed try
    next_try: float  # time.monotonic() after which one load may try again


class RoomQuarantined(Exception):
    """The room's stored log cannot be replayed; an admin can recover it."""

    def __init__(self, record: QuarantineRecord) -> None:
        super().__init__(f"room {record.room_id!r} is quarantined: {record.reason}")
        self.record = record


class Quarantine:
    def __init__(self) -> None:
        self._records: dict[str, QuarantineRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, room_id: str) -> QuarantineRecord | None:
        return self._records.get(room_id)

    def check(self, room_id: str) -> None:
        """Raise `RoomQuarantined` unless the room may be loaded now."""
        record = self._records.get(room_id)
        if record is not None and time.monotonic() < record.next_try:
            raise RoomQuarantined(record)

    def add(self, room_id: str, reason: str) -> QuarantineRecord:
        previous = self._records.get(room_id)
        wait = FIRST_RETRY_SECONDS
        if previous is not None:
            wait = min(previous.retry_after * 2, LAST_RETRY_SECONDS)
        since = previous.since if previous is not None else datetime.now(UTC)
        record = QuarantineRecord(room_id, reason, since, wait, time.monotonic() + wait)
        self._records[room_id] = record
        return record

    def lift(self, room_id: str) -> None:
        self._records.pop(room_id, None)
