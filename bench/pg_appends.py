"""Sustained appends/s into PostgreSQL from many concurrent writers: group commit against one
commit per update.

    .venv/bin/python -m bench.pg_appends [--writers 200] [--rooms 50] [--seconds 10]

`group`: every writer calls `PostgresStore.append` (one writer task, one transaction per batch).
`per-update`: every writer takes a pool connection and commits its update alone, with the same
SQL (`write_batch` with a batch of one), as a store without group commit would.
Each writer appends a 30-byte update, waits until it is durable, and appends the next.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from bench.pgdb import scratch_database
from persistence.postgres import PostgresStore
from persistence.postgres_writer import write_batch

UPDATE = bytes(range(30))


async def _drive(
    append: Callable[[str], Awaitable[object]], writers: int, rooms: int, seconds: float
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def writer(index: int) -> None:
        room = f"r{index % rooms}"
        while (start := time.perf_counter()) < deadline:
            await append(room)
            latencies.append(time.perf_counter() - start)

    async with asyncio.TaskGroup() as tasks:
        for index in range(writers):
            tasks.create_task(writer(index))
    return len(latencies), latencies


def _report(mode: str, count: int, latencies: list[float], seconds: float) -> None:
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{mode:>10}: {count / seconds:9.0f} appends/s"
        f"  latency p50 {quantiles[49] * 1000:6.1f} ms  p99 {quantiles[98] * 1000:6.1f} ms"
    )


async def main(writers: int, rooms: int, seconds: float, pool_size: int) -> None:
    async with scratch_database() as url:
        store = PostgresStore(url)
        await store.open()
        try:
            for room in range(rooms):
                await store.create_room(f"r{room}", f"r{room}", None)

            async def grouped(room: str) -> object:
                return await store.append(room, UPDATE)

            count, latencies = await _drive(grouped, writers, rooms, seconds)
            _report("group", count, latencies, seconds)
        finally:
            await store.close()

        pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
        try:

            async def alone(room: str) -> object:
                async with pool.acquire() as conn:
                    return await write_batch(conn, [(room, UPDATE, datetime.now(UTC))])

            count, latencies = await _drive(alone, writers, rooms, seconds)
            _report("per-update", count, latencies, seconds)
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=200)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--pool", type=int, default=20, help="connections for per-update")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.writers, arguments.rooms, arguments.seconds, arguments.pool))
