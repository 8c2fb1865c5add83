"""CPU per append of a store, as keystrokes reach it at typing rates: one at a time.

Each append is one keystroke-sized update (30 bytes) to one of ten rooms, awaited before the next
is made, so every append is a commit of its own (as when 100 people type 10 keys a second each:
the commits rarely overlap). What is measured is this process's CPU time (the event loop's thread
and any thread of the store's; not the PostgreSQL server's) and the wall time, per append. Run it
for two trees to compare them:

    .venv/bin/python -m bench.store_appends --store sqlite
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/store_appends.py --store sqlite

`--store postgres` uses a scratch database on COLLAB_BENCH_POSTGRES_URL (bench/pgdb.py).
`--concurrent N` keeps N appends in flight instead (N rooms typing at once): commits then take
whatever has queued up.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import uvloop

from bench.pgdb import scratch_database
from persistence import Store, open_store

ROOMS = 10
UPDATE = bytes(range(30))


@asynccontextmanager
async def store_url(kind: str) -> AsyncIterator[str]:
    if kind == "postgres":
        async with scratch_database() as url:
            yield url
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            yield f"sqlite:///{scratch}/appends.db"
    else:
        yield "memory://"


async def measure(kind: str, appends: int, concurrent: int) -> tuple[float, float]:
    """CPU seconds and wall seconds per append."""
    async with store_url(kind) as url:
        store: Store = open_store(url)
        await store.open()
        try:
            for room in range(ROOMS):
                await store.create_room(f"room{room}", f"room{room}", None)
                await store.append(f"room{room}", UPDATE)  # the room's numbers are known now

            async def typist(first: int) -> None:
                for k in range(first, appends, concurrent):
                    await store.append_many(f"room{k % ROOMS}", [UPDATE])

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(typist(first) for first in range(concurrent)))
            return (time.process_time() - cpu) / appends, (time.perf_counter() - wall) / appends
        finally:
            await store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="CPU per append of a store")
    parser.add_argument("--store", choices=["sqlite", "postgres", "memory"], default="sqlite")
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(args.repeat):
        run_cpu, run_wall = uvloop.run(measure(args.store, args.appends, args.concurrent))
        cpu.append(run_cpu * 1e6)
        wall.append(run_wall * 1e6)
    print(
        f"{args.store}, {args.appends} appends, {args.concurrent} in flight: "
        f"median {statistics.median(cpu):.1f} µs CPU per append "
        f"(min {min(cpu):.1f}, max {max(cpu):.1f}), "
        f"median {statistics.median(wall):.1f} µs wall per append, {args.repeat} runs"
    )


if __name__ == "__main__":
    main()
