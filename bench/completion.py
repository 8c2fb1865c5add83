"""Benchmark: completion latency, and what completion load does to relay latency.

    .venv/bin/python -m bench.completion [--seconds 20] [--rounds 2] [--workers 1]
    .venv/bin/python -m bench.completion --flood 16 [--seconds 10] [--rounds 2] [--workers 2]

Starts the server as its own process (`python -m collab_server serve`, uvloop), then:

1. completion latency on a 1,000-line Python file (the first 1,000 lines of this interpreter's
   argparse.py), sequential requests at seeded random positions after a "." or two characters
   into a name: p50/p95/p99, and which provider answered;
2. relay latency: one y-websocket client inserts a character every 20 ms (open loop), another
   in the same room timestamps each arrival; p50/p99 with no completion load and with 20
   completion requests/s running against the Python file, in interleaved rounds.

With `--flood N`, instead: relay latency in one room while N clients send completion requests
on a ~1.8 MB Python document in another room, each sending its next request as soon as the
previous one is answered (503 included), against no flood, in interleaved rounds; once on an
ASCII document and once on the same with one non-ASCII line (emoji) at the top.

Latencies are measured by the client, in this process, on the same machine: they include the
client's own time. Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path

import anyio
import httpx

from bench.ports import free_port
from tests.yclient import yclient

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(sysconfig.get_paths()["stdlib"]) / "argparse.py"
EDIT_INTERVAL = 0.02
FLOOD_CHARS = 1_800_000
NON_ASCII_LINE = "# café ☕ 😀\n"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


def spawn_server(workers: int, log: Path) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "COLLAB_COMPLETION_WORKERS": str(workers),
        "COLLAB_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collab_server",
            "serve",
            "--port",
            str(port),
            "--store",
            "memory://",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Server(f"http://127.0.0.1:{port}", process)


async def start_server(workers: int, log: Path) -> Server:
    server = spawn_server(workers, log)
    url = server.url
    async with httpx.AsyncClient(base_url=url) as http:
        with anyio.fail_after(30):
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)  # polling a process we started for its port; not a test
    return server


def python_file() -> str:
    lines = SOURCE.read_text().splitlines(keepends=True)[:1000]
    return "".join(lines)


def positions(text: str, count: int, seed: int = 7) -> list[int]:
    """Cursor positions right after a "." or two characters into a name."""
    candidates = [m.end() for m in re.finditer(r"[A-Za-z_]\w*\.", text)]
    candidates += [m.start() + 2 for m in re.finditer(r"(?<![\w.])[A-Za-z_]\w{3,}", text)]
    return random.Random(seed).sample(sorted(set(candidates)), count)


@dataclass
class Completed:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)


async def complete_once(http: httpx.AsyncClient, room: str, offset: int, into: Completed) -> None:
    started = time.perf_counter()
    response = await http.post(f"/api/rooms/{room}/complete", json={"offset": offset})
    into.latencies.append(time.perf_counter() - started)
    if response.status_code == 200:
        answer = response.json()
        into.statuses[answer["provider"] + (" (partial)" if answer["partial"] else "")] += 1
    else:
        into.statuses[f"HTTP {response.status_code} {response.json().get('error')}"] += 1


async def completion_latency(http: httpx.AsyncClient, room: str, offsets: list[int]) -> Completed:
    result = Completed()
    for offset in offsets:
        await complete_once(http, room, offset, result)
    return result


def drive_completions(
    url: str, seconds: float, rate: float, offsets: list[int], results: Queue[Completed]
) -> None:
    """In a process of its own, so the load's client work does not delay the relay's client."""

    async def run() -> Completed:
        load = Completed()
        interval = 1 / rate
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            anyio.create_task_group() as requests,
        ):
            start = time.perf_counter()
            for k in range(int(seconds * rate)):
                await anyio.sleep(max(0.0, start + k * interval - time.perf_counter()))
                requests.start_soon(complete_once, http, "py", offsets[k % len(offsets)], load)
        return load

    results.put(asyncio.run(run()))


def flood_completions(
    url: str, room: str, seconds: float, clients: int, offsets: list[int], results: Queue[Completed]
) -> None:
    """`clients` closed loops against `room`: each sends its next request once answered."""

    async def run() -> Completed:
        load = Completed()
        stop = time.perf_counter() + seconds

        async def client(http: httpx.AsyncClient, first: int) -> None:
            k = first
            while time.perf_counter() < stop:
                await complete_once(http, room, offsets[k % len(offsets)], load)
                k += clients

        limits = httpx.Limits(max_connections=clients)
        async with (
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http,
            anyio.create_task_group() as tasks,
        ):
            for first in range(clients):
                tasks.start_soon(client, http, first)
        return load

    results.put(asyncio.run(run()))


async def relay_latency(
    server: Server,
    room: str,
    seconds: float,
    completion_rate: float,
    offsets: list[int],
    flood: tuple[str, int] | None = None,  # (room, clients)
) -> tuple[list[float], Completed]:
    edits = int(seconds / EDIT_INTERVAL)
    sent: list[float] = []
    arrived: list[float] = []
    ws_url = server.url.replace("http", "ws", 1) + "/ws"
    context = multiprocessing.get_context("spawn")
    results: Queue[Completed] = context.Queue()
    if flood is not None:
        flood_room, clients = flood
        load = context.Process(
            target=flood_completions,
            args=(server.url, flood_room, seconds, clients, offsets, results),
        )
    else:
        load = context.Process(
            target=drive_completions, args=(server.url, seconds, completion_rate, offsets, results)
        )
    loaded = flood is not None or completion_rate > 0
    async with (
        yclient(ws_url, room) as sender,
        yclient(ws_url, room) as receiver,
        anyio.create_task_group() as tasks,
    ):
        base = len(receiver.text)

        async def send() -> None:
            start = time.perf_counter()
            for k in range(edits):
                await anyio.sleep(max(0.0, start + k * EDIT_INTERVAL - time.perf_counter()))
                sent.append(time.perf_counter())
                sender.text.insert(len(sender.text), "x")

        if loaded:
            load.start()
        tasks.start_soon(send)
        while len(arrived) < edits:
            await receiver.wait_until(lambda: len(receiver.text) - base > len(arrived), 30)
            now = time.perf_counter()
            arrived.extend([now] * (len(receiver.text) - base - len(arrived)))
    completed = Completed()
    if loaded:
        completed = await anyio.to_thread.run_sync(results.get)
        load.join()
    return [a - s for s, a in zip(sent, arrived, strict=True)], completed


def describe(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {len(values)} | {ms(statistics.median(values))} | "
        f"{ms(percentile(values, 0.95))} | {ms(percentile(values, 0.99))} | {ms(max(values))} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20, help="length of one relay run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved relay rounds")
    parser.add_argument("--workers", type=int, default=1, help="COLLAB_COMPLETION_WORKERS")
    parser.add_argument("--requests", type=int, default=300, help="sequential completions")
    parser.add_argument("--rate", type=float, default=20, help="completions/s during relay")
    parser.add_argument("--flood", type=int, default=0, help="clients flooding a 1.8 MB file")
    arguments = parser.parse_args()
    if arguments.flood:
        await flood_main(arguments)
        return

    text = python_file()
    offsets = positions(text, arguments.requests)
    log = Path(tempfile.mkdtemp(prefix="bench-completion-")) / "server.log"
    server = await start_server(arguments.workers, log)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            await http.post("/api/rooms", json={"id": "py", "language": "python"})
            await http.put("/api/rooms/py/text", content=text.encode())
            ready = time.perf_counter()
            first = Completed()
            await complete_once(http, "py", offsets[0], first)
            # Let the workers finish warming up before measuring steady state.
            warm = Completed()
            with anyio.fail_after(120):
                while not warm.statuses["jedi"]:
                    warm = Completed()
                    await complete_once(http, "py", offsets[0], warm)
            warm_after = time.perf_counter() - ready
            sequential = await completion_latency(http, "py", offsets)
            big_text = text * (1_000_000 // len(text) + 1)
            await http.post("/api/rooms", json={"id": "big", "language": "python"})
            await http.put("/api/rooms/big/text", content=big_text.encode())
            big_offsets = [o + len(text) * (k % 28) for k, o in enumerate(offsets[:100])]
            big = await completion_latency(http, "big", big_offsets)
        quiet: list[float] = []
        loaded: list[float] = []
        load = Completed()
        for round_ in range(arguments.rounds):
            relay, _ = await relay_latency(server, f"quiet{round_}", arguments.seconds, 0, offsets)
            quiet += relay
            relay, under = await relay_latency(
                server, f"loaded{round_}", arguments.seconds, arguments.rate, offsets
            )
            loaded += relay
            load.latencies += under.latencies
            load.statuses += under.statuses
    finally:
        server.process.terminate()
        server.process.wait(30)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, workers={arguments.workers}")
    print(f"file: first 1000 lines of {SOURCE} ({len(text)} chars)")
    print(f"\nfirst request after start: {ms(first.latencies[0])} ms {dict(first.statuses)}")
    print(f"first jedi answer {ms(warm_after)} ms after the server was ready\n")
    print("| measurement | n | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(describe("completion, sequential", sequential.latencies))
    print(describe(f"completion, sequential, 1 MB file ({len(big_text)} chars)", big.latencies))
    print(describe("completion, during relay", load.latencies))
    print(describe("relay, no completion", quiet))
    print(describe(f"relay, {arguments.rate:g} completions/s", loaded))
    print(f"\nsequential answers: {dict(sequential.statuses)}")
    print(f"1 MB file answers: {dict(big.statuses)}")
    print(f"answers under relay: {dict(load.statuses)}")
    print(f"server log: {log}")


async def flood_main(arguments: argparse.Namespace) -> None:
    text = python_file()
    copies = FLOOD_CHARS // len(text) + 1
    spots = positions(text, arguments.requests)
    documents = {"ascii": text * copies, "non-ASCII": NON_ASCII_LINE + text * copies}
    log = Path(tempfile.mkdtemp(prefix="bench-completion-")) / "server.log"
    server = await start_server(arguments.workers, log)
    quiet: list[float] = []
    flooded: dict[str, list[float]] = {name: [] for name in documents}
    loads = {name: Completed() for name in documents}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for name, document in {"py": text, **documents}.items():
                await http.post("/api/rooms", json={"id": name, "language": "python"})
                await http.put(f"/api/rooms/{name}/text", content=document.encode())
            warm = Completed()
            with anyio.fail_after(120):  # until jedi is warm (on the small file)
                while not warm.statuses["jedi"]:
                    warm = Completed()
                    await complete_once(http, "py", spots[0], warm)
        for round_ in range(arguments.rounds):
            for name, document in documents.items():
                shift = len(document) - len(text) * copies  # the extra line: ASCII after it
                offsets = [
                    utf16(document[:shift]) + spot + len(text) * (k % copies)
                    for k, spot in enumerate(spots)
                ]
                relay, _ = await relay_latency(server, f"q{name}{round_}", arguments.seconds, 0, [])
                quiet += relay
                relay, load = await relay_latency(
                    server,
                    f"f{name}{round_}",
                    arguments.seconds,
                    0,
                    offsets,
                    flood=(name, arguments.flood),
                )
                flooded[name] += relay
                loads[name].latencies += load.latencies
                loads[name].statuses += load.statuses
    finally:
        server.process.terminate()
        server.process.wait(30)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, workers={arguments.workers}")
    print(f"documents: first 1000 lines of {SOURCE} x {copies} ({len(text) * copies} chars)")
    print("| measurement | n | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    print(describe("relay, no flood", quiet))
    for name in documents:
        print(describe(f"relay, {arguments.flood} clients flooding ({name})", flooded[name]))
        print(describe(f"completion under flood ({name})", loads[name].latencies))
    for name in documents:
        rate = len(loads[name].latencies) / (arguments.seconds * arguments.rounds)
        print(f"\nflood answers ({name}, {rate:.0f}/s): {dict(loads[name].statuses)}")
    print(f"server log: {log}")


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


if __name__ == "__main__":
    asyncio.run(main())
