"""Who wrote a room's items: ranges of one client's clocks, stamped with their author by the
server as it stores them, and kept in the store beside the room (`Store.save_authorship`).

The author is never what an update claims. It is the person behind the connection that sent it:
with access control on, the name (or `sub`) in their token; with it off (or a token that names
nobody), the name their presence announces, marked self-declared. Only items the document did
not hold are stamped (`Admitted.placed`), so sending someone else's items again claims nothing.
Text written over REST or by a restore is the server's.

Stamps are cheap on the hot path (a dict lookup per client in a batch): consecutive items of one
client by one author within `MERGE_SECONDS` extend one range, and ranges go to the store in the
background, at most `FLUSH_SECONDS` after they were made, and when the room unloads. A crash
loses at most that much attribution (those lines show no author), never an edit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from collab_server.rooms.jobs import Jobs
from persistence import Author, AuthorRange, Store

logger = logging.getLogger(__name__)

SERVER = Author("server")  # REST writes and restores: the name `Editors` gives them too
ANONYMOUS = "anonymous"  # a connection that announced no name
MERGE_SECONDS = 60.0
FLUSH_SECONDS = 2.0
# Ranges one loaded room may add (each a row in the store): far above a day of a mob's typing
# (an hour of two people makes about 120), and a bound on a client that sends many client ids.
MAX_NEW_RANGES = 100_000
MAX_OPEN_CLIENTS = 10_000  # clients whose last range may still grow
MAX_NAME_CHARS = 100

Key = tuple[int, int]  # (client, clock) of a range's first item


@dataclass(slots=True)
class _Range:
    client: int
    clock: int
    length: int
    author: Author
    started: float  # time.time() of its first items
    time: float  # and of its last

    def saved(self) -> AuthorRange:
        return AuthorRange(
            self.client,
            self.clock,
            self.length,
            self.author,
            datetime.fromtimestamp(self.time, UTC),
        )


def named(name: str | None, user: str | None = None, *, self_declared: bool) -> Author:
    """An author from what a token or a presence state says, cut to a bounded size (before the
    cache: a presence name may be 64 KiB)."""
    user = user[:MAX_NAME_CHARS] if user else None
    return _author((name or user or ANONYMOUS)[:MAX_NAME_CHARS], user, self_declared)


@functools.lru_cache(maxsize=4096)  # one object per person: stamps compare them by identity
def _author(name: str, user: str | None, self_declared: bool) -> Author:
    return Author(name, user, self_declared)


class Authorship:
    """One loaded room's stamps not yet in the store, and the last range of each client."""

    def __init__(self, room_id: str) -> None:
        self._room_id = room_id
        self._open: dict[int, _Range] = {}
        self._unsaved: dict[Key, _Range] = {}
        self._made = 0

    @property
    def unsaved(self) -> bool:
        return bool(self._unsaved)

    def record(self, placed: list[tuple[int, int, int]], author: Author) -> None:
        """`author` wrote these items (client, start clock, end clock), just now."""
        now = time.time()
        for client, start, end in placed:
            last = self._open.get(client)
            if (
                last is not None
                and last.clock + last.length == start
                and (last.author is author or last.author == author)
                and now - last.started < MERGE_SECONDS
            ):
                last.length = end - last.clock
                last.time = now
                self._unsaved[(client, last.clock)] = last
                continue
            if self._made >= MAX_NEW_RANGES:
                if self._made == MAX_NEW_RANGES:
                    logger.warning(
                        "room %s: over %d authorship ranges; no more kept until it reloads",
                        self._room_id,
                        MAX_NEW_RANGES,
                    )
                    self._made += 1
                continue
            if len(self._open) >= MAX_OPEN_CLIENTS:
                self._open.clear()  # a range that is not open only stops growing
            fresh = _Range(client, start, end - start, author, now, now)
            self._open[client] = self._unsaved[(client, start)] = fresh
            self._made += 1

    def take(self) -> dict[Key, _Range]:
        """The ranges to save (made or grown since the last take)."""
        taken, self._unsaved = self._unsaved, {}
        return taken

    def put_back(self, taken: dict[Key, _Range]) -> None:
        """Saving `taken` failed: they go with the next save."""
        for key, found in taken.items():
            self._unsaved.setdefault(key, found)


class AuthorshipWriter:
    """Saves rooms' stamps in the background: `FLUSH_SECONDS` after the first unsaved one, on a
    timer (not a sleeping job, which would hold up the server's stop: unloading saves anyway)."""

    def __init__(self, store: Store, jobs: Jobs) -> None:
        self._store = store
        self._jobs = jobs
        self._timers: dict[str, asyncio.TimerHandle] = {}  # rooms with a save scheduled

    def after_edit(self, room_id: str, authorship: Authorship) -> None:
        if authorship.unsaved and room_id not in self._timers and self._jobs.running:
            self._timers[room_id] = asyncio.get_running_loop().call_later(
                FLUSH_SECONDS, self._save_soon, room_id, authorship
            )

    def cancel_all(self) -> None:
        """The rooms are closing: each saves its stamps as it unloads."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _save_soon(self, room_id: str, authorship: Authorship) -> None:
        del self._timers[room_id]
        if self._jobs.running:
            self._jobs.start(self.save(room_id, authorship), f"room {room_id}: authorship")

    async def save(self, room_id: str, authorship: Authorship) -> None:
        """Save what the room stamped since the last save (now: a reader wants it, or the room
        leaves memory)."""
        taken = authorship.take()
        if not taken:
            return
        try:
            await self._store.save_authorship(room_id, [found.saved() for found in taken.values()])
        except BaseException:
            authorship.put_back(taken)
            raise
