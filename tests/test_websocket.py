"""The WebSocket endpoint with real clients: sync, presence, bad input that hurts no one else."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from pycrdt import Doc, Text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab_server.protocol import (
    AwarenessEntry,
    SyncUpdate,
    decode_message,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
    encode_update,
)
from collab_server.settings import Settings
from collab_server.transport.websocket import close_reason_text
from collab_server.transport.ws_protocol import FrameWriter
from tests.conftest import RunningServer, run_server
from tests.polling import poll
from tests.test_metrics import scrape
from tests.yclient import YClient, newcomer_sees, yclient

pytestmark = pytest.mark.anyio


async def test_pycrdt_clients_sync_both_ways_and_late_joiner_gets_state(
    server: RunningServer,
) -> None:
    async with yclient(server.ws_url, "sync") as alice, yclient(server.ws_url, "sync") as bob:
        alice.text.insert(0, "hello")
        await bob.wait_until(lambda: str(bob.text) == "hello")
        bob.text.insert(5, " world")
        await alice.wait_until(lambda: str(alice.text) == "hello world")
    async with yclient(server.ws_url, "sync") as late:
        assert str(late.text) == "hello world"  # synced on arrival, nobody else online


async def test_relayed_updates_go_straight_to_the_peers_sockets(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Frames built once per broadcast and written to each idle peer's transport, past the ASGI
    # send path; what a client receives is the same.
    written: list[bytes] = []
    write = FrameWriter.write

    def recording_write(self: FrameWriter, frame: bytes) -> bool:
        taken = write(self, frame)
        if taken:
            written.append(frame)
        return taken

    monkeypatch.setattr(FrameWriter, "write", recording_write)
    async with (
        yclient(server.ws_url, "straight") as alice,
        yclient(server.ws_url, "straight") as bob,
    ):
        alice.text.insert(0, "héllo 😀")
        await bob.wait_until(lambda: str(bob.text) == "héllo 😀")
        bob.text.insert(0, ">")
        await alice.wait_until(lambda: str(alice.text) == ">héllo 😀")
    assert len(written) >= 2  # each update went straight to at least its other peer
    assert all(frame[0] == 0x82 for frame in written)  # final binary frames, as websockets sends


async def test_simultaneous_first_joins_share_one_load(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collab_server.rooms.registry")
    async with asyncio.TaskGroup() as tasks:
        for number in range(20):
            tasks.create_task(_join_and_type(server, "crowd", f"{number};"))
    loads = [r for r in caplog.records if r.getMessage().startswith("room crowd loaded")]
    assert len(loads) == 1
    async with yclient(server.ws_url, "crowd") as check:
        assert sorted(str(check.text).split(";")[:-1]) == sorted(str(n) for n in range(20))


async def _join_and_type(server: RunningServer, room: str, text: str) -> None:
    async with yclient(server.ws_url, room) as client:
        client.text.insert(0, text)
        async with yclient(server.ws_url, room) as witness:
            await witness.wait_until(lambda: text in str(witness.text))


async def test_newcomer_sees_cursors_at_once_and_leaver_is_removed(server: RunningServer) -> None:
    async with yclient(server.ws_url, "presence") as alice:
        alice.set_awareness(1, {"user": {"name": "alice"}})
        # The sender hears its own state back: the stock client needs traffic every 30 s.
        await alice.wait_until(lambda: alice.doc.client_id in alice.awareness)
        async with yclient(server.ws_url, "presence") as bob:
            assert bob.awareness.get(alice.doc.client_id) == {"user": {"name": "alice"}}
            bob.set_awareness(1, {"user": {"name": "bob"}})
            await alice.wait_until(lambda: alice.awareness.get(bob.doc.client_id) is not None)
        # Bob left without announcing it: the server removes his state for him.
        await alice.wait_until(lambda: alice.awareness.get(bob.doc.client_id, 0) is None)


async def test_dead_tcp_connection_is_dropped_and_its_cursor_removed() -> None:
    """A client whose network vanished answers no ping; the server drops it and tells the room."""
    settings = Settings(store_url="memory://", ws_ping_interval=0.2, ws_ping_timeout=0.3)
    async with run_server(settings) as server, yclient(server.ws_url, "dead") as alice:
        async with _silent_client(server.port, "/ws/dead") as (_, writer):
            ghost = AwarenessEntry(424242, 1, '{"user":{"name":"ghost"}}')
            writer.write(_client_frame(encode_awareness_message(encode_awareness([ghost]))))
            await alice.wait_until(lambda: alice.awareness.get(424242) is not None)
            # The ghost now says nothing, not even pongs.
            await alice.wait_until(lambda: alice.awareness.get(424242, 0) is None)


@asynccontextmanager
async def _silent_client(
    port: int, path: str
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw WebSocket handshake, after which the client never reads or answers again."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101")
    try:
        yield reader, writer
    finally:
        writer.close()


def _client_frame(payload: bytes) -> bytes:
    """One masked binary frame, as a client must send it."""
    mask = os.urandom(4)
    header = bytes([0x82])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def _awareness_frame(state: dict[str, object]) -> bytes:
    entry = AwarenessEntry(4242, 1, json.dumps(state))
    return encode_awareness_message(encode_awareness([entry]))


# -- bad input: one client closed with a clear code, everyone else carries on ---------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00\x02\x05ab", 4400),  # payload shorter than its length
        (b"\x80", 4400),  # truncated varint
        (b"\x09\x00", 4400),  # unknown message type
        (b"\x00\x05\x00", 4400),  # unknown sync message type
        ("hello", 4415),  # text frame
        (encode_update(b"\x01\x02garbage"), 4422),  # update yrs rejects
        (encode_sync_step1(b"\xff\xff\xff"), 4400),  # state vector that does not decode
        (encode_awareness_message(b"\x01\x07\x01\x04{no}"), 4400),  # awareness state not JSON
        (_awareness_frame({"user": {"color": "red; position: fixed; inset: 0"}}), 4400),  # CSS
        (b"\x00\x02" + b"\xff" * 30, 4400),  # absurd varint
    ],
)
async def test_bad_frame_closes_only_its_sender(
    server: RunningServer, frame: bytes | str, code: int
) -> None:
    async with yclient(server.ws_url, "bad") as bystander:
        bystander.text.insert(0, "kept")
        async with yclient(server.ws_url, "bad") as offender:
            await offender.wait_until(lambda: str(offender.text) == "kept")
            await offender.send_raw(frame)
            assert await offender.wait_closed() == code
        await _room_still_works(server, "bad", bystander, "kept")


async def test_oversized_frame_closes_with_4413() -> None:
    settings = Settings(store_url="memory://", max_message_bytes=64 * 1024)
    async with run_server(settings) as server, yclient(server.ws_url, "big") as bystander:
        async with yclient(server.ws_url, "big") as offender:
            await offender.send_raw(encode_update(b"\x00" * (64 * 1024 + 1)))
            assert await offender.wait_closed() == 4413
        await _room_still_works(server, "big", bystander, "")


async def _room_still_works(
    server: RunningServer, room: str, bystander: YClient, before: str
) -> None:
    """The room's content is intact, and a newcomer and the bystander still sync both ways."""
    assert str(bystander.text) == before
    async with yclient(server.ws_url, room) as newcomer:
        assert str(newcomer.text) == before
        newcomer.text.insert(len(before), "+new")
        await bystander.wait_until(lambda: str(bystander.text) == before + "+new")
        bystander.text.insert(0, "old+")
        await newcomer.wait_until(lambda: str(newcomer.text) == "old+" + before + "+new")


