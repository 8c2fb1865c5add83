"""Cold load of a room whose log holds 100,000 keystrokes, before and after compaction.

    .venv/bin/python -m bench.pg_cold_load [--keystrokes 100000] [--runs 5]

A cold load is what the registry does when the first client joins a room that is not in memory:
read the snapshot and log tail from PostgreSQL (`PostgresStore.load`) and rebuild the document
(`snapshot.doc_from_log`). The keystrokes are one update each, as an editor sends them: code typed
line by line, with a backspace now and then.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import UTC, datetime

from pycrdt import Doc, Text

from bench.pgdb import scratch_database
from collab_server.rooms import snapshot
from persistence.postgres import PostgresStore
from persistence.postgres_writer import write_batch

LINE = "    total = compute(values[index], weight=0.5)  # keep going\n"


def keystrokes(count: int) -> list[bytes]:
    """One update per transaction, as an editor's document emits them."""
    doc: Doc[Text] = Doc()
    text = doc.get("codemirror", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    rng = random.Random(7)
    position = 0
    while len(updates) < count:
        if position > 0 and rng.random() < 0.08:
            del text[len(text) - 1]  # a backspace
        else:
            text += LINE[position % len(LINE)]
        position += 1
    return updates


async def cold_load(store: PostgresStore, room: str) -> tuple[float, float, int]:
    """Seconds to read, seconds to rebuild, and the document's length."""
    start = time.perf_counter()
    log = await store.load(room)
    read = time.perf_counter()
    doc = snapshot.doc_from_log(log)
    done = time.perf_counter()
    return read - start, done - read, len(doc.get("codemirror", type=Text))


async def measure(store: PostgresStore, label: str, runs: int) -> None:
    results = [await cold_load(store, "big") for _ in range(runs)]
    reads = [r[0] * 1000 for r in results]
    builds = [r[1] * 1000 for r in results]
    totals = [(r[0] + r[1]) * 1000 for r in results]
    print(
        f"{label:>17}: cold load median {statistics.median(totals):8.1f} ms"
        f" (read {statistics.median(reads):7.1f} ms + rebuild {statistics.median(builds):7.1f}"
        f" ms; min {min(totals):.1f}, max {max(totals):.1f}; {results[0][2]} chars)"
    )


async def main(count: int, runs: int) -> None:
    started = time.perf_counter()
    updates = keystrokes(count)
    print(
        f"generated {len(updates)} keystrokes ({sum(map(len, updates))} bytes)"
        f" in {time.perf_counter() - started:.1f} s"
    )
    async with scratch_database() as url:
        store = PostgresStore(url)
        await store.open()
        try:
            await store.create_room("big", "big", None)
            async with store._connection() as conn:  # bulk load, same SQL as the writer
                for start in range(0, len(updates), 5000):
                    now = datetime.now(UTC)
                    chunk = updates[start : start + 5000]
                    await write_batch(conn, [("big", update, now) for update in chunk])
            record = await store.get_room("big")
            assert record is not None
            print(f"log: {record.log_rows} rows, {record.size_bytes} bytes")
            await measure(store, "before compaction", runs)
            started = time.perf_counter()
            assert await snapshot.compact(store, "big")
            print(f"compaction took {(time.perf_counter() - started) * 1000:.0f} ms")
            record = await store.get_room("big")
            assert record is not None
            print(f"after: {record.log_rows} log rows, snapshot+log {record.size_bytes} bytes")
            await measure(store, "after compaction", runs)
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keystrokes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.keystrokes, arguments.runs))
