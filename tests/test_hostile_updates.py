"""Updates made to hurt, against a real server process: each is refused (or contained) for its
sender alone, and the process goes on serving every other room with the store taking writes.

Each of these took the whole process down, or its storage, before updates were checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pycrdt import Doc, Text

from collab_server.metrics import Metrics
from collab_server.protocol import CloseCode, encode_update
from collab_server.protocol.update import UpdateRefused
from collab_server.rooms.registry import RoomRegistry
from collab_server.settings import Settings
from persistence import open_store
from persistence.memory import MemoryStore
from tests.helpers import FakeSocket
from tests.rawupdates import (
    deleting,
    empty_client_block,
    nested_any,
    nested_maps,
    text_item,
    unmerged_typing,
    update,
    var_string,
    var_uint,
)
from tests.server_process import ServerProcess, server_process
from tests.test_replay import editing_session, picture
from tests.yclient import YClient, newcomer_sees, yclient

pytestmark = pytest.mark.anyio


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"COLLAB_STORE_URL": f"sqlite:///{tmp_path}/collab.db", "COLLAB_COMPLETION_WORKERS": "0"}


@pytest.fixture
async def server(env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    async with server_process(env) as running:
        yield running


async def post_update(server: ServerProcess, room: str, update: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
        await http.post("/api/rooms", json={"id": room})
        return await http.post(f"/api/rooms/{room}/update", content=update)


async def assert_still_serving(server: ServerProcess, room: str = "bystanders") -> None:
    """The process lives, says so, and another room edits and stores as before."""
    assert server.process.returncode is None
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
    async with yclient(server.ws_url, room) as typist:
        typist.text.insert(len(typist.text), "still here;")
        await newcomer_sees(server.ws_url, room, str(typist.text))


async def test_a_value_nested_40000_deep_is_refused(server: ServerProcess) -> None:
    attack = nested_any(40_000)  # an 80 kB update; yrs overflowed its stack decoding it
    async with yclient(server.ws_url, "deep") as attacker:
        await attacker.send_raw(encode_update(attack))
        assert await attacker.wait_closed() == CloseCode.UPDATE_REJECTED
    response = await post_update(server, "deep", attack)
    assert response.status_code == 422
    assert "nested deeper than 128" in response.json()["detail"]
    await assert_still_serving(server)
    assert (await post_update(server, "deep", nested_any(100))).status_code == 204


async def test_maps_nested_60000_deep_are_refused_and_the_limit_deletes_safely(
    server: ServerProcess, env: dict[str, str]
) -> None:
    response = await post_update(server, "maps", nested_maps(7, 60_000))
    assert response.status_code == 422
    assert "shared types nested deeper than 128" in response.json()["detail"]
    # At the limit they are accepted, and deleting the outer one (which yrs does recursively)
    # is harmless, now and after a restart.
    assert (await post_update(server, "maps", nested_maps(8, 128))).status_code == 204
    assert (await post_update(server, "maps", deleting(8, 0, 1))).status_code == 204
    await assert_still_serving(server)
    async with server_process(env, port=server.port) as again:
        async with httpx.AsyncClient(base_url=again.http_url) as http:
            assert (await http.get("/api/rooms/maps/update")).status_code == 200
        await assert_still_serving(again)


async def test_a_child_one_level_too_deep_is_refused(server: ServerProcess) -> None:
    assert (await post_update(server, "edge", nested_maps(9, 128))).status_code == 204
    # The 129th map, under the 128th (clock 127), in an update of its own.
    child = b"\x27\x00" + var_uint(9) + var_uint(127) + var_string("k") + b"\x01"
    response = await post_update(server, "edge", update(9, 128, [child]))
    assert response.status_code == 422
    assert "nested deeper than 128" in response.json()["detail"]


async def test_40000_unmerged_items_are_refused(server: ServerProcess) -> None:
    # 303 kB that took yrs 2 s and 900 MB to apply (quadratic), and again on every load.
    response = await post_update(server, "typing", unmerged_typing(11, 40_000))
    assert response.status_code == 422
    assert "unmerged items" in response.json()["detail"]
    assert (await post_update(server, "typing", unmerged_typing(12, 4000))).status_code == 204
    await assert_still_serving(server)


async def test_an_adversarial_text_replacement_is_fast_and_exact(server: ServerProcess) -> None:
    """1,000 lines of `x` made alternating `x`/`y` froze every room for 18 s (cubic diff)."""
    before = "x\n" * 2000
    after = "".join("x\n" if line % 2 else "y\n" for line in range(2000))
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
        await http.post("/api/rooms", json={"id": "diff"})
        with anyio.fail_after(30):  # a hang guard: it took about two minutes before
            assert (await http.put("/api/rooms/diff/text", content=before)).status_code == 200
            assert (await http.put("/api/rooms/diff/text", content=after)).status_code == 200
        assert (await http.get("/api/rooms/diff/text")).text == after
    await assert_still_serving(server)


async def test_a_poisoned_log_quarantines_its_room_across_restarts_until_recovered(
    env: dict[str, str],
) -> None:
    """A log an older server stored (maps 60,000 deep, then their deletion) crashed every
    process that loaded it. Now the room is quarantined, the rest is served, and an admin
    recovers it."""
    store = open_store(env["COLLAB_STORE_URL"])
    await store.open()
    await store.create_room("poisoned", "poisoned", None)
    await store.append("poisoned", b"\x01\x01\x02\x00\x04\x01\x0acodemirror\x02ok\x00")
    await store.append("poisoned", nested_maps(7, 60_000))
    await store.append("poisoned", deleting(7, 0, 1))
    await store.close()
    for _ in range(2):  # and again after a restart
        async with (
            server_process(env) as server,
            httpx.AsyncClient(base_url=server.http_url) as http,
        ):
            response = await http.get("/api/rooms/poisoned/text")
            assert response.status_code == 423
            assert response.json()["error"] == "room_quarantined"
            view = (await http.get("/api/rooms/poisoned")).json()
            assert "nested deeper than 128" in view["quarantined"]["reason"]
            async with yclient(server.ws_url, "poisoned", sync=False) as client:
                assert await client.wait_closed() == CloseCode.ROOM_QUARANTINED
            metrics = (await http.get("/metrics")).text
            assert "collab_rooms_quarantined 1" in metrics
            await assert_still_serving(server)
    async with server_process(env) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        dry = (await http.post("/api/rooms/poisoned/recover?dry_run=1")).json()
        assert (dry["dropped"], dry["stored_updates"]) == ([1], 3)
        assert (await http.get("/api/rooms/poisoned/text")).status_code == 423
        recovered = (await http.post("/api/rooms/poisoned/recover")).json()
        assert recovered["dropped"] == [1] and recovered["dropped_bytes"] > 500_000
        assert (await http.get("/api/rooms/poisoned/text")).text == "ok"
        assert (await http.get("/api/rooms/poisoned")).json()["quarantined"] is None
    async with server_process(env) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/api/rooms/poisoned/text")).text == "ok"


async def test_a_restart_gives_back_the_document_clients_saw(env: dict[str, str]) -> None:
    """Editing sessions with multi-byte text and edits at byte offsets inside characters, sent
    as fast as a socket takes them (so the server stores them in batches): the documents a
    graceful restart rebuilds are the ones the server served before it."""
    sessions = {f"s{seed}": await accepted_updates(editing_session(seed)) for seed in range(12)}
    async with server_process(env) as server:
        for room, updates in sessions.items():
            async with yclient(server.ws_url, room) as client:
                for update in updates:
                    await client.send_raw(encode_update(update))
                await newcomer_holds(server, room, client, len(updates))
        before = {room: await document(server, room) for room in sessions}
    async with server_process(env) as server:
        after = {room: await document(server, room) for room in sessions}
    assert after == before


async def accepted_updates(updates: list[bytes]) -> list[bytes]:
    """The updates of a session that the server's checks let through (run in-process)."""
    settings = Settings(store_url="memory://", completion_workers=0)
    kept = []
    async with (
        RoomRegistry(MemoryStore(), settings, Metrics()) as registry,
        registry.lease("r") as room,
    ):
        for update in updates:
            try:
                await room.write(update)
            except UpdateRefused:
                continue
            kept.append(update)
    return kept


