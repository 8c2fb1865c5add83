"""One process per core behind HAProxy (deploy/haproxy.cfg, run as shipped): every room's
sockets, REST calls and page reach the one process that holds the room, and when that process
dies its rooms move to another with nothing lost.

Two real server processes on one PostgreSQL store and one Redis, HAProxy as a child process on a
free port with the backends' addresses in the environment variables the config reads. Which
process holds a room is asked of each process directly (its peers in the room, its rooms in
memory), not taken from the proxy's word.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.helpers import text_is
from tests.polling import poll
from tests.server_process import ServerProcess, free_port, server_process
from tests.test_cluster import REDIS_PORT
from tests.yclient import YClient, newcomer_sees, yclient

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
SERVED_BY = "X-Collab-Server"  # the header the config adds: which backend answered
BACKENDS = ("s1", "s2")  # the config's server names; backend i is PROXY_BACKEND_<i>

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not os.access(HAPROXY, os.X_OK), reason="haproxy is not installed (`make proxy-deps`)"
    ),
]


@dataclass
class Cluster:
    proxy_url: str  # http://127.0.0.1:port of HAProxy
    backends: dict[str, ServerProcess]  # by the config's server name

    @property
    def ws_url(self) -> str:
        return "ws" + self.proxy_url.removeprefix("http") + "/ws"

    def proxy(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.proxy_url)


@asynccontextmanager
async def proxied_cluster(postgres_url: str) -> AsyncIterator[Cluster]:
    """Two server processes (PostgreSQL + Redis) and HAProxy in front of them."""
    env = {
        "COLLAB_STORE_URL": postgres_url,
        "COLLAB_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
        "COLLAB_COMPLETION_WORKERS": "0",
    }
    async with AsyncExitStack() as stack:
        backends = {name: await stack.enter_async_context(server_process(env)) for name in BACKENDS}
        port = free_port()
        addresses = {
            f"PROXY_BACKEND_{index}": f"127.0.0.1:{backends[name].port}"
            for index, name in enumerate(BACKENDS, start=1)
        }
        process = await asyncio.create_subprocess_exec(
            HAPROXY,
            "-f",
            str(CONFIG),
            "-db",  # in the foreground: this test owns it
            env={**os.environ, **addresses, "PROXY_BIND": f"127.0.0.1:{port}"},
        )
        try:
            cluster = Cluster(f"http://127.0.0.1:{port}", backends)
            await _both_backends_serve(cluster, process)
            yield cluster
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def _both_backends_serve(cluster: Cluster, process: asyncio.subprocess.Process) -> None:
    """Until round-robin paths (no room in them) have reached both backends through the proxy."""
    seen: set[str] = set()
    async with cluster.proxy() as http:

        async def both() -> bool:
            if process.returncode is not None:
                raise RuntimeError(f"haproxy exited with {process.returncode}")
            try:
                answer = await http.get("/healthz")
            except httpx.TransportError:
                return False
            if answer.status_code == 200:
                seen.add(answer.headers[SERVED_BY])
            return seen == set(BACKENDS)

        await poll(both, seconds=15)


def served_by(client: YClient) -> str:
    """The backend the proxy sent a WebSocket to (the header of its 101 answer)."""
    response = client.websocket.response
    assert response is not None
    return response.headers[SERVED_BY]


def room_api(room: str) -> str:
    return f"/api/rooms/{quote(room, safe='')}"  # one segment: "/" is %2F


async def peers_in(backend: ServerProcess, room: str) -> int:
    """The clients `backend` itself serves in `room` (0 when it does not hold the room)."""
    async with httpx.AsyncClient(base_url=backend.http_url) as http:
        answer = await http.get(room_api(room))
    assert answer.status_code == 200, answer.text
    peers: int = answer.json()["peers"]
    return peers


async def gauges(backend: ServerProcess) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=backend.http_url) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200
    lines = (line for line in answer.text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines)}


async def rooms_on_both(cluster: Cluster, count: int) -> list[str]:
    """`count` fresh room names, half of them hashed to each backend.

    Each name has a "/" and a non-ASCII letter: the WebSocket path carries both as they are (the
    é percent-encoded), REST as one percent-encoded segment, so the proxy must decode to hash them
    alike. Where the proxy sends a name is asked of it once (the 404 of a room not yet made), so
    the test never depends on how a random tag happens to hash; a config that sends every room
    to one backend finds no names for the other and fails here.
    """
    tag = secrets.token_hex(3)
    wanted = dict.fromkeys(BACKENDS, count // len(BACKENDS))
    chosen: list[str] = []
    async with cluster.proxy() as http:
        for index in range(50 * count):
            room = f"proxy-{tag}/café-{index}"
            name = (await http.get(room_api(room))).headers[SERVED_BY]
            if wanted[name]:
                wanted[name] -= 1
                chosen.append(room)
                if len(chosen) == count:
                    return chosen
    raise AssertionError(f"the proxy sent no room names to some backend: {wanted}")


@asynccontextmanager
async def clients_in(
    ws_url: str, rooms: list[str], per_room: int = 1
) -> AsyncIterator[dict[str, list[YClient]]]:
    """`per_room` clients in each room. A failure in the body comes out as itself, not inside
    one exception group per client (pytest would cut the report off before reaching it)."""
    try:
        async with AsyncExitStack() as stack:
            clients: dict[str, list[YClient]] = {room: [] for room in rooms}
            for room in rooms:
                for _ in range(per_room):
                    clients[room].append(await stack.enter_async_context(yclient(ws_url, room)))
            yield clients
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if leaf is group:
            raise
        raise leaf from None


async def holds_text(client: YClient, text: str) -> None:
    await client.wait_until(lambda: str(client.text) == text)


ROOMS = 12
CLIENTS_PER_ROOM = 2


async def test_every_path_of_a_room_reaches_the_one_process_that_holds_it(
    postgres_url: str,
) -> None:
    async with proxied_cluster(postgres_url) as cluster:
        rooms = await rooms_on_both(cluster, ROOMS)
        async with clients_in(cluster.ws_url, rooms, CLIENTS_PER_ROOM) as clients:
            owner = await _owners(cluster, clients)
            await _edits_converge(clients)
            await _rest_and_pages_reach(cluster, owner)
            # None of that brought a room into a second process.
            for name in BACKENDS:
                figures = await gauges(cluster.backends[name])
                assert figures["collab_rooms_loaded"] == list(owner.values()).count(name)


async def _owners(cluster: Cluster, clients: dict[str, list[YClient]]) -> dict[str, str]:
    """The one backend that serves each room's clients, as each backend counts them itself."""
    owner: dict[str, str] = {}
    for room, its_clients in clients.items():
        counts = {name: await peers_in(cluster.backends[name], room) for name in BACKENDS}
        holders = [name for name, count in counts.items() if count]
        assert len(holders) == 1 and counts[holders[0]] == len(its_clients), (room, counts)
        owner[room] = holders[0]
        assert {served_by(client) for client in its_clients} == {owner[room]}
    # Each room in the memory of its owner only, and rooms on both.
    for name in BACKENDS:
        held = list(owner.values()).count(name)
        assert held
        figures = await gauges(cluster.backends[name])
        assert figures["collab_rooms_loaded"] == held
        assert figures["collab_peers"] == CLIENTS_PER_ROOM * held
    return owner


