"""Relay latency with PostgreSQL durability against the memory store, at the same load.

    .venv/bin/python -m bench.relay_latency [--rooms 10] [--clients 5] [--rate 20] [--seconds 12]

The server runs as its own process (`python -m collab_server serve`), once per store. In every
room each client types `rate` keystrokes a second at the end of the shared text; the others
receive them. Latency is from the moment a client sends a keystroke to the moment another client
has applied it (pycrdt, in this process), over every delivery after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pycrdt import Doc, Text, TextEvent, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect

from bench.pgdb import scratch_database
from bench.ports import free_port
from collab_server.protocol import (
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)

WARM_UP = 3.0


class Stats:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}  # "client:seq" -> send time
        self.latencies: list[float] = []
        self.repeats = 0  # keystrokes a client saw twice (counted once)
        self.measuring = False


class Client:
    def __init__(self, name: str, websocket: ClientConnection, stats: Stats) -> None:
        self.name = name
        self.websocket = websocket
        self.stats = stats
        self.doc: Doc[Text] = Doc()
        self.text = self.doc.get("codemirror", type=Text)
        self.synced = asyncio.Event()
        self._remote = False
        self._outbox: list[bytes] = []
        self._seen: set[str] = set()
        self.doc.observe(self._on_update)
        self.text.observe(self._on_text)

    def _on_update(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._outbox.append(encode_update(event.update))

    def _on_text(self, event: TextEvent) -> None:
        if not self._remote or not self.stats.measuring:
            return
        now = time.perf_counter()
        delta: list[dict[str, Any]] = getattr(event, "delta")  # noqa: B009 (a slot, untyped)
        for change in delta:
            inserted = change.get("insert")
            if isinstance(inserted, str):
                for token in inserted.split(";")[:-1]:
                    sent = self.stats.sent.get(token)
                    if sent is None:
                        continue
                    if token in self._seen:
                        self.stats.repeats += 1
                        continue
                    self._seen.add(token)
                    self.stats.latencies.append(now - sent)

    async def flush(self) -> None:
        frames, self._outbox = self._outbox, []
        for frame in frames:
            await self.websocket.send(frame)

    async def receive(self) -> None:
        async for frame in self.websocket:
            assert isinstance(frame, bytes)
            message = decode_message(frame)
            if isinstance(message, SyncStep1):
                reply = encode_sync_step2(self.doc.get_update(message.state_vector))
                await self.websocket.send(reply)
            elif isinstance(message, SyncStep2 | SyncUpdate):
                self._remote = True
                try:
                    self.doc.apply_update(message.update)
                finally:
                    self._remote = False
                if isinstance(message, SyncStep2):
                    self.synced.set()

    async def type(self, rate: float, until: float, phase: float) -> None:
        """Type at `rate`, starting `phase` (0-1) into the first period, so typists interleave."""
        seq = 0
        next_at = time.perf_counter() + phase / rate
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            token = f"{self.name}:{seq}"
            self.stats.sent[token] = time.perf_counter()
            self.text.insert(len(self.text), token + ";")
            await self.flush()
            seq += 1
            next_at += 1 / rate


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def server(store_url: str, port: int) -> AsyncIterator[tuple[str, int]]:
    env = {
        **os.environ,
        "COLLAB_PORT": str(port),
        "COLLAB_STORE_URL": store_url,
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_CLIENT_MESSAGES_PER_SECOND": "0",  # the load clients send faster than people
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "collab_server", "serve", env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/ws", process.pid
    finally:
        process.terminate()
        await process.wait()


async def run(
    store_url: str, port: int, rooms: int, clients: int, rate: float, seconds: float
) -> Any:
    stats = Stats()
    async with server(store_url, port) as (ws_url, pid):
        sockets = []
        everyone: list[Client] = []
        for room in range(rooms):
            for index in range(clients):
                websocket = await connect(f"{ws_url}/bench{room}", max_size=None)
                sockets.append(websocket)
                client = Client(f"{room}.{index}", websocket, stats)
                everyone.append(client)
        async with asyncio.TaskGroup() as tasks:
            receivers = [tasks.create_task(client.receive()) for client in everyone]
            for client in everyone:
                await client.websocket.send(encode_sync_step1(client.doc.get_state()))
            await asyncio.gather(*(client.synced.wait() for client in everyone))
            start = time.perf_counter()
            until = start + WARM_UP + seconds
            typists = [
                tasks.create_task(client.type(rate, until, index / len(everyone)))
                for index, client in enumerate(everyone)
            ]
            await asyncio.sleep(WARM_UP)
            stats.measuring = True
            cpu_before = cpu_seconds(pid)
            await asyncio.gather(*typists)
            cpu = cpu_seconds(pid) - cpu_before
            await asyncio.sleep(1.0)  # let the last keystrokes arrive
            stats.measuring = False
            for websocket in sockets:
                await websocket.close()
            await asyncio.gather(*receivers)
    latencies = sorted(stats.latencies)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "deliveries": len(latencies),
        "p50": quantiles[49] * 1000,
        "p99": quantiles[98] * 1000,
        "max": latencies[-1] * 1000,
        "repeats": stats.repeats,
        "server_cpu": cpu / seconds,
    }


async def main(rooms: int, clients: int, rate: float, seconds: float, port: int) -> None:
    load = rooms * clients * rate
    print(
        f"{rooms} rooms x {clients} clients x {rate:g} keystrokes/s = {load:g} updates/s,"
        f" {load * (clients - 1):g} deliveries/s, {seconds:g} s measured"
    )
    async with scratch_database() as url:
        for label, store_url in (("memory", "memory://"), ("postgresql", url)):
            result = await run(store_url, port or free_port(), rooms, clients, rate, seconds)
            print(
                f"{label:>10}: {result['deliveries']} deliveries, latency p50"
                f" {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms"
                f"; server process CPU {result['server_cpu'] * 100:.0f}% of a core"
                f" ({result['repeats']} seen twice)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    arguments = parser.parse_args()
    asyncio.run(
        main(arguments.rooms, arguments.clients, arguments.rate, arguments.seconds, arguments.port)
    )