async def test_slow_reader_is_closed_with_4504_and_room_carries_on() -> None:
    """A client that stops reading is closed once its queue is full; it resyncs on reconnect."""
    settings = Settings(store_url="memory://", peer_queue_messages=16, client_messages_per_second=0)
    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "slow") as writer,
        yclient(server.ws_url, "slow") as witness,
    ):
        # A client that never calls recv(): the server's sends stall.
        sock = await _small_receive_buffer(server.port)
        async with connect(f"{server.ws_url}/slow", sock=sock, max_queue=1, max_size=None) as slow:
            # Large updates fill the socket and the kernel's buffers (up to 4 MiB here), then the
            # server's own write buffer; the small ones behind them pile up in the queue.
            for _ in range(3):
                writer.text.insert(0, "x" * 2_000_000)
            # One at a time (a burst would be merged into a few messages): each reaches the
            # client that keeps up, and is queued for the slow one as a message of its own.
            for number in range(40):
                writer.text.insert(0, f"{number};")
                await witness.wait_until(lambda: len(witness.text) == len(writer.text), limit=30)
            with anyio.fail_after(30):
                while True:
                    try:
                        await slow.recv()
                    except ConnectionClosed:
                        break
            assert slow.close_code == 4504
        async with yclient(server.ws_url, "slow") as newcomer:
            await newcomer.wait_until(lambda: str(newcomer.text) == str(writer.text))


