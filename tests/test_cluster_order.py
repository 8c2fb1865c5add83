"""Several processes: after a Redis outage, a process relays what others publish in the store's
order, so no client receives an update before the updates it depends on.

The edits below are a sequence that yrs gets wrong when it applies them out of order: with the
second one missing, the server's document keeps the later ones pending, and the update it relays
after the last one carries pending items to its clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest

from collab_server.protocol import SyncStep2, SyncUpdate, decode_message
from collab_server.protocol.update import SKIP, UpdateLimits, decode_update
from collab_server.rooms.client_state import decode_state_vector
from persistence import StoredLog
from tests.conftest import RunningServer
from tests.postgres import TcpProxy
from tests.test_cluster import REDIS_PORT, new_room, two_servers
from tests.yclient import YClient, yclient

pytestmark = pytest.mark.anyio


def record_early(client: YClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `client` received before the updates it depends on: for each update it receives,
    the items and deletions its document could not take in (they wait, pending)."""
    early: list[str] = []
    handle = client._handle

    def checked(frame: bytes) -> None:
        handle(frame)
        message = decode_message(frame)
        if not isinstance(message, SyncUpdate | SyncStep2):
            return
        have = decode_state_vector(client.doc.get_state())
        decoded = decode_update(message.update, UpdateLimits(), strict=False)
        early.extend(
            f"item {struct.client}:{struct.clock}"
            for struct in decoded.structs
            if struct.kind != SKIP and have.get(struct.client, 0) < struct.clock + struct.length
        )
        early.extend(
            f"deletion {client_id}:{clock}"
            for client_id, clock, length in decoded.deletes
            if have.get(client_id, 0) < clock + length
        )

    monkeypatch.setattr(client, "_handle", checked)
    return early


@dataclass
class HeldReads:
    """Reads of one room from a server's store wait (once one has arrived) until released."""

    arrived: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)


def hold_reads(server: RunningServer, room: str, monkeypatch: pytest.MonkeyPatch) -> HeldReads:
    store = server.registry.store
    load = store.load
    held = HeldReads()

    async def held_load(room_id: str) -> StoredLog:
        if room_id == room:
            held.arrived.set()
            await held.release.wait()
        return await load(room_id)

    monkeypatch.setattr(store, "load", held_load)
    return held


async def test_after_a_redis_outage_no_update_arrives_before_its_dependencies(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = new_room()
    async with (
        TcpProxy(REDIS_PORT) as proxy,
        two_servers(postgres_url, redis_port=proxy.port) as (a, b),
        yclient(a.ws_url, room) as xavier,
        yclient(a.ws_url, room) as yvonne,
        yclient(b.ws_url, room) as zoe,
    ):
        early = record_early(zoe, monkeypatch)
        xavier.text.insert(0, "a")
        await zoe.wait_until(lambda: str(zoe.text) == "a")
        reads = hold_reads(b, room, monkeypatch)
        proxy.cut()  # B misses what A publishes now
        xavier.text.insert(0, "b")
        await yvonne.wait_until(lambda: str(yvonne.text) == "ba")
        proxy.restore()
        # B is back on the bus and catches up: its read of the store is slow, and meanwhile
        # A publishes edits that depend on the one B missed.
        with anyio.fail_after(20):
            await reads.arrived.wait()
        yvonne.text.insert(1, "y")
        await xavier.wait_until(lambda: str(xavier.text) == "bya")
        xavier.text.insert(3, "c")
        del xavier.text[2:3]
        await yvonne.wait_until(lambda: str(yvonne.text) == "byc")
        yvonne.text.insert(3, "z")
        await xavier.wait_until(lambda: str(xavier.text) == "bycz")
        # Published after the last edit: once Zoe has it, B has had every edit from the bus.
        xavier.set_awareness(1, {"user": {"name": "xavier"}})
        await zoe.wait_until(lambda: zoe.awareness.get(xavier.doc.client_id) is not None)
        reads.release.set()
        await zoe.wait_until(lambda: str(zoe.text) == "bycz")
    assert early == []
