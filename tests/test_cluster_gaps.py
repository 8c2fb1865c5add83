"""Several processes: an update whose message never reached Redis (its publisher does not know)
shows as a gap in the sequence numbers of the next one; the others read it from the store and
apply both in order."""

from __future__ import annotations

import anyio
import pytest

from collab_server.cluster.bus import RedisBus
from collab_server.cluster.messages import MessageKind
from tests.test_cluster import new_room, two_servers
from tests.test_cluster_order import record_early
from tests.yclient import newcomer_sees, yclient

pytestmark = pytest.mark.anyio


def lose_next_update(room: str, monkeypatch: pytest.MonkeyPatch) -> anyio.Event:
    """The next document update any process publishes for `room` is dropped on the way to
    Redis, without its publisher knowing; the event is set when it was."""
    publish = RedisBus.publish
    lost = anyio.Event()

    def lossy(bus: RedisBus, room_id: str, kind: MessageKind, payload: bytes = b"") -> None:
        if (
            room_id == room
            and kind in (MessageKind.UPDATE, MessageKind.STORED)
            and not lost.is_set()
        ):
            lost.set()
            return
        publish(bus, room_id, kind, payload)

    monkeypatch.setattr(RedisBus, "publish", lossy)
    return lost


async def test_an_update_lost_on_the_bus_is_read_from_the_store_in_order(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = new_room()
    # The store is looked at once a minute here: only the next update can show the gap.
    async with (
        two_servers(postgres_url, cluster_check_seconds=60) as (a, b),
        yclient(a.ws_url, room) as writer,
        yclient(b.ws_url, room) as reader,
    ):
        early = record_early(reader, monkeypatch)
        writer.text.insert(0, "a")
        await reader.wait_until(lambda: str(reader.text) == "a")
        lost = lose_next_update(room, monkeypatch)
        writer.text.insert(1, "b")
        await newcomer_sees(a.ws_url, room, "ab")
        assert lost.is_set()
        writer.text.insert(2, "c")
        await reader.wait_until(lambda: str(reader.text) == "abc", limit=10)
        async with b.http() as http:
            assert (await http.get(f"/api/rooms/{room}/text")).text == "abc"
    assert early == []