async def test_slow_reader_is_closed_when_its_queue_is_over_its_bytes() -> None:
    """Few but large messages (presence states here, which a viewer may send) fill a slow
    reader's queue by bytes long before by count."""
    settings = Settings(
        store_url="memory://",
        peer_queue_messages=4096,
        peer_queue_bytes=256 * 1024,
        client_messages_per_second=0,
    )
    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "heavy") as writer,
        yclient(server.ws_url, "heavy") as witness,
    ):
        sock = await _small_receive_buffer(server.port)
        async with connect(f"{server.ws_url}/heavy", sock=sock, max_queue=1, max_size=None) as slow:

            def witness_has(length: int, pad: str | None = None) -> Callable[[], bool]:
                def holds() -> bool:
                    state = witness.awareness.get(writer.doc.client_id) or {}
                    return len(witness.text) == length and (pad is None or state.get("pad") == pad)

                return holds

            for number in range(1, 4):  # fill the socket and the kernel's buffers
                writer.text.insert(0, "x" * 2_000_000)
                await witness.wait_until(witness_has(number * 2_000_000))
            for clock in range(1, 41):  # 40 states of 60 kB: 2.4 MB, 40 messages
                writer.set_awareness(clock, {"user": {"name": "w"}, "pad": f"{clock:p<60000}"})
                await witness.wait_until(witness_has(6_000_000, f"{clock:p<60000}"))
            with anyio.fail_after(30):
                while True:
                    try:
                        await slow.recv()
                    except ConnectionClosed:
                        break
            assert slow.close_code == 4504
        assert witness.close_code is None and writer.close_code is None


async def test_client_that_never_reads_again_is_disconnected_after_its_close() -> None:
    """A client closed as too slow that never reads again cannot keep its connection: the close
    does not wait for room in the buffers, and the connection is aborted when the closing
    handshake does not finish. Before, four such clients kept their connections (and slots under
    COLLAB_MAX_CONNECTIONS) until the server stopped."""
    settings = Settings(
        store_url="memory://", peer_queue_bytes=64 * 1024, client_messages_per_second=0
    )

    async def open_connections() -> float:
        return (await scrape(server))["collab_connections_open"]

    async def closed_too_slow() -> float:
        return (await scrape(server)).get('collab_connections_closed_total{code="4504"}', 0)

    async def only_the_readers_left() -> bool:
        return await open_connections() == 2

    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "stuck") as writer,
        yclient(server.ws_url, "stuck") as witness,
    ):
        sock = await _small_receive_buffer(server.port)
        async with connect(
            f"{server.ws_url}/stuck", sock=sock, max_queue=1, max_size=None, close_timeout=1
        ):
            assert await open_connections() == 3
            for _ in range(3):  # fill the socket and the kernel's buffers
                writer.text.insert(0, "x" * 2_000_000)
                await witness.wait_until(lambda: len(witness.text) == len(writer.text))
            # Then overflow its queue, never reading: 240 kB, more than the transport's write
            # buffer (64 KiB, filled first while the socket still takes frames) and the queue's
            # 64 KiB together, however much of the big ones the client read before it stopped.
            for number in range(80):
                writer.text.insert(0, f"{number:<3000}")
                await witness.wait_until(lambda: len(witness.text) == len(writer.text))
            await poll(closed_too_slow)
            await poll(only_the_readers_left)
            # The closing handshake cannot finish: 10 s later (uvicorn's close timeout) the server
            # drops the TCP connection, which a close() would have kept until the client read.
            await poll(lambda: _tcp_state(sock) != TCP_ESTABLISHED, seconds=30)
        assert witness.close_code is None and writer.close_code is None


@pytest.mark.parametrize(
    "inserts",
    [
        # More than the kernel's buffers (4 MiB each way here) and the 2 MB frames the client
        # may read before it stops: some stays in the server's write buffer. The stop hung.
        [2_000_000] * 5,
        # The client reads the first; the second fits in the kernel's buffers, so the server's is
        # empty: uvicorn's close left the socket to the kernel, still connected for the client.
        [1_000_000] * 2,
    ],
    ids=["server-buffer", "kernel-buffer"],
)
async def test_a_client_that_never_reads_does_not_hold_up_the_server_stopping(
    inserts: list[int],
) -> None:
    """uvicorn waits for every connection to end before the app's shutdown (which saves the
    rooms); one that never reads its close must neither hang that nor outlive the server."""
    settings = Settings(store_url="memory://", client_messages_per_second=0)
    with anyio.fail_after(60):  # the stop takes 10 s (uvicorn's close timeout); it hung before
        async with run_server(settings) as server:
            sock = await _small_receive_buffer(server.port)
            stuck = await connect(f"{server.ws_url}/stop", sock=sock, max_queue=1, max_size=None)
            async with (
                yclient(server.ws_url, "stop") as writer,
                yclient(server.ws_url, "stop") as witness,
            ):
                for size in inserts:
                    writer.text.insert(0, "x" * size)
                    await witness.wait_until(lambda: len(witness.text) == len(writer.text))
    assert _tcp_state(sock) != TCP_ESTABLISHED  # reset, not left to the kernel to deliver
    stuck.transport.abort()


