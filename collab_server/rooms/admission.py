"""Which checked updates a room's document allows, and in what order they may be stored.

Every update a room stores passes here, one batch at a time: the shape check against the
document (`rooms.shape`), and the updates that skip clocks the room has not seen yet. Such an
update (a client that reconnected and typed before its sync step 2, or whose old connection's
updates are still being read) waits until the missing ones arrive: yrs would integrate it after
a hole and could then lose the items that fill it. Bounded: beyond `MAX_PARKED_UPDATES` or
`MAX_PARKED_BYTES` it is refused (4422), as Yjs would hold it. Touches only the shape, never the
document: may run in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NewType

from pycrdt import get_state

from collab_server.protocol.update import (
    DecodedUpdate,
    UpdateLimits,
    UpdateRefused,
    decode_update,
    refused,
)
from collab_server.rooms.document import META_MAP, is_panic
from collab_server.rooms.shape import DocumentShape
from collab_server.rooms.snapshot import check_stored

logger = logging.getLogger(__name__)

MAX_PARKED_UPDATES = 64
MAX_PARKED_BYTES = 1024 * 1024

CheckedUpdate = NewType("CheckedUpdate", DecodedUpdate)
"""An update decoded within the limits and read by yrs (`Room.check`): the only kind a room
stores. What the document itself must allow is checked when it is stored."""


@dataclass(slots=True)
class Admitted:
    """What `Admission.admit` lets through of a batch."""

    updates: list[CheckedUpdate] = field(default_factory=list)  # allowed, in the store's order
    refusal: UpdateRefused | None = None  # why the update after them was refused
    # Waiting updates refused once their clocks arrived (their senders heard nothing then).
    parked_refused: list[UpdateRefused] = field(default_factory=list)
    meta: bool = False  # whether they touch the `meta` map
    # The items they add that the document does not hold (client, start clock, end clock):
    # what their author wrote.
    placed: list[tuple[int, int, int]] = field(default_factory=list)


def check_update(update: bytes, limits: UpdateLimits) -> CheckedUpdate:
    """Decode an update within `limits` and make sure yrs reads it too; raise `UpdateRefused`.
    Needs no document: may run in a thread."""
    decoded = decode_update(update, limits)
    try:
        get_state(update)
    except ValueError as error:
        raise refused(f"the CRDT core cannot decode it: {error}") from error
    except BaseException as error:
        if not is_panic(error):
            raise
        raise refused(f"the CRDT core cannot decode it: {error}") from error
    return CheckedUpdate(decoded)


class Admission:
    def __init__(
        self,
        room_id: str,
        shape: DocumentShape,
        limits: UpdateLimits,
    ) -> None:
        self._room_id = room_id
        self._shape = shape
        self._limits = limits
        self._stale = False  # the shape holds updates that were checked but not stored
        self._encoded = b""  # the document's state to rebuild a stale shape from
        self._parked: list[CheckedUpdate] = []  # updates waiting for the clocks they skip

    def admit(self, updates: list[CheckedUpdate], parkable: bool) -> Admitted:
        """The updates the document allows, up to the first it refuses; `parkable`: one that
        skips clocks may wait for them (a client's, not a REST write's). Touches the shape
        only: may run in a thread."""
        if self._stale:
            self._shape = check_stored([self._encoded], self._limits)
            self._stale = False
        admitted = Admitted()
        for update in updates:
            try:
                admitted.meta |= META_MAP in self._shape.admit(update)
            except UpdateRefused as error:
                if not (error.kind == "gap" and parkable and self._park(update)):
                    admitted.refusal = error
                    return admitted
                continue
            admitted.updates.append(update)
            admitted.placed += self._shape.placed
            if self._parked:
                self._unpark(admitted)
        return admitted

    def _park(self, update: CheckedUpdate) -> bool:
        parked_bytes = sum(len(parked.data) for parked in self._parked) + len(update.data)
        if len(self._parked) >= MAX_PARKED_UPDATES or parked_bytes > MAX_PARKED_BYTES:
            return False
        self._parked.append(update)
        logger.info("room %s: an update waits for the clocks it skips", self._room_id)
        return True

    def _unpark(self, admitted: Admitted) -> None:
        """Admit the parked updates whose missing clocks have arrived (into `admitted`)."""
        while True:
            waiting = []
            for update in self._parked:
                try:
                    admitted.meta |= META_MAP in self._shape.admit(update)
                except UpdateRefused as error:
                    if error.kind == "gap":
                        waiting.append(update)
                    else:
                        admitted.parked_refused.append(error)
                    continue
                admitted.updates.append(update)
                admitted.placed += self._shape.placed
            moved, self._parked = len(waiting) != len(self._parked), waiting
            if not moved or not waiting:
                return

    def admit_stored(self, update: DecodedUpdate) -> bool:
        """Record an update the store has already (another process's): only what protects
        yrs is checked. Whether it touches `meta`."""
        return META_MAP in self._shape.admit(update, strict=False)

    def lost_sync(self, encoded: bytes) -> None:
        """Admitted updates were not stored: rebuild the shape from the document (`encoded`)
        before the next check."""
        self._stale = True
        self._encoded = encoded

    def reset(self, shape: DocumentShape) -> None:
        """The document was rebuilt from the store, with this shape."""
        self._shape = shape
        self._stale = False
