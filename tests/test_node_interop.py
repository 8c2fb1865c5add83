"""Stock Node y-websocket clients against the real server.

The clients are the pinned JS stack an editor page uses (yjs 13.6, y-websocket 3.1, `ws`), hosted
by `tests/node/driver.mjs`; positions are UTF-16 indexes, as in a browser. Every wait is
event-driven on the driver's side and bounded here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import string
from collections.abc import AsyncIterator

import anyio
import pytest

from collab_server.protocol import CloseCode
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.helpers import server_text, utf16_length
from tests.nodeclients import NodeClients, node_clients
from tests.polling import poll

pytestmark = [pytest.mark.node, pytest.mark.anyio]


@pytest.fixture
async def node(server: RunningServer) -> AsyncIterator[NodeClients]:
    async with node_clients(server.ws_url) as clients:
        yield clients


async def test_edits_flow_both_ways(server: RunningServer, node: NodeClients) -> None:
    await node.open("a", "two-way")
    await node.open("b", "two-way")

    await node.insert("a", 0, "hello")
    await node.wait_text(["a", "b"], "hello")
    await node.insert("b", 5, " world")
    await node.wait_text(["a", "b"], "hello world")
    await node.delete("a", 0, 6)
    await node.wait_text(["a", "b"], "world")

    assert await server_text(server, "two-way") == "world"


@pytest.mark.parametrize("room", ["team/app:src/main.py", "test-@y/websocket", "été 2"])
async def test_rooms_named_as_editors_name_them(
    server: RunningServer, node: NodeClients, room: str
) -> None:
    """The stock client puts the name into the URL as it is: slashes, `@`, `:` and spaces."""
    await node.open("a", room)
    await node.open("b", room)
    await node.insert("a", 0, "shared")
    await node.wait_text(["a", "b"], "shared")
    assert await server_text(server, room) == "shared"


async def test_late_joiner_gets_the_state(server: RunningServer, node: NodeClients) -> None:
    code = "def f():\n    return 1\n"
    await node.open("a", "late")
    await node.open("b", "late")
    await node.insert("a", 0, code)
    await node.wait_text(["a", "b"], code)

    await node.open("late", "late")
    assert await node.text("late") == code  # already at the moment it became synced

    # Everyone leaves; the next client gets the state from the store.
    for client in ("a", "b", "late"):
        await node.call("destroy", client=client)
    await node.open("later", "late")
    assert await node.text("later") == code


async def test_newcomer_sees_existing_cursors_at_once(
    server: RunningServer, node: NodeClients
) -> None:
    await node.open("watcher", "cursors")
    # A cursor as y-codemirror.next sends it: two Y.RelativePositions as JSON.
    at = {"type": None, "tname": "codemirror", "item": None, "assoc": 0}
    ann = {"user": {"name": "ann", "color": "#ff0000"}, "cursor": {"anchor": at, "head": at}}
    opened = await node.open("ann", "cursors", awareness=ann)
    ann_id = opened["clientID"]
    await node.wait_awareness("watcher", ann_id)  # so the server has ann's state

    # Without the server's greeting, bob would only learn of ann at her 15 s renewal.
    bob = await node.open("bob", "cursors", awareness={"user": {"name": "bob"}})
    assert bob["states"][str(ann_id)] == ann
    await node.wait_awareness("ann", bob["clientID"])


async def test_killed_clients_cursor_disappears(server: RunningServer, node: NodeClients) -> None:
    await node.open("ann", "killed", awareness={"user": {"name": "ann"}})
    async with node_clients(server.ws_url) as doomed:
        kim = await doomed.open("kim", "killed", awareness={"user": {"name": "kim"}})
        kim_id = kim["clientID"]
        await node.wait_awareness("ann", kim_id)
        await doomed.kill()

    # The clients' own timeout would take 30 s; the server removes the cursor when the socket
    # drops.
    with anyio.fail_after(10):
        await node.wait_awareness("ann", kim_id, present=False)
    newcomer = await node.open("bob", "killed")
    assert str(kim_id) not in newcomer["states"]


async def test_a_frozen_clients_cursor_is_not_shown_to_newcomers(
    server: RunningServer, node: NodeClients
) -> None:
    """A client whose machine froze keeps its socket open: the server's ping drops it after
    20 s + 20 s, while clients hide its cursor after 30 s without a renewal. A newcomer in
    between must not be greeted with the ghost (the server's view is no staler than theirs)."""
    await node.open("watcher", "frozen")
    async with node_clients(server.ws_url) as frozen:
        fay = await frozen.open("fay", "frozen", awareness={"user": {"name": "fay"}})
        await node.wait_awareness("watcher", fay["clientID"])
        frozen.freeze()
        try:
            # The watcher's own y-protocols timeout (30 s, checked every 3 s) hides her.
            async def fay_hidden() -> bool:
                return fay["clientID"] not in await node.states("watcher")

            await poll(fay_hidden, seconds=40)
            newcomer = await node.open("newcomer", "frozen")
            assert str(fay["clientID"]) not in newcomer["states"]
            room = server.registry.loaded("frozen")
            assert room is not None
            assert len(room.peers) == 3  # her socket is still open: the ping has not dropped it
        finally:
            frozen.thaw()


async def test_offline_edits_on_both_sides_merge(server: RunningServer, node: NodeClients) -> None:
    await node.open("a", "offline")
    await node.open("b", "offline")
    await node.insert("a", 0, "shared\n")
    await node.wait_text(["a", "b"], "shared\n")

    await node.call("disconnect", client="a")
    await node.call("disconnect", client="b")
    await node.insert("a", 0, "from a\n")
    await node.insert("b", len("shared\n"), "from b\n")
    await node.delete("b", 0, len("sha"))
    assert await node.text("a") == "from a\nshared\n"
    assert await node.text("b") == "red\nfrom b\n"
    assert await server_text(server, "offline") == "shared\n"

    # One after the other: b gets a's edits in the server's sync reply, a gets b's relayed.
    await node.call("connect", client="a")
    await node.call("connect", client="b")
    merged = await node.wait_text(["a", "b"])
    assert merged == "from a\nred\nfrom b\n"
    assert await server_text(server, "offline") == merged


async def test_fifty_clients_typing_at_once_converge(
    server: RunningServer, node: NodeClients
) -> None:
    names = [f"c{number}" for number in range(50)]
    letters = (string.ascii_letters + string.digits)[: len(names)]
    typed = {name: letter * 5 for name, letter in zip(names, letters, strict=True)}
    await asyncio.gather(*(node.open(name, "crowd") for name in names))

    await node.call("type", strings=typed, seed=7)
    converged = await node.wait_text(names)

    assert sorted(converged) == sorted("".join(typed.values()))
    await node.open("fresh", "crowd")
    assert await node.text("fresh") == converged
    assert await server_text(server, "crowd") == converged


async def test_non_ascii_round_trips(server: RunningServer, node: NodeClients) -> None:
    await node.open("a", "unicode")
    await node.open("b", "unicode")
    line = "café = 'π ≈ 3.14' # 😀 ok\n"
    await node.insert("a", 0, line)
    await node.wait_text(["a", "b"], line)
    assert await server_text(server, "unicode") == line

    # An edit after the emoji (two UTF-16 units) lands where the editor meant it.
    after_emoji = utf16_length(line[: line.index("😀") + 1])
    await node.insert("b", after_emoji, "!")
    edited = line.replace("😀", "😀!")
    await node.wait_text(["a", "b"], edited)
    assert await server_text(server, "unicode") == edited

    # A server-side edit between multi-byte characters reaches the clients intact...
    rewritten = edited.replace("π ≈", "τ/2 ≈").replace("ok", "ok 🎉")
    async with server.http() as http:
        response = await http.put("/api/rooms/unicode/text", content=rewritten.encode())
    assert response.status_code == 200
    await node.wait_text(["a", "b"], rewritten)

    # ...and leaves nothing pending: later edits on both sides still apply, in place.
    await node.insert("a", utf16_length(rewritten) - 1, " é")
    await node.insert("b", 0, "# ✓\n")
    final = "# ✓\n" + rewritten[:-1] + " é\n"
    await node.wait_text(["a", "b"], final)
    assert await server_text(server, "unicode") == final
    await node.open("c", "unicode")
    assert await node.text("c") == final


async def test_lone_clients_awareness_is_echoed(server: RunningServer, node: NodeClients) -> None:
    # y-websocket drops a socket that received nothing for 30 s; alone in a room, a client only
    # hears the echo of the awareness renewal it sends every 15 s.
    await node.open("alone", "echo", awareness={"user": {"name": "solo"}})
    await node.call("waitEcho", client="alone", clock=0)
    # The renewal: the same state with a higher clock. Its echo is what resets the watchdog.
    renewed = await node.call("renewAwareness", client="alone")
    echoed = await node.call("waitEcho", client="alone", clock=renewed["clock"])
    assert renewed["clock"] in echoed["echoes"]
    assert (await node.status("alone"))["connected"]


async def test_room_deleted_stops_the_client_reconnecting(
    server: RunningServer, node: NodeClients
) -> None:
    await node.open("a", "doomed", maxBackoffTime=100)
    async with server.http() as http:
        assert (await http.delete("/api/rooms/doomed")).status_code == 204

        closed = await node.call("waitClosed", client="a")
        assert closed["closes"] == [{"code": CloseCode.ROOM_DELETED, "reason": "room deleted"}]
        assert closed["terminal"] == closed["closes"]
        # Several reconnect delays later, still one attempt, and no room re-created by one.
        later = await node.call("statusAfter", client="a", ms=600)
        assert later["connects"] == 1
        assert not later["connected"]
        assert (await http.get("/api/rooms/doomed")).status_code == 404


async def test_slow_client_is_closed_and_resyncs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """4504 (any code outside 4400-4499) makes the stock client reconnect and catch up."""
    settings = settings.model_copy(update={"peer_queue_messages": 16})
    caplog.set_level(logging.WARNING, logger="collab_server.rooms.peer")
    async with run_server(settings) as server, node_clients(server.ws_url) as node:
        await node.open("slow", "slow", maxBackoffTime=100)
        await node.open("writer", "slow")
        await node.call("pause", client="slow")  # stop reading: the server's writes back up

        # Write until the server gives up on the slow client (the kernel's socket buffers take
        # a few MB first, then the peer's queue fills).
        chunk = "x" * 256 * 1024
        for _ in range(200):
            await node.insert("writer", 0, chunk)
            if any("closing it so it resyncs" in record.message for record in caplog.records):
                break
        else:
            pytest.fail("the server never closed the slow client")

        await node.call("resume", client="slow")
        closed = await node.call("waitClosed", client="slow")
        assert closed["closes"][0]["code"] == CloseCode.PEER_TOO_SLOW
        assert closed["terminal"] == []
        resynced = await node.call("waitSynced", client="slow")
        assert resynced["connects"] == 2
        converged = await node.call("waitText", clients=["slow", "writer"], digest=True)
        expected = hashlib.sha256((await server_text(server, "slow")).encode()).hexdigest()
        assert converged["sha256"] == expected
