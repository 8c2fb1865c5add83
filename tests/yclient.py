"""A y-websocket client built on pycrdt and `websockets`, for tests that speak the real protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pycrdt import Doc, Map, Text, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab_server.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)


class YClient:
    """One document synced with one room; local edits go out, remote ones come in."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.doc: Doc[Any] = Doc()
        self.synced = anyio.Event()
        self.awareness: dict[int, dict[str, Any] | None] = {}
        self.close_code: int | None = None
        self.auth_messages: list[bytes] = []  # payloads of y-protocols auth messages
        self.received = 0
        self._changed = asyncio.Event()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._applying_remote = False
        self.doc.observe(self._on_local_update)

    @property
    def text(self) -> Text:
        text: Text = self.doc.get("codemirror", type=Text)
        return text

    @property
    def meta(self) -> Map[Any]:
        meta: Map[Any] = self.doc.get("meta", type=Map)
        return meta

    def _on_local_update(self, event: TransactionEvent) -> None:
        # Observers run synchronously inside apply_update: the flag tells remote from local.
        if not self._applying_remote:
            self._outbox.put_nowait(encode_update(event.update))

    async def send_raw(self, frame: bytes | str) -> None:
        await self.websocket.send(frame)

    def set_awareness(self, clock: int, state: dict[str, Any] | None) -> None:
        entry = AwarenessEntry(self.doc.client_id, clock, json.dumps(state))
        self._outbox.put_nowait(encode_awareness_message(encode_awareness([entry])))

    async def announce(self, name: str) -> None:
        """Show as `name` in presence (`user.name`, as the editor page sets it), once the server
        has it: what it stamps this client's edits with when no token names it."""
        self.set_awareness(1, {"user": {"name": name}})
        await self.wait_until(lambda: self.doc.client_id in self.awareness)

    async def _pump_out(self) -> None:
        try:
            while True:
                frame = await self._outbox.get()
                await self.websocket.send(frame)
        except ConnectionClosed:
            pass  # the server went away; _pump_in records how

    async def _pump_in(self) -> None:
        try:
            async for frame in self.websocket:
                assert isinstance(frame, bytes)
                self.received += 1
                self._handle(frame)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.websocket.close_code
            self._changed.set()

    def _handle(self, frame: bytes) -> None:
        message = decode_message(frame)
        if isinstance(message, SyncStep1):
            reply = self.doc.get_update(message.state_vector)
            self._outbox.put_nowait(encode_sync_step2(reply))
        elif isinstance(message, SyncStep2 | SyncUpdate):
            self._applying_remote = True
            try:
                self.doc.apply_update(message.update)
            finally:
                self._applying_remote = False
            if isinstance(message, SyncStep2):
                self.synced.set()
        elif isinstance(message, AwarenessMessage):
            for entry in decode_awareness(message.payload):
                self.awareness[entry.client_id] = json.loads(entry.state)
        elif isinstance(message, AuthMessage):
            self.auth_messages.append(message.payload)
        self._changed.set()

    async def wait_until(self, condition: Callable[[], bool], limit: float = 10) -> None:
        """Wait until `condition()` holds after some message arrived (or holds already)."""
        with anyio.fail_after(limit):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def wait_closed(self, limit: float = 10) -> int | None:
        await self.wait_until(lambda: self.close_code is not None, limit)
        return self.close_code


@asynccontextmanager
async def yclient(
    ws_url: str, room: str, *, sync: bool = True, headers: dict[str, str] | None = None
) -> AsyncIterator[YClient]:
    """Connect to `ws_url/room`, send sync step 1, and (by default) wait until synced.

    A failure in the body propagates unchanged: nothing awaited on the way out may turn it into
    a cancellation that the task group would swallow.
    """
    async with connect(f"{ws_url}/{room}", max_size=None, additional_headers=headers) as websocket:
        client = YClient(websocket)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(client._pump_in)
            tasks.start_soon(client._pump_out)
            try:
                with contextlib.suppress(ConnectionClosed):  # refused at once: see close_code
                    await websocket.send(encode_sync_step1(client.doc.get_state()))
                if sync:
                    with anyio.fail_after(10):
                        await client.synced.wait()
                yield client
            finally:
                tasks.cancel_scope.cancel()


async def newcomer_sees(ws_url: str, room: str, text: str) -> None:
    """A client that joins now gets `text`: the server holds it."""
    async with yclient(ws_url, room) as newcomer:
        await newcomer.wait_until(lambda: str(newcomer.text) == text)