async def test_a_reading_client_is_told_the_server_is_restarting() -> None:
    """The server's stop ends a client that reads with a whole closing handshake: 1012 (service
    restart), so y-websocket reconnects, and the server's close after the client's answer."""
    async with run_server(Settings(store_url="memory://")) as server:
        client = await connect(f"{server.ws_url}/restart")
        await client.recv()  # the greeting: the room is open
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1012
    assert client.protocol.close_sent is not None and client.protocol.close_sent.code == 1012


async def _small_receive_buffer(port: int) -> socket.socket:
    """A socket connected to the server with a tiny receive buffer: a client that stops reading
    stalls the server's sends after a few kilobytes (plus what the kernel buffers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


TCP_ESTABLISHED = 1  # Linux's tcpi_state


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


async def test_burst_in_one_read_does_not_close_readers_that_keep_up() -> None:
    """Many updates arriving in one socket read are relayed without overflowing anyone's queue.

    The memory store never suspends: the connection's intake stores what queued up as one batch
    and relays it as one merged message, so a reader's queue grows by one item per batch (up to
    64 updates), not by one per update.
    """
    settings = Settings(store_url="memory://", peer_queue_messages=16, client_messages_per_second=0)
    typist: Doc[Text] = Doc()
    text = typist.get("codemirror", type=Text)
    frames: list[bytes] = []
    typist.observe(lambda event: frames.append(encode_update(event.update)))
    for number in range(1000):
        text.insert(number, "x")
    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "burst") as reader,
        connect(f"{server.ws_url}/burst") as writer,
    ):
        for frame in frames:  # no await that yields: the frames reach the server together
            writer.protocol.send_binary(frame)
        writer.send_data()
        await reader.wait_until(lambda: len(reader.text) == 1000 or reader.close_code is not None)
        assert reader.close_code is None
        assert str(reader.text) == "x" * 1000


async def test_burst_of_awareness_does_not_close_readers_that_keep_up() -> None:
    """Awareness is relayed as it is read; the connection yields to the loop every few messages
    so that the readers' senders drain their queues during a burst."""
    settings = Settings(store_url="memory://", peer_queue_messages=16, client_messages_per_second=0)
    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "cursors") as reader,
        # It reads none of its 1,000 echoes: unbounded buffering lets it close at once.
        connect(f"{server.ws_url}/cursors", max_queue=None) as writer,
    ):
        for clock in range(1, 1001):  # no await that yields: the frames reach the server together
            entry = AwarenessEntry(777, clock, f'{{"cursor":{clock}}}')
            writer.protocol.send_binary(encode_awareness_message(encode_awareness([entry])))
        writer.send_data()
        await reader.wait_until(
            lambda: reader.awareness.get(777) == {"cursor": 1000} or reader.close_code is not None
        )
        assert reader.close_code is None


async def test_a_client_over_its_message_rate_is_read_slower_and_loses_nothing() -> None:
    """A flood is throttled, not refused: every message of it arrives, nobody is closed."""
    settings = Settings(store_url="memory://", client_messages_per_second=100)
    async with (
        run_server(settings) as server,
        yclient(server.ws_url, "flood") as reader,
        connect(f"{server.ws_url}/flood", max_queue=None) as flooder,
    ):
        for clock in range(1, 301):  # three seconds' worth at once
            entry = AwarenessEntry(777, clock, f'{{"cursor":{clock}}}')
            flooder.protocol.send_binary(encode_awareness_message(encode_awareness([entry])))
        flooder.send_data()
        reader.text.insert(0, "still typing")  # the room still syncs while the flood is read
        await newcomer_sees(server.ws_url, "flood", "still typing")
        await reader.wait_until(lambda: reader.awareness.get(777) == {"cursor": 300}, limit=20)
        assert reader.close_code is None and flooder.close_code is None
        assert server.registry.metrics.connections_throttled == 1


