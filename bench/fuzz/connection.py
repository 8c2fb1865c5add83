"""One fuzzing WebSocket: it reads everything the server sends (the server must not back up
behind us), checks that what it sends is valid y-protocols that browsers can read, tells after
a frame the server should refuse whether the connection is still open, and records how it
ended (who closed it, with which code).
"""

from __future__ import annotations

import asyncio
import json
import re

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.fuzz.stats import Stats
from bench.fuzz.ydecode import DecodeError, Reader
from collab_server.protocol import (
    ProtocolError,
    SyncStep1,
    SyncStep2,
    decode_message,
    encode_sync_step1,
)

PROBE_SECONDS = 3.0


class Link:
    def __init__(self, websocket: ClientConnection, stats: Stats) -> None:
        self.websocket = websocket
        self.stats = stats
        self._server_state: bytes = b"\x00"  # the server's state vector, from its sync step 1
        self._answered = asyncio.Event()
        self._reader = asyncio.create_task(self._drain())

    def stop(self) -> None:
        self._reader.cancel()

    async def still_open(self) -> bool:
        """Whether the server kept the connection after what was sent so far: sync step 1 with
        the server's own state vector gets a small sync step 2 back, unless it closed."""
        self._answered.clear()
        try:
            await self.websocket.send(encode_sync_step1(self._server_state))
            answered = asyncio.create_task(self._answered.wait())
            closed = asyncio.create_task(self.websocket.wait_closed())
            done, pending = await asyncio.wait(
                {answered, closed}, timeout=PROBE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
        except ConnectionClosed:
            return False
        if not done:
            self.stats.close_codes[f"none: no answer to a probe within {PROBE_SECONDS} s"] += 1
            return False
        return self._answered.is_set()

    async def _drain(self) -> None:
        try:
            async for frame in self.websocket:
                if isinstance(frame, str):
                    self._anomaly("text_frame", frame[:100])
                elif frame[:2] == b"\x00\x01":
                    self._answered.set()
                elif frame[:2] == b"\x00\x00":
                    self._remember_state(frame)
                elif frame[:1] == b"\x01":
                    self._check_awareness(frame)
        except ConnectionClosed:
            pass

    def _remember_state(self, frame: bytes) -> None:
        try:
            message = decode_message(frame)
        except ProtocolError as error:
            self._anomaly("undecodable_sync_step1", repr(error))
            return
        if isinstance(message, SyncStep1):
            self._server_state = message.state_vector
        elif not isinstance(message, SyncStep2):
            self._anomaly("odd_sync_message", frame[:20].hex())

    def _check_awareness(self, frame: bytes) -> None:
        """Browsers run JSON.parse on every state the server relays. (Parsed here with our own
        reader, not the server's codec: the check must not move with the code under test.)"""
        try:
            reader = Reader(frame)
            reader.var_uint()  # the message type
            payload = Reader(reader.take(reader.var_uint()))
            states = []
            for _ in range(payload.count()):
                payload.var_uint()  # client
                payload.var_uint()  # clock
                states.append(payload.string())
        except DecodeError as error:
            self._anomaly("awareness_not_y_protocols", repr(error))
            return
        for state in states:
            if not browser_json(state):
                self._anomaly("awareness_json_browsers_reject", state[:100])

    def _anomaly(self, kind: str, example: str) -> None:
        self.stats.server_output[kind] += 1
        if self.stats.server_output[kind] <= 3:
            self.stats.note(self.stats.server_output_examples, f"{kind}: {example}")

    def record_close(self, expected: bool, last_kind: str, server_up: bool) -> bool:
        """Count how the connection ended; a close nobody expected is counted by the kind of
        the frame sent last (frames are pipelined: an earlier one may be the cause). Returns
        whether the server ended it unexpectedly (then it dropped what followed the culprit)."""
        protocol = self.websocket.protocol
        received = protocol.close_rcvd
        if received is None:
            self.stats.close_codes["abnormal 1006 (no close frame)"] += 1
            if server_up:
                self.stats.unexpected_closes[f"1006 after {last_kind}"] += 1
            return not expected
        if protocol.close_rcvd_then_sent is False:
            self.stats.close_codes["client 1000"] += 1  # we closed first
            return False
        reason = re.sub(r"\d+", "N", received.reason)[:70]
        self.stats.close_codes[f"server {received.code} {reason}"] += 1
        if not expected:
            self.stats.unexpected_closes[f"{received.code} after {last_kind}"] += 1
        return not expected


def browser_json(text: str) -> bool:
    """Whether JSON.parse accepts it: no NaN or Infinity (Python's json module accepts them)."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True
