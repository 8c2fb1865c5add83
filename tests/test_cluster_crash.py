"""Several processes: a process that dies between storing an update and publishing it leaves no
other process with a stale copy of the room.

Process A is a real server process, on Redis through a proxy the test cuts, so that what it
stores then never reaches Redis; then it is killed with SIGKILL. Process B never lost Redis, so
nothing on the bus tells it that it missed anything: it must find out from the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.postgres import TcpProxy
from tests.server_process import ServerProcess, server_process
from tests.test_cluster import REDIS_PORT, new_room
from tests.yclient import newcomer_sees, yclient

pytestmark = pytest.mark.anyio

HEAL_LIMIT = 15.0  # seconds; the store is checked every COLLAB_CLUSTER_CHECK_SECONDS (2 s)


@asynccontextmanager
async def doomed_and_survivor(
    postgres_url: str,
) -> AsyncIterator[tuple[TcpProxy, ServerProcess, RunningServer]]:
    """A (a child process, on Redis through a proxy) and B (in this process, on Redis)."""
    survivor = Settings(
        store_url=postgres_url,
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0",
        room_idle_seconds=0.2,
        completion_workers=0,
    )
    async with TcpProxy(REDIS_PORT) as proxy:
        env = {
            "COLLAB_STORE_URL": postgres_url,
            "COLLAB_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "COLLAB_COMPLETION_WORKERS": "0",
        }
        async with server_process(env) as a, run_server(survivor) as b:
            yield proxy, a, b


async def test_updates_a_dead_process_stored_but_never_published_reach_the_others(
    postgres_url: str,
) -> None:
    room = new_room()
    async with (
        doomed_and_survivor(postgres_url) as (proxy, a, b),
        yclient(b.ws_url, room) as reader,
    ):
        async with yclient(a.ws_url, room) as writer:
            writer.text.insert(0, "heard;")
            await reader.wait_until(lambda: str(reader.text) == "heard;")
            proxy.cut()  # A's messages go nowhere from now on
            writer.text.insert(6, "unheard;")
            await newcomer_sees(a.ws_url, room, "heard;unheard;")  # stored: A relays it
            a.kill()
            await a.process.wait()
        # B's client, B's REST and a newcomer on B get it from the store.
        await reader.wait_until(lambda: str(reader.text) == "heard;unheard;", limit=HEAL_LIMIT)
        async with b.http() as http:
            assert (await http.get(f"/api/rooms/{room}/text")).text == "heard;unheard;"
        await newcomer_sees(b.ws_url, room, "heard;unheard;")
        # And the room goes on across processes as before.
        reader.text.insert(14, "after;")
        await newcomer_sees(b.ws_url, room, "heard;unheard;after;")


async def test_a_deletion_a_dead_process_never_published_reaches_the_others(
    postgres_url: str,
) -> None:
    room = new_room()
    async with doomed_and_survivor(postgres_url) as (proxy, a, b), yclient(b.ws_url, room) as bob:
        bob.text.insert(0, "doomed")
        async with yclient(a.ws_url, room) as alice:
            await alice.wait_until(lambda: str(alice.text) == "doomed")
        proxy.cut()
        async with httpx.AsyncClient(base_url=a.http_url) as http:
            assert (await http.delete(f"/api/rooms/{room}")).status_code == 204
        a.kill()
        await a.process.wait()
        assert await bob.wait_closed(limit=HEAL_LIMIT) == 4404
        async with b.http() as http:
            assert (await http.get(f"/api/rooms/{room}/text")).status_code == 404