async def test_deleting_a_room_closes_its_peers_with_4404(server: RunningServer) -> None:
    async with yclient(server.ws_url, "doomed") as client:
        client.text.insert(0, "bye")
        async with server.http() as http:
            assert (await http.get("/api/rooms/doomed/text")).text == "bye"
            assert (await http.delete("/api/rooms/doomed")).status_code == 204
            assert await client.wait_closed() == 4404
            assert (await http.get("/api/rooms/doomed")).status_code == 404


async def test_idle_room_unloads_and_keeps_its_content(server: RunningServer) -> None:
    async with yclient(server.ws_url, "idle") as client:
        client.text.insert(0, "persisted")
        await newcomer_sees(server.ws_url, "idle", "persisted")
    # The registry has no event for this (the idle delay is 0.2 s).
    await poll(lambda: server.registry.loaded("idle") is None)
    async with yclient(server.ws_url, "idle") as again:
        assert str(again.text) == "persisted"


async def test_awareness_from_another_client_id_is_relayed_to_everyone(
    server: RunningServer,
) -> None:
    async with yclient(server.ws_url, "echo") as alice, yclient(server.ws_url, "echo") as bob:
        state = {"cursor": {"anchor": 1}}
        alice.set_awareness(5, state)
        for client in (alice, bob):
            await client.wait_until(lambda c=client: c.awareness.get(alice.doc.client_id) == state)  # type: ignore[misc]
        assert json.dumps(bob.awareness[alice.doc.client_id]) == json.dumps(state)


async def test_the_sender_gets_its_own_update_back(server: RunningServer) -> None:
    """As from y-websocket's own server: the 4.x client counts an edit saved when it returns."""
    async with connect(f"{server.ws_url}/returned") as websocket:
        await websocket.send(encode_sync_step1(b"\x00"))
        typist: Doc[Text] = Doc()
        typist.get("codemirror", type=Text).insert(0, "hi")
        await websocket.send(encode_update(typist.get_update()))
        async with asyncio.timeout(10):
            while True:
                message = decode_message(await websocket.recv(decode=False))
                if isinstance(message, SyncUpdate):
                    break
        echoed: Doc[Text] = Doc()
        echoed.apply_update(message.update)
        assert str(echoed.get("codemirror", type=Text)) == "hi"


async def test_updates_sent_just_before_leaving_are_stored(tmp_path: Path) -> None:
    """A client may type and close at once: what it sent is stored and relayed all the same."""
    settings = Settings(store_url=f"sqlite:///{tmp_path}/collab.db")
    async with run_server(settings) as server, yclient(server.ws_url, "hasty") as witness:
        async with connect(f"{server.ws_url}/hasty") as hasty:
            typist: Doc[Text] = Doc()
            typed = typist.get("codemirror", type=Text)
            frames: list[bytes] = []
            typist.observe(lambda event: frames.append(encode_update(event.update)))
            for number in range(300):
                typed.insert(len(typed), f"{number};")
            for frame in frames:
                await hasty.send(frame)
        expected = str(typed)
        await witness.wait_until(lambda: str(witness.text) == expected)
    async with run_server(settings) as server, yclient(server.ws_url, "hasty") as later:
        assert str(later.text) == expected


async def test_connections_over_the_caps_are_told_to_retry_later() -> None:
    """Past the process's or a room's cap a socket is closed with 1013 (the stock client retries
    later): idle sockets can no longer take every descriptor, and one room every connection."""
    settings = Settings(store_url="memory://", max_connections=3, room_max_connections=2)
    async with run_server(settings) as server:
        async with yclient(server.ws_url, "full") as first, yclient(server.ws_url, "full"):
            async with connect(f"{server.ws_url}/full") as third:
                await third.wait_closed()
                assert third.close_code == 1013
            async with yclient(server.ws_url, "other") as elsewhere:
                async with connect(f"{server.ws_url}/other") as fourth:
                    await fourth.wait_closed()
                    assert fourth.close_code == 1013
                assert first.close_code is None and elsewhere.close_code is None
        # Once they left, there is room again.
        async with yclient(server.ws_url, "full") as again:
            assert again.close_code is None
        closed = server.registry.metrics.connections_closed
        assert closed[1013] == 2


@pytest.mark.parametrize(("reason", "expected"), [("x" * 300, "x" * 123), ("é" * 100, "é" * 61)])
def test_a_long_close_reason_is_cut_to_what_a_close_frame_holds(reason: str, expected: str) -> None:
    """yrs's error messages ran past 123 bytes: the close failed and the client got none."""
    assert close_reason_text(reason) == expected
    assert close_reason_text("short") == "short"
