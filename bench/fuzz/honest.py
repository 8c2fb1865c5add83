"""The honest clients: two pycrdt documents in a room of their own while the fuzzer works.

The writer types (inserts and deletes, some of them multi-byte) and the watcher only listens.
Latency is from the moment the writer sends an edit to the moment the watcher has applied it.
Each peer keeps its document across reconnects and sends its whole state on every connect, as
y-websocket does, so whatever a crash lost comes back. Every few seconds, with the watcher caught
up, the server's `GET /api/rooms/{room}/text` must equal the writer's text: the store took the
writes (the server stores before it relays).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx
from pycrdt import Doc, Text, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.fuzz.server import NO_KEEPALIVE
from bench.fuzz.stats import Stats
from bench.fuzz.ydecode import decode_state_vector
from collab_server.protocol import (
    AwarenessMessage,
    ProtocolError,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)

TEXT = "codemirror"
SNIPPETS = ["a", "b", " ", "\n", "é", "😀", "def ", "x = 1", "漢"]
RELAY_DEADLINE = 10.0  # an edit the watcher has not seen by then is an error


class HonestPeer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.doc: Doc[Any] = Doc()
        self.connected = asyncio.Event()
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()
        self.on_remote: Callable[[], None] = lambda: None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._remote = False
        self.doc.observe(self._local_update)

    @property
    def text(self) -> Text:
        text: Text = self.doc.get(TEXT, type=Text)
        return text

    def _local_update(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._outbox.put_nowait(encode_update(event.update))

    async def serve(self, url: str) -> None:
        """One connection: sync both ways, then relay until it closes."""
        async with connect(url, max_size=None, compression=None, open_timeout=5) as websocket:
            self._outbox = asyncio.Queue()  # what was queued for a dead socket is in the doc
            await websocket.send(encode_sync_step1(self.doc.get_state()))
            await websocket.send(encode_sync_step2(self.doc.get_update()))
            self.connected.set()
            sender = asyncio.create_task(self._send(websocket))
            try:
                async for frame in websocket:
                    if isinstance(frame, bytes):
                        await self._handle(websocket, frame)
            finally:
                self.connected.clear()
                self.synced.clear()
                sender.cancel()

    async def _send(self, websocket: ClientConnection) -> None:
        while True:
            await websocket.send(await self._outbox.get())

    async def _handle(self, websocket: ClientConnection, frame: bytes) -> None:
        try:
            message = decode_message(frame)
        except ProtocolError:
            return
        if isinstance(message, SyncStep1):
            await websocket.send(encode_sync_step2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            self._remote = True
            try:
                self.doc.apply_update(message.update)
            finally:
                self._remote = False
            if isinstance(message, SyncStep2):
                self.synced.set()
            self.on_remote()
        elif isinstance(message, AwarenessMessage):
            pass
        self.changed.set()

    def clock_of(self, client: int) -> int:
        return decode_state_vector(self.doc.get_state()).get(client, 0)


class HonestPair:
    def __init__(self, ws_url: str, http_url: str, room: str, stats: Stats, seed: int) -> None:
        self.url = f"{ws_url}/{room}"
        self.http_url = http_url
        self.room = room
        self.stats = stats
        self.writer = HonestPeer("writer")
        self.watcher = HonestPeer("watcher")
        self.watcher.on_remote = self._seen
        self.rng = random.Random(seed)
        self.allowed = asyncio.Event()  # cleared while the campaign stops the server
        self.allowed.set()
        self.checking = asyncio.Lock()  # held while a check runs: no edits meanwhile
        # (writer clock, send time) of edits the watcher has not seen yet; bounded, since a
        # server that relays nothing any more must not make the client grow.
        self._pending: deque[tuple[int, float]] = deque(maxlen=100_000)
        self._late_clock = -1  # edits up to this clock were already counted as late
        self._started = time.monotonic()

    def _seen(self) -> None:
        if not self._pending:
            return
        clock = self.watcher.clock_of(self.writer.doc.client_id)
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= clock:
            _, sent = self._pending.popleft()
            self.stats.latency.add(now - sent)

    def pause(self) -> None:
        """No more edits until `resume`; edits in flight are left to the text check (their
        latency would include the server's restart)."""
        self.allowed.clear()
        self._pending.clear()

    def resume(self) -> None:
        self.allowed.set()

    async def run(self, rate: float, check_every: float) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._keep_connected(self.writer))
            tasks.create_task(self._keep_connected(self.watcher))
            tasks.create_task(self._edit(rate))
            tasks.create_task(self._check(check_every))

    async def _keep_connected(self, peer: HonestPeer) -> None:
        while True:
            try:
                await peer.serve(self.url)
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError):
                pass
            self.stats.honest_reconnects += 1
            await asyncio.sleep(0.2)

    async def _edit(self, rate: float) -> None:
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            await self.allowed.wait()
            if self.checking.locked() or not (
                self.writer.connected.is_set() and self.watcher.synced.is_set()
            ):
                continue
            self._one_edit()
            self._count_late()

    def _count_late(self) -> None:
        """Edits unseen after RELAY_DEADLINE count once each as late; they stay pending, so
        their latency is measured when they do arrive."""
        now = time.monotonic()
        late = []
        for clock, sent in self._pending:  # oldest first
            if now - sent <= RELAY_DEADLINE:
                break
            if clock > self._late_clock:
                late.append(clock)
        if late:
            self._late_clock = late[-1]
            at = round(now - self._started, 1)
            for clock in late:
                self.stats.honest_error(
                    "edit_late", f"clock {clock} unseen after {RELAY_DEADLINE} s (at {at} s)"
                )

    def _one_edit(self) -> None:
        text = self.writer.text
        current = str(text)
        rng = self.rng
        # Every edit inserts, so the writer's clock moves and the watcher's state vector tells
        # when it has the edit (a deletion alone moves no clock).
        with self.writer.doc.transaction():
            index = rng.randint(0, len(current))
            if len(current) > 400 or (current and rng.random() < 0.3):
                index = rng.randrange(len(current))
                stop = min(len(current), index + rng.randint(1, 5))
                del text[len(current[:index].encode()) : len(current[:stop].encode())]
            text.insert(len(current[:index].encode()), rng.choice(SNIPPETS))
        self.stats.honest_edits += 1
        self._pending.append((self.writer.clock_of(self.writer.doc.client_id), time.monotonic()))

    async def wait_caught_up(self, seconds: float) -> bool:
        """Until the watcher holds everything the writer has (False after `seconds`)."""
        target = self.writer.clock_of(self.writer.doc.client_id)
        try:
            async with asyncio.timeout(seconds):
                while self.watcher.clock_of(self.writer.doc.client_id) < target:
                    self.watcher.changed.clear()
                    await self.watcher.changed.wait()
        except TimeoutError:
            return False
        return True

    async def check_text(self, http: httpx.AsyncClient) -> None:
        """The server's text equals the writer's (call with edits paused)."""
        if not await self.wait_caught_up(RELAY_DEADLINE):
            self.stats.honest_error("watcher_behind", "watcher not caught up before a check")
            return
        try:
            response = await http.get(f"/api/rooms/{self.room}/text")
        except httpx.HTTPError as error:
            self.stats.honest_error("text_unreadable", repr(error))
            return
        self.stats.honest_checks += 1
        expected = str(self.writer.text)
        if response.status_code != 200:
            self.stats.honest_error("text_status", str(response.status_code))
        elif response.text != expected:
            self.stats.honest_error(
                "text_differs", f"server {len(response.text)} chars, writer {len(expected)}"
            )
        if str(self.watcher.text) != expected:
            self.stats.honest_error("watcher_differs", "the watcher's text is not the writer's")

    async def _check(self, every: float) -> None:
        async with httpx.AsyncClient(
            base_url=self.http_url, timeout=10, limits=NO_KEEPALIVE
        ) as http:
            while True:
                await asyncio.sleep(every)
                await self.allowed.wait()
                if not self.watcher.synced.is_set():
                    continue
                async with self.checking:
                    await self.check_text(http)