async def _edits_converge(clients: dict[str, list[YClient]]) -> None:
    for index, (first, second) in enumerate(clients.values()):
        first.text.insert(0, f"room {index};")
        await holds_text(second, f"room {index};")
        second.text.insert(len(second.text), " edited")
    for index, pair in enumerate(clients.values()):
        for client in pair:
            await holds_text(client, f"room {index}; edited")


async def _rest_and_pages_reach(cluster: Cluster, owner: dict[str, str]) -> None:
    """REST and the page, through the proxy, reach the process with the room's sockets."""
    async with cluster.proxy() as http:
        for index, (room, name) in enumerate(owner.items()):
            text = await http.get(room_api(room) + "/text")
            assert text.text == f"room {index}; edited"
            assert text.headers[SERVED_BY] == name
            about = await http.get(room_api(room))
            assert about.json()["peers"] == CLIENTS_PER_ROOM  # only the owner has them
            versions = await http.get(room_api(room) + "/versions")
            assert versions.status_code == 200 and versions.headers[SERVED_BY] == name
            for page in (f"/r/{quote(room)}", f"/r/{quote(room, safe='')}"):
                answer = await http.get(page)  # the first spelling redirects to the second
                assert answer.status_code in (200, 308), page
                assert answer.headers[SERVED_BY] == name, page


async def test_the_rooms_of_a_process_that_dies_move_to_the_other_with_their_text(
    postgres_url: str,
) -> None:
    async with proxied_cluster(postgres_url) as cluster:
        rooms = await rooms_on_both(cluster, 6)
        async with clients_in(cluster.ws_url, rooms) as clients:
            for index, room in enumerate(rooms):
                clients[room][0].text.insert(0, f"before {index};")
            for index, room in enumerate(rooms):  # stored: a newcomer has it
                await newcomer_sees(cluster.ws_url, room, f"before {index};")
            owner = {room: served_by(client) for room, (client,) in clients.items()}
            doomed = owner[rooms[0]]
            survivor = next(name for name in BACKENDS if name != doomed)
            moved = [room for room in rooms if owner[room] == doomed]

            cluster.backends[doomed].kill()
            await cluster.backends[doomed].process.wait()
            for room in moved:
                assert await clients[room][0].wait_closed() is not None

            # Their clients come back through the proxy, to the survivor, which has the text;
            # the survivor's own rooms went on as they were.
            async with clients_in(cluster.ws_url, moved) as returned:
                clients.update(returned)
                for index, room in enumerate(rooms):
                    (client,) = clients[room]
                    assert served_by(client) == survivor
                    await holds_text(client, f"before {index};")
                    client.text.insert(len(client.text), "after;")
                async with cluster.proxy() as http:
                    for index, room in enumerate(rooms):
                        await poll(partial(text_is, http, room, f"before {index};after;"))
                for room in rooms:
                    assert await peers_in(cluster.backends[survivor], room) == 1
