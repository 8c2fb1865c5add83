"""PostgreSQL stopped and started again in the middle of editing (the real server, for real).

This stops the machine's PostgreSQL cluster for a few seconds, which every other user of it
notices: it lives in a module of its own so that it can be left out
(`--ignore=tests/test_postgres_outage.py`) while other work uses the database. The cluster is
started again in a `finally`, whatever happens.
"""

from __future__ import annotations

import anyio
import pytest
from pycrdt import Text

from collab_server.protocol import CloseCode
from collab_server.rooms import snapshot
from collab_server.settings import Settings
from persistence.postgres import PostgresStore
from tests import postgres
from tests.conftest import run_server
from tests.polling import poll
from tests.yclient import YClient, yclient

pytestmark = pytest.mark.anyio


async def _type(client: YClient, stop: anyio.Event) -> None:
    n = 0
    while not stop.is_set():
        client.text.insert(len(client.text), f"k{n};")
        n += 1
        await anyio.sleep(0.005)  # the typing pace of this load generator, not a wait


async def test_postgres_stopped_mid_edit_serves_from_memory_and_loses_nothing(
    postgres_url: str,
) -> None:
    await postgres.clear(postgres_url)
    settings = Settings(store_url=postgres_url, room_idle_seconds=0.2)
    async with run_server(settings) as server, server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "cold"})).status_code == 201

        async def ready_status(expected: int) -> None:
            async def answers() -> bool:
                return (await http.get("/readyz")).status_code == expected

            await poll(answers, seconds=20)

        async with yclient(server.ws_url, "hot") as alice, yclient(server.ws_url, "hot") as bob:
            await ready_status(200)
            stop_typing = anyio.Event()
            async with anyio.create_task_group() as typing:
                typing.start_soon(_type, alice, stop_typing)
                await bob.wait_until(lambda: len(bob.text) > 100)
                try:
                    await anyio.to_thread.run_sync(postgres.cluster_ctl, "stop")
                    await ready_status(503)
                    # Loaded rooms go on: bob keeps receiving what alice types.
                    seen = len(bob.text)
                    await bob.wait_until(lambda: len(bob.text) > seen + 100)
                    # Rooms not in memory answer with a clear, transient error.
                    async with yclient(server.ws_url, "cold", sync=False) as carol:
                        assert await carol.wait_closed() == CloseCode.STORE_UNAVAILABLE
                    answer = await http.get("/api/rooms/cold/text")
                    assert answer.status_code == 503
                    assert answer.json()["error"] == "store_unavailable"
                    # A loaded room's text is served from memory meanwhile.
                    hot = await http.get("/api/rooms/hot/text")
                    assert hot.status_code == 200
                    assert len(hot.text) > seen and str(alice.text).startswith(hot.text)
                finally:
                    await anyio.to_thread.run_sync(postgres.cluster_ctl, "start")
                await ready_status(200)
                seen = len(bob.text)
                await bob.wait_until(lambda: len(bob.text) > seen + 20)  # durable again
                stop_typing.set()
            await bob.wait_until(lambda: str(bob.text) == str(alice.text))
            typed = str(alice.text)
        assert (await http.get("/api/rooms/cold/text")).status_code == 200

    # Every keystroke, from before, during and after the outage, is in the database.
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        doc = snapshot.doc_from_log(await store.load("hot"))
    finally:
        await store.close()
    assert str(doc.get("codemirror", type=Text)) == typed
