"""The frames the fuzzer sends: valid updates from pycrdt sessions, the same mutated struct by
struct or byte by byte, hostile updates built from nothing, and frame-level mutations.

`FrameGenerator.group(room)` returns the next group of frames for one room, to be sent in order
on one connection (most groups hold one frame). Each frame says what it is (`kind`, the names of
its generator and mutations) and whether the server is expected to close the connection after
it, so that a connection sends those last and does not waste its other frames.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.fuzz.craft import CRAFTERS
from bench.fuzz.docs import concurrent_sessions, session
from bench.fuzz.frames import protocol_frame, update_frame
from bench.fuzz.mutate import STRUCT_MUTATIONS, Known
from bench.fuzz.rewrite import mutate_bytes, rename_clients
from bench.fuzz.ydecode import DecodeError, decode_update
from bench.fuzz.yencode import encode_update

DEFAULT_WEIGHTS = {"valid": 40, "mutated": 25, "bytes": 7, "crafted": 8, "protocol": 20}
REST_SHARE = 0.03  # of update frames, sent with POST /api/rooms/{room}/update instead
TEXT_FRAME_SHARE = 0.001
OVERSIZE_SHARE = 0.0001
SESSIONS_PER_ROOM = 6
LIBRARY_SESSIONS = 3000  # sessions made with pycrdt; later ones reuse them (see _new_sessions)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: str
    data: bytes
    closes: bool = False  # the server should close the connection after this frame
    via: str = "ws"  # "ws", "rest" (a POST of the raw update) or "text" (a text frame)
    update: bytes | None = None  # the Yjs update it carries, if any


# Whether yrs decodes each update (None: cannot tell), from a child process (see oracle.py).
DecodeCheck = Callable[[list[bytes]], list[bool] | None]


class _Stream:
    """The updates of one session still to send, renamed on the way out when the session is
    a reused one (renaming only what is sent: many sessions are dropped half-way)."""

    __slots__ = ("_names", "_rng", "updates")

    def __init__(
        self, updates: list[bytes], rng: random.Random, names: dict[int, int] | None = None
    ) -> None:
        self.updates = deque(updates)
        self._rng = rng
        self._names = names

    def _renamed(self, update: bytes) -> bytes:
        names, rng = self._names, self._rng
        if names is None:
            return update

        def rename(client: int) -> int:
            return names.setdefault(client, rng.randrange(1, 2**53))

        return rename_clients([update], rename)[0]

    def next(self) -> bytes:
        return self._renamed(self.updates[0])

    def pop(self) -> bytes:
        return self._renamed(self.updates.popleft())


class FrameGenerator:
    def __init__(
        self,
        seed: int,
        *,
        weights: dict[str, float] | None = None,
        disabled: frozenset[str] = frozenset(),
        huge: float = 0.002,
        max_message_bytes: int = 8 * 1024 * 1024,
        decode_check: DecodeCheck | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self._decode_check = decode_check
        weights = {**DEFAULT_WEIGHTS, **(weights or {})}
        self._categories = [name for name in weights if name not in disabled]
        self._weights = [weights[name] for name in self._categories]
        self._crafters = [name for name in CRAFTERS if name not in disabled]
        self._mutations = [name for name in STRUCT_MUTATIONS if name not in disabled]
        self._disabled = disabled
        self._huge = huge  # chance that a crafted shape takes the size of the known crashes
        self._max_message_bytes = max_message_bytes
        # Editing sessions per room and lane (a connection's worker): one session's updates must
        # reach the server in order, and two connections do not keep each other's order.
        self._sessions: dict[tuple[str, int], deque[_Stream]] = {}
        self._known: dict[str, Known] = {}
        self._recent: deque[bytes] = deque(maxlen=64)  # valid updates, to mutate and splice
        self._library: list[list[list[bytes]]] = []

    def forget(self, room: str) -> None:
        """The room gets no more frames: drop what was kept for it."""
        for key in [key for key in self._sessions if key[0] == room]:
            del self._sessions[key]
        self._known.pop(room, None)

    def reset(self, room: str, lane: int) -> None:
        """The lane's connection closed unexpectedly: what it sent after the culprit was lost,
        so its sessions would only send updates with gaps from now on. Start new ones."""
        self._sessions.pop((room, lane), None)

    def group(self, room: str, own_client: int, lane: int = 0) -> list[Frame]:
        frames = self._group(room, own_client, lane)
        if self._decode_check is None:
            return frames
        # What yrs will not decode closes the connection (4422): ask yrs itself, in a child.
        carrying = [
            frame
            for frame in frames
            if frame.update is not None and frame.via == "ws" and frame.kind != "valid"
        ]  # pycrdt's own updates decode
        if not carrying:
            return frames
        answers = self._decode_check([frame.update or b"" for frame in carrying])
        verdicts = dict(zip(map(id, carrying), answers or [False] * len(carrying), strict=True))
        return [
            replace(frame, closes=not verdicts[id(frame)]) if id(frame) in verdicts else frame
            for frame in frames
        ]

    def _group(self, room: str, own_client: int, lane: int) -> list[Frame]:
        rng = self.rng
        if rng.random() < TEXT_FRAME_SHARE:
            return [Frame("text_frame", b"hello", closes=True, via="text")]
        if rng.random() < OVERSIZE_SHARE:
            size = self._max_message_bytes + 1
            return [Frame("oversize", b"\x00\x02" + b"\x00" * size, closes=True)]
        category = rng.choices(self._categories, self._weights)[0]
        if category == "valid":
            update = self._valid(room, lane)
            return [self._update(room, "valid", update)]
        if category == "mutated":
            return [self._mutated(room, lane)]
        if category == "bytes":
            base = self._valid(room, lane, peek=True)
            other = rng.choice(self._recent) if self._recent else base
            name, data = mutate_bytes(rng, base, other)
            return [self._update(room, f"bytes.{name}", data)]
        if category == "crafted" and self._crafters:
            name = rng.choice(self._crafters)
            updates = CRAFTERS[name](rng, self._huge)
            return [
                Frame(f"crafted.{name}", update_frame(data, rng), update=data) for data in updates
            ]
        update = self._valid(room, lane, peek=True) if rng.random() < 0.5 else b"\x00\x00"
        kind, frame, closes = protocol_frame(rng, own_client, update)
        return [Frame(f"protocol.{kind}", frame, closes)]

    def _valid(self, room: str, lane: int, peek: bool = False) -> bytes:
        """The next update of one of the room's editing sessions (a new session when needed).
        With `peek`, the update stays to be sent later: what is mutated is a copy of an update
        the room will also get intact, so that the session's later updates still apply."""
        rng = self.rng
        pool = self._sessions.setdefault((room, lane), deque())
        while len(pool) < SESSIONS_PER_ROOM:
            pool.extend(self._new_sessions())
        stream = pool[0] if rng.random() < 0.5 else rng.choice(pool)
        if not stream.updates:
            pool.remove(stream)
            return self._valid(room, lane, peek)
        if peek:  # the next update of a session, or one the room already has
            return (
                rng.choice(self._recent) if self._recent and rng.random() < 0.5 else stream.next()
            )
        update = stream.pop()
        if not stream.updates:
            pool.remove(stream)
        self._recent.append(update)
        return update

    def _new_sessions(self) -> list[_Stream]:
        """One editing session (or two concurrent ones), fresh from pycrdt while the library
        is not full, then a library entry under new client ids: pycrdt does not free every
        document it made, and a long run must not grow."""
        rng = self.rng
        if len(self._library) >= LIBRARY_SESSIONS:
            names: dict[int, int] = {}  # shared: concurrent sessions refer to each other
            entry = rng.choice(self._library)
            return [_Stream(updates, rng, names) for updates in entry if updates]
        if rng.random() < 0.3:
            entry = [one.updates for one in concurrent_sessions(rng, rng.randint(2, 20))]
        else:
            # Small client ids collide across sessions: one client, two histories.
            client = rng.randrange(1, 50) if rng.random() < 0.02 else None
            entry = [session(rng, rng.randint(1, 40), client).updates]
        self._library.append(entry)
        return [_Stream(updates, rng) for updates in entry if updates]

    def _mutated(self, room: str, lane: int) -> Frame:
        rng = self.rng
        base = self._valid(room, lane, peek=True)
        try:
            update = decode_update(base)
        except DecodeError:  # pycrdt's own output always decodes; keep going if not
            return self._update(room, "valid", base)
        known = self._known.setdefault(room, Known())
        names = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if not self._mutations:
                break
            name = rng.choice(self._mutations)
            update = STRUCT_MUTATIONS[name](rng, update, known)
            names.append(name)
        return self._update(room, "mutated." + "+".join(names), encode_update(update))

    def _update(self, room: str, kind: str, data: bytes) -> Frame:
        """A frame carrying `data`; remembers its items, and guesses whether it will be refused
        (what our decoder refuses yrs mostly refuses too)."""
        try:
            self._known.setdefault(room, Known()).record(decode_update(data))
            closes = False
        except DecodeError:
            closes = True
        if self.rng.random() < REST_SHARE:
            return Frame(kind, data, closes=False, via="rest", update=data)
        return Frame(kind, update_frame(data, self.rng), closes, update=data)