async def newcomer_holds(server: ServerProcess, room: str, sender: YClient, count: int) -> None:
    """Wait until the server holds everything `sender` sent: a last update, sent after them
    on the same socket, is stored after them."""
    marker: Doc[Any] = Doc()
    marker.get("marker", type=Text).insert(0, "done")
    await sender.send_raw(encode_update(marker.get_update()))
    async with yclient(server.ws_url, room) as newcomer:
        await newcomer.wait_until(lambda: str(newcomer.doc.get("marker", type=Text)) == "done")
    assert sender.close_code is None, f"closed after {count} updates"


async def document(server: ServerProcess, room: str) -> tuple[str, object, dict[int, int]]:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        data = (await http.get(f"/api/rooms/{room}/update")).content
    doc: Doc[Any] = Doc()
    doc.apply_update(data)
    return picture(doc)


async def test_an_update_that_made_yrs_panic_is_refused(server: ServerProcess) -> None:
    """26 bytes, then 5: the second names a client with no structs, and applying it panicked
    inside yrs (a BaseException that got past every handler, and took storage down)."""
    assert (await post_update(server, "panic", text_item(1, "ok"))).status_code == 204
    response = await post_update(server, "panic", empty_client_block(1, 10))
    assert response.status_code == 422
    assert "no structs" in response.json()["detail"]
    async with yclient(server.ws_url, "panic") as attacker:
        await attacker.send_raw(encode_update(empty_client_block(1, 10)))
        assert await attacker.wait_closed() == CloseCode.UPDATE_REJECTED
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/api/rooms/panic/text")).text == "ok"
    await assert_still_serving(server)


