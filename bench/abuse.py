"""Benchmark: an honest pair edits while abusive clients try to starve it, one mix after another.

    .venv/bin/python -m bench.abuse [--seconds 20] [--settle 40] [--store sqlite|memory]

Starts the server as its own process (`python -m collab_server serve`, default settings), and
in this process an honest pair (a writer typing 10 edits/s, a watcher; `bench/fuzz/honest.py`)
in a room of its own. Each mix runs in a child process for `--seconds`, against other rooms:

- `baseline`: nothing;
- `non_reader`: sockets that announce 60 kB presence states over and over and never read
  (their echoes pile up in the server);
- `presence_flood`: 40 sockets in one room, each announcing 32 client ids of 8 kB;
- `slowloris`: 1,000 connections sending a request's headers a line every 5 s;
- `idle_sockets`: 2,000 WebSockets in 200 rooms, held, then closed;
- `completion_flood`: 16 clients asking for completions on a 1.8 MB Python file;
- `room_flood`: REST room creation as fast as 8 connections go, from one address.

For each: the honest pair's latency (p50/p99/max, from the writer's edit to the watcher's copy),
the server's RSS at the start, its peak and `--settle` seconds after the mix, and what the
abusers were answered (close codes, HTTP statuses) and the server counted. Not a test: nothing
here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.completion import FLOOD_CHARS, positions, python_file
from bench.fuzz.honest import HonestPair
from bench.fuzz.server import ServerProcess
from bench.fuzz.stats import Stats
from bench.ports import free_port
from collab_server.protocol import (
    AwarenessEntry,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
)

EDITS_PER_SECOND = 10.0
GAUGES = ("collab_rooms_loaded", "collab_peers")
Outcomes = Counter[str]


# -- the mixes (each in a child process) ------------------------------------------------------


def closed_how(websocket: ClientConnection) -> str:
    return f"closed {websocket.close_code}"


async def non_reader(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    async def one(number: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        host, port = ws_url.removeprefix("ws://").split("/")[0].split(":")
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        client = 10_000 + number
        async with connect(f"{ws_url}/abuse-nonreader", sock=sock, max_queue=1) as websocket:
            for clock in range(1, 100_000):
                state = json.dumps({"user": {"name": f"n{number}"}, "pad": "p" * 60_000})
                entry = AwarenessEntry(client, clock, state)
                try:
                    await websocket.send(encode_awareness_message(encode_awareness([entry])))
                except ConnectionClosed:
                    out[closed_how(websocket)] += 1
                    return
                await asyncio.sleep(0.01)

    await _for(seconds, [one(number) for number in range(4)])


async def presence_flood(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    async def one(number: int) -> None:
        async with connect(f"{ws_url}/abuse-presence", max_size=None) as websocket:
            entries = [
                AwarenessEntry(number * 100 + k, 1, json.dumps({"pad": "q" * 8000}))
                for k in range(32)
            ]
            await websocket.send(encode_awareness_message(encode_awareness(entries)))
            try:
                async for _ in websocket:
                    pass
            except ConnectionClosed:
                pass
            out[closed_how(websocket)] += 1

    await _for(seconds, [one(number) for number in range(40)])


async def room_flood(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:

        async def one() -> None:
            while True:
                response = await http.post("/api/rooms", json={})
                out[f"HTTP {response.status_code}"] += 1

        await _for(seconds, [one() for _ in range(8)])


async def slowloris(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    host, port = http_url.removeprefix("http://").split(":")

    async def one(number: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            out["connect failed"] += 1
            return
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while True:
                await asyncio.sleep(5)
                writer.write(f"X-Slow-{number}: 1\r\n".encode())
                await writer.drain()
                if reader.at_eof():
                    break
        except (ConnectionError, OSError):
            pass
        out["closed by the server"] += 1
        writer.close()

    await _for(seconds, [one(number) for number in range(1000)])


async def idle_sockets(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    held: list[ClientConnection] = []

    async def one(number: int) -> None:
        try:
            websocket = await connect(f"{ws_url}/abuse-idle-{number % 200}", max_size=None)
        except (OSError, InvalidHandshake):
            out["connect failed"] += 1
            return
        try:
            await websocket.send(encode_sync_step1(b"\x00"))
        except ConnectionClosed:
            out[closed_how(websocket)] += 1
            return
        held.append(websocket)
        out["held"] += 1

    for start in range(0, 2000, 100):
        await asyncio.gather(*(one(number) for number in range(start, start + 100)))
    await asyncio.sleep(seconds)
    for websocket in held:
        await websocket.close()


async def completion_flood(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    text = python_file()
    document = text * (FLOOD_CHARS // len(text) + 1)
    spots = positions(text, 100)
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:
        await http.post("/api/rooms", json={"id": "abuse-complete", "language": "python"})
        await http.put("/api/rooms/abuse-complete/text", content=document.encode())

        async def one(first: int) -> None:
            k = first
            while True:
                offset = spots[k % len(spots)] + len(text) * (k % 50)
                response = await http.post(
                    "/api/rooms/abuse-complete/complete", json={"offset": offset}
                )
                out[f"HTTP {response.status_code}"] += 1
                k += 16

        await _for(seconds, [one(first) for first in range(16)])


async def baseline(ws_url: str, http_url: str, seconds: float, out: Outcomes) -> None:
    await asyncio.sleep(seconds)


async def _for(seconds: float, work: list[Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(job) for job in work]
    await asyncio.wait(tasks, timeout=seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


Mix = Callable[[str, str, float, Outcomes], Coroutine[Any, Any, None]]
MIXES: dict[str, Mix] = {
    "baseline": baseline,
    "non_reader": non_reader,
    "presence_flood": presence_flood,
    "slowloris": slowloris,
    "idle_sockets": idle_sockets,
    "completion_flood": completion_flood,
    "room_flood": room_flood,  # last: it spends this address's room openings for a minute
}


def run_mix(name: str, ws_url: str, http_url: str, seconds: float, results: Queue[str]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out: Outcomes = Counter()
    try:
        asyncio.run(MIXES[name](ws_url, http_url, seconds, out))
    except Exception as error:  # reported, not fatal: the other mixes still run
        out[f"mix failed: {error!r}"[:200]] += 1
    results.put(json.dumps(out))


# -- the driver --------------------------------------------------------------------------------


def server_counters(text: str) -> Counter[str]:
    """The counters of /metrics worth reporting, by name and labels."""
    wanted = (
        *GAUGES,
        "collab_connections_closed_total",
        "collab_room_openings_refused_total",
        "collab_completions_total",
        "collab_updates_refused_total",
    )
    counters: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(wanted):
            name, value = line.rsplit(" ", 1)
            counters[name] = int(float(value))
    return counters


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--mixes", default=",".join(MIXES))
    # Rooms stay in memory COLLAB_ROOM_IDLE_SECONDS (30 s) after their last client.
    parser.add_argument("--settle", type=float, default=40, help="seconds before 'end' RSS")
    arguments = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-abuse-"))
    store = f"sqlite:///{directory}/abuse.db" if arguments.store == "sqlite" else "memory://"
    env = {"COLLAB_STORE_URL": store, "COLLAB_LOG_LEVEL": "warning"}
    server = ServerProcess(free_port(), env, directory / "server.log")
    await server.start()
    stats = Stats()
    pair = HonestPair(server.ws_url, server.http_url, "honest", stats, seed=1)
    honest = asyncio.create_task(pair.run(EDITS_PER_SECOND, check_every=5))
    context = multiprocessing.get_context("spawn")
    rows = []
    try:
        await asyncio.sleep(3)  # connected and typing
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            for name in arguments.mixes.split(","):
                pair.stats = Stats()
                before = server_counters((await http.get("/metrics")).text)
                start_rss = (server.memory_kib() or (0, 0))[0]
                peak = start_rss
                results: Queue[str] = context.Queue()
                child = context.Process(
                    target=run_mix,
                    args=(name, server.ws_url, server.http_url, arguments.seconds, results),
                )
                child.start()
                while child.is_alive():
                    peak = max(peak, (server.memory_kib() or (0, 0))[0])
                    await asyncio.sleep(0.2)
                outcomes = json.loads(results.get(timeout=60))
                await asyncio.sleep(arguments.settle)  # what the mix left is released, or not
                after = server_counters((await http.get("/metrics")).text)
                end_rss = (server.memory_kib() or (0, 0))[0]
                latency = pair.stats.latency
                rows.append(
                    {
                        "mix": name,
                        "honest_p50_ms": _ms(latency.quantile(0.5)),
                        "honest_p99_ms": _ms(latency.quantile(0.99)),
                        "honest_max_ms": _ms(latency.max if latency.count else None),
                        "honest_edits": latency.count,
                        "honest_errors": dict(pair.stats.honest_errors),
                        "rss_start_mib": round(start_rss / 1024),
                        "rss_peak_mib": round(peak / 1024),
                        "rss_end_mib": round(end_rss / 1024),
                        "abusers_got": outcomes,
                        "rooms_loaded_end": after["collab_rooms_loaded"],
                        "server_counted": {
                            k: v - before[k]
                            for k, v in after.items()
                            if v - before[k] and k not in GAUGES
                        },
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        honest.cancel()
        await asyncio.gather(honest, return_exceptions=True)
        await server.stop()
    print(
        f"\npython {sys.version.split()[0]}, {os.cpu_count()} cores, store {arguments.store}, "
        f"{arguments.seconds:g} s a mix; server log {directory / 'server.log'}"
    )
    print(
        "| mix | honest p50 ms | p99 ms | max ms | edits | RSS start / peak / end MiB "
        "| abusers got | server counted |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['mix']} | {row['honest_p50_ms']} | {row['honest_p99_ms']} | "
            f"{row['honest_max_ms']} | {row['honest_edits']} | {row['rss_start_mib']} / "
            f"{row['rss_peak_mib']} / {row['rss_end_mib']} | {_short(row['abusers_got'])} | "
            f"{_short(row['server_counted'])} |"
        )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _short(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "-"


if __name__ == "__main__":
    started = time.monotonic()
    asyncio.run(main())
    print(f"took {time.monotonic() - started:.0f} s")
