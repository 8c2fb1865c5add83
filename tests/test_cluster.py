"""Two server processes sharing one PostgreSQL store and one Redis: a room spans both."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from collab_server.cluster.bus import CHANNEL_PREFIX
from collab_server.cluster.messages import MessageKind, decode_bus_message
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.polling import poll
from tests.postgres import TcpProxy
from tests.yclient import newcomer_sees, yclient

pytestmark = pytest.mark.anyio

REDIS_PORT = 6379


@asynccontextmanager
async def two_servers(
    postgres_url: str, redis_port: int = REDIS_PORT, *, cluster_check_seconds: float = 2.0
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Server A on Redis directly, server B on `redis_port` (a proxy, when a test cuts it)."""

    def settings(port: int) -> Settings:
        return Settings(
            store_url=postgres_url,
            redis_url=f"redis://127.0.0.1:{port}/0",
            room_idle_seconds=0.2,
            completion_workers=0,
            cluster_check_seconds=cluster_check_seconds,
        )

    async with run_server(settings(REDIS_PORT)) as a, run_server(settings(redis_port)) as b:
        yield a, b


def new_room() -> str:
    # Both servers' channels are on the machine's Redis: a fresh name keeps tests apart.
    return f"cluster-{secrets.token_hex(4)}"


async def test_edits_cross_between_processes(postgres_url: str) -> None:
    room = new_room()
    async with two_servers(postgres_url) as (a, b):
        async with yclient(a.ws_url, room) as alice, yclient(b.ws_url, room) as bob:
            alice.text.insert(0, "from A")
            await bob.wait_until(lambda: str(bob.text) == "from A")
            bob.text.insert(6, ", from B")
            await alice.wait_until(lambda: str(alice.text) == "from A, from B")
            for server in (a, b):
                async with server.http() as http:
                    assert (await http.get(f"/api/rooms/{room}/text")).text == "from A, from B"


async def test_cursors_cross_and_newcomers_see_them_at_once(postgres_url: str) -> None:
    room = new_room()
    async with two_servers(postgres_url) as (a, b), _channel_watch(room) as published:
        async with yclient(a.ws_url, room) as alice:
            alice.set_awareness(1, {"user": {"name": "alice"}})
            # Alice's state has gone over Redis before B has the room: B must ask A for it.
            with anyio.fail_after(10):
                await published.wait()
            async with yclient(b.ws_url, room) as bob:
                await bob.wait_until(lambda: bob.awareness.get(alice.doc.client_id) is not None)
                bob.set_awareness(1, {"user": {"name": "bob"}})
                await alice.wait_until(lambda: alice.awareness.get(bob.doc.client_id) is not None)
            # Bob left B without a word: A's clients are told his cursor is gone.
            await alice.wait_until(lambda: alice.awareness.get(bob.doc.client_id, 0) is None)


@asynccontextmanager
async def _channel_watch(room: str) -> AsyncIterator[anyio.Event]:
    """An event set when the first awareness message of `room` crosses Redis."""
    published = anyio.Event()
    client = Redis(port=REDIS_PORT)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL_PREFIX + room)

    async def watch() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                if decode_bus_message(message["data"]).kind is MessageKind.AWARENESS:
                    published.set()
                    return

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            yield published
            tasks.cancel_scope.cancel()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def test_deleting_on_one_process_closes_peers_on_the_other(postgres_url: str) -> None:
    room = new_room()
    async with two_servers(postgres_url) as (a, b), yclient(b.ws_url, room) as bob:
        bob.text.insert(0, "doomed")
        async with yclient(a.ws_url, room) as alice:
            await alice.wait_until(lambda: str(alice.text) == "doomed")
            async with a.http() as http:
                assert (await http.delete(f"/api/rooms/{room}")).status_code == 204
            assert await bob.wait_closed() == 4404
            assert await alice.wait_closed() == 4404


async def test_a_process_cut_off_from_redis_catches_up_from_the_store(postgres_url: str) -> None:
    room = new_room()
    async with (
        TcpProxy(REDIS_PORT) as proxy,
        two_servers(postgres_url, redis_port=proxy.port) as (a, b),
        yclient(a.ws_url, room) as alice,
        yclient(b.ws_url, room) as bob,
    ):
        alice.text.insert(0, "before;")
        await bob.wait_until(lambda: str(bob.text) == "before;")
        proxy.cut()  # B hears nothing from Redis now, and cannot publish either
        alice.text.insert(7, "during;")
        await newcomer_sees(a.ws_url, room, "before;during;")
        assert str(bob.text) == "before;"
        proxy.restore()
        # B reconnects, and reads from the store what it missed while cut off.
        await bob.wait_until(lambda: str(bob.text) == "before;during;", limit=20)
        bob.text.insert(14, "after;")
        await alice.wait_until(lambda: str(alice.text) == "before;during;after;")


async def test_a_room_deleted_while_a_process_was_cut_off_is_gone_there_too(
    postgres_url: str,
) -> None:
    room = new_room()
    async with (
        TcpProxy(REDIS_PORT) as proxy,
        two_servers(postgres_url, redis_port=proxy.port) as (a, b),
        yclient(b.ws_url, room) as bob,
    ):
        bob.text.insert(0, "doomed")
        async with a.http() as http:
            await poll(lambda: _has_text(http, room, "doomed"))
            proxy.cut()  # B does not hear the deletion
            assert (await http.delete(f"/api/rooms/{room}")).status_code == 204
        proxy.restore()
        # Catching up, B finds the room gone from the store: it drops it and closes its peers.
        assert await bob.wait_closed(limit=20) == 4404
        async with b.http() as http:
            assert (await http.get(f"/api/rooms/{room}/text")).status_code == 404


async def _has_text(http: httpx.AsyncClient, room: str, text: str) -> bool:
    response = await http.get(f"/api/rooms/{room}/text")
    return response.status_code == 200 and response.text == text


def test_the_bus_needs_a_shared_store() -> None:
    from collab_server.app import create_app

    with pytest.raises(ValueError, match="PostgreSQL"):
        create_app(Settings(store_url="sqlite:///x.db", redis_url="redis://127.0.0.1:6379/0"))


async def test_a_process_started_without_redis_catches_up_once_it_is_there(
    postgres_url: str,
) -> None:
    room = new_room()
    async with TcpProxy(REDIS_PORT) as proxy:
        proxy.cut()  # B starts, and loads the room, while Redis is out of its reach
        async with (
            two_servers(postgres_url, redis_port=proxy.port) as (a, b),
            yclient(b.ws_url, room) as bob,
            yclient(a.ws_url, room) as alice,
        ):
            alice.text.insert(0, "typed while B had no bus")
            await newcomer_sees(a.ws_url, room, "typed while B had no bus")
            assert str(bob.text) == ""
            proxy.restore()
            await bob.wait_until(lambda: str(bob.text) == "typed while B had no bus", limit=20)