async def test_an_update_that_skips_clocks_waits_for_them(server: ServerProcess) -> None:
    """A client that reconnects and types before its old connection's updates (or its sync step
    2) are in sends an update after a hole: it waits for the hole to fill, then applies. yrs
    would integrate it after the hole and lose the items that fill it later."""
    typist: Doc[Text] = Doc()
    text = typist.get("codemirror", type=Text)
    updates: list[bytes] = []
    typist.observe(lambda event: updates.append(event.update))
    for number in range(51):
        text.insert(len(text), f"{number},")
    async with yclient(server.ws_url, "reconnect") as watcher:
        async with yclient(server.ws_url, "reconnect") as old:
            for update in updates[:10]:
                await old.send_raw(encode_update(update))
            await watcher.wait_until(lambda: len(watcher.text) == len("0,1,2,3,4,5,6,7,8,9,"))
            async with yclient(server.ws_url, "reconnect") as new:
                await new.send_raw(encode_update(updates[50]))  # after a hole of 40 updates
                for update in updates[10:50]:
                    await old.send_raw(encode_update(update))
                await watcher.wait_until(lambda: str(watcher.text) == str(text))
                assert new.close_code is None and old.close_code is None
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/api/rooms/reconnect/text")).text == str(text)
        # A REST write is not a client that will fill its hole: refused as before.
        response = await post_update(server, "hole", updates[50])
        assert response.status_code == 422
        assert "skips clocks" in response.json()["detail"]


async def test_a_parked_update_refused_once_its_clocks_arrive_is_counted_and_left_out() -> None:
    """An update that skips clocks waits for them; checked again when they come, it is refused
    (here: its parent is a string item, not a shared type), and the room reports it."""
    settings = Settings(store_url="memory://", completion_workers=0)
    metrics = Metrics()
    async with (
        RoomRegistry(MemoryStore(), settings, metrics) as registry,
        registry.lease("r") as room,
    ):
        peer = FakeSocket().peer("r")
        child_of_a_string = update(
            7, 2, [b"\x04\x00" + var_uint(7) + var_uint(0) + var_string("c")]
        )
        await room.store_updates([await room.check(child_of_a_string)], origin=peer)
        assert not metrics.updates_refused  # it waits for clocks 0 and 1 of client 7
        await room.store_updates([await room.check(text_item(7, "ab"))], origin=peer)
        assert str(room.doc.get("codemirror", type=Text)) == "ab"
        assert sum(metrics.updates_refused.values()) == 1
