"""CPU per delivery of the server's relay path, in process: decode, store, apply, fan out, merge.

No sockets: every peer takes its frames as the server's idle peers do, written straight
(`write_now`), into a function that only counts them; `--queued` gives each peer a sender task
and a queue instead (what a peer whose socket pushes back gets). What is left is our code
(protocol codec, checks, Room, RoomRegistry on the memory store, Peer) and pycrdt, on uvloop as
the server runs, measured in CPU time, which other work on the machine disturbs far less than
wall-clock latency. Use it to compare two versions of the hot path:

    .venv/bin/python -m bench.hotpath
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/hotpath.py   # its collab_server

Each round, every client of every room sends one keystroke, then the event loop runs the peers'
senders once; `--burst N` sends N keystrokes per client per round (a client whose socket had
several messages buffered).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

import uvloop
from pycrdt import Doc, Text, TransactionEvent

from collab_server.metrics import Metrics
from collab_server.protocol import SyncUpdate, decode_message, encode_update
from collab_server.rooms.peer import Peer
from collab_server.rooms.registry import RoomRegistry
from collab_server.rooms.room import Room
from collab_server.settings import Settings
from persistence.memory import MemoryStore


def keystrokes(count: int, seed: int) -> list[bytes]:
    """`count` one-character inserts typed by one client, each as a y-protocols update message."""
    doc: Doc[Text] = Doc()
    text = doc.get("codemirror", type=Text)
    frames: list[bytes] = []

    def collect(event: TransactionEvent) -> None:
        frames.append(encode_update(event.update))

    doc.observe(collect)
    for k in range(count):
        text.insert(k, "abcdefghij\n"[(k + seed) % 11])
    return frames


async def measure(
    rooms: int, clients: int, rounds: int, burst: int, queued: bool
) -> tuple[float, int, int]:
    """CPU seconds, deliveries and frames sent for `rounds` rounds of typing."""
    typed = [
        [keystrokes(rounds * burst, r * clients + c) for c in range(clients)] for r in range(rooms)
    ]
    frames_sent = 0

    async def send(frame: bytes) -> None:
        nonlocal frames_sent
        frames_sent += 1

    def write_now(frame: bytes) -> bool:
        nonlocal frames_sent
        frames_sent += 1
        return True

    async def close(code: int, reason: str) -> None:
        raise AssertionError(f"peer closed: {code} {reason}")

    store = MemoryStore()
    await store.open()
    async with (
        RoomRegistry(store, Settings(), Metrics()) as registry,
        AsyncExitStack() as leases,
        asyncio.TaskGroup() as tasks,
    ):
        peers: list[list[Peer]] = []
        loaded: list[Room] = []
        for r in range(rooms):
            room = await leases.enter_async_context(registry.lease(f"room{r}"))
            loaded.append(room)
            room_peers = [
                Peer(
                    room.id, send, close, queue_limit=4096, write_now=None if queued else write_now
                )
                for _ in range(clients)
            ]
            for peer in room_peers:
                tasks.create_task(peer.run())
                room.join(peer)
            peers.append(room_peers)
        await asyncio.sleep(0)
        frames_sent = 0
        started = time.process_time()
        for k in range(rounds):
            for room, room_peers, room_typed in zip(loaded, peers, typed, strict=True):
                for peer, frames in zip(room_peers, room_typed, strict=True):
                    for b in range(burst):
                        message = decode_message(frames[k * burst + b])
                        assert isinstance(message, SyncUpdate)
                        await room.store_updates([await room.check(message.update)], origin=peer)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        cpu = time.process_time() - started
        for room, room_peers in zip(loaded, peers, strict=True):
            for peer in room_peers:
                room.leave(peer)
                peer.stop()
    await store.close()
    deliveries = rooms * clients * (clients - 1) * rounds * burst
    return cpu, deliveries, frames_sent


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CPU per delivery of the relay path")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--queued", action="store_true", help="peers with a sender task and a queue"
    )
    args = parser.parse_args(argv)
    results = []
    for _ in range(args.repeat):
        cpu, deliveries, frames = uvloop.run(
            measure(args.rooms, args.clients, args.rounds, args.burst, args.queued)
        )
        results.append(cpu * 1e6 / deliveries)
    print(
        f"{args.rooms} rooms x {args.clients} clients, burst {args.burst}, "
        f"{'queued' if args.queued else 'written straight'}: "
        f"median {statistics.median(results):.2f} µs CPU per delivery "
        f"(min {min(results):.2f}, max {max(results):.2f}, {args.repeat} runs; "
        f"{frames} frames for {deliveries} deliveries)"
    )


if __name__ == "__main__":
    main()
