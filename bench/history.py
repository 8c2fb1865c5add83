"""Benchmark: what history costs. A real server on SQLite; an hour of two people typing, replayed
fast; then how long listing, diffing and restoring take.

    .venv/bin/python -m bench.history [--minutes 60] [--versions 500] [--edits 100000]

- **Storage per hour**: two pycrdt documents type `--minutes` of keystrokes (5 a second each,
  one update per keystroke, as editors send them, each at a random place in its own half of the
  text), posted to `/update` as fast as the server takes them; one version per 10 minutes of
  typing (what the default `COLLAB_VERSION_EVERY_SECONDS` makes), saved through the API at those
  points. Reported: the room's snapshot and log, the versions' bytes, the SQLite file.
- **Listing**: `--versions` versions in one room, then the time of each page of 100 (newest
  first) and of the last page.
- **Diff**: two versions of 1 MB of Python (30 lines changed; `bench.text_diff`'s case); the
  time of `GET …/diff`.
- **Restore**: the restore of the first of those versions into the second.
- **The history panel on a big room**: `--edits` keystrokes (100,000) of two people typing at
  random places in their halves, written into the store before the server starts, with a
  version every `--edits / --versions` keystrokes (saved as the server saves them: changes to
  the one before, one in ten whole) and the authorship the server would have stamped (one
  range per person per minute of typing at 5 keystrokes a second). Then what the panel asks
  for: the first page of 50 versions, blame of the text now and of the oldest version, a
  version's text, and its diff against the room now; the first call of each as the panel
  makes it (the room not yet in memory for the first), then medians of a few more.

Not a test: nothing here passes or fails. Results: bench/RESULTS-history.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pycrdt import Doc, Text

from bench.fuzz.server import ServerProcess
from bench.ports import free_port
from bench.text_diff import python_1mb
from collab_server.rooms.client_state import decode_state_vector
from persistence import Author, AuthorRange
from persistence.sqlite import SQLiteStore

KEYSTROKES_PER_SECOND = 5  # each typist
TYPISTS = 2
CHECKPOINT_MINUTES = 10
# Rooms typed into leave memory 30 s after their last write (a checkpoint and a compaction);
# timings wait for that, and take the median of a few runs.
SETTLE_SECONDS = 35.0
REPEAT = 5


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def typing_hour(http: httpx.AsyncClient, minutes: int, db: Path) -> list[str]:
    """An hour of typing, replayed as fast as the server takes it; what it left in the store."""
    await http.post("/api/rooms", json={"id": "typing", "language": "python"})
    docs: list[Doc[Text]] = [Doc() for _ in range(TYPISTS)]
    rng = random.Random(1)
    per_minute = KEYSTROKES_PER_SECOND * 60
    started = time.perf_counter()
    for minute in range(minutes):
        for _ in range(per_minute):
            for author, doc in enumerate(docs):
                text = doc.get("codemirror", type=Text)
                before = doc.get_state()
                half = len(text) // 2
                low, high = (0, half) if author == 0 else (half, len(text))
                text.insert(rng.randint(low, high), rng.choice("abcdefghij (){}:\n"))
                update = doc.get_update(before)
                sent = await http.post("/api/rooms/typing/update", content=update)
                sent.raise_for_status()
                docs[1 - author].apply_update(update)
        if (minute + 1) % CHECKPOINT_MINUTES == 0:
            (await http.post("/api/rooms/typing/versions")).raise_for_status()
    typed = time.perf_counter() - started
    listed = (await http.get("/api/rooms/typing/versions")).json()["versions"]
    version_bytes = sum(v["size_bytes"] for v in listed)
    room_bytes = (await http.get("/api/rooms/typing")).json()["size_bytes"]
    text_chars = len(str(docs[0].get("codemirror", type=Text)))
    keystrokes = minutes * per_minute * TYPISTS
    return [
        f"- {keystrokes:,} keystrokes ({minutes} min of {TYPISTS} typists at"
        f" {KEYSTROKES_PER_SECOND}/s each) sent in {typed:.0f} s; the text is {text_chars:,}"
        " characters",
        f"- the room's snapshot and log: {room_bytes / 1024:.0f} KiB (the log compacts as it"
        f" grows); the SQLite file with its WAL: {_db_bytes(db) / 1024:.0f} KiB",
        f"- {len(listed)} versions (one per {CHECKPOINT_MINUTES} min): {version_bytes / 1024:.0f}"
        f" KiB in all, {version_bytes / max(1, len(listed)) / 1024:.1f} KiB each on average",
    ]


async def listing(http: httpx.AsyncClient, count: int) -> list[str]:
    await http.post("/api/rooms", json={"id": "many"})
    await http.put("/api/rooms/many/text", content=b"x = 1\n" * 2000)
    for number in range(count):
        (
            await http.post("/api/rooms/many/versions", json={"label": f"v{number}"})
        ).raise_for_status()
    await asyncio.sleep(SETTLE_SECONDS)
    first_pages, all_pages = [], []
    for _ in range(REPEAT):
        started = time.perf_counter()
        first = await http.get("/api/rooms/many/versions", params={"limit": 100})
        first_pages.append(time.perf_counter() - started)
        cursor, pages = first.json()["next_cursor"], 1
        while cursor is not None:
            page = await http.get(
                "/api/rooms/many/versions", params={"limit": 100, "cursor": cursor}
            )
            cursor, pages = page.json()["next_cursor"], pages + 1
        all_pages.append(time.perf_counter() - started)
    return [
        f"- {count} versions: the first page of 100 in {_ms(statistics.median(first_pages))},"
        f" all {pages} pages in {_ms(statistics.median(all_pages))} (medians of {REPEAT})"
    ]


async def diff_and_restore(http: httpx.AsyncClient) -> list[str]:
    old, new = python_1mb()
    await http.post("/api/rooms", json={"id": "big", "language": "python"})
    (await http.put("/api/rooms/big/text", content=old.encode())).raise_for_status()
    first = (await http.post("/api/rooms/big/versions")).json()
    (await http.put("/api/rooms/big/text", content=new.encode())).raise_for_status()
    second = (await http.post("/api/rooms/big/versions")).json()
    await asyncio.sleep(SETTLE_SECONDS)
    timings = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        diff = await http.get(f"/api/rooms/big/versions/{first['id']}/diff/{second['id']}")
        timings.append(time.perf_counter() - started)
    diffed = statistics.median(timings)
    started = time.perf_counter()
    restored = await http.post(f"/api/rooms/big/versions/{first['id']}/restore")
    restoring = time.perf_counter() - started
    restored.raise_for_status()
    return [
        f"- diff of two {len(old.encode()) / 1024:.0f} KiB Python texts ({old.count(chr(10)):,}"
        f" lines, 30 edits): {diff.status_code}, {len(diff.text):,} characters, {_ms(diffed)}"
        f" (median of {REPEAT}; both texts are read from their versions each time)",
        f"- restore of the first into the second (a version saved before and after, the text"
        f" changed by a minimal edit): {_ms(restoring)}",
    ]


def typed_room(edits: int, versions: int) -> tuple[list[bytes], list[bytes], list[AuthorRange]]:
    """Two people typing as people do, each in their half of the text: runs of characters at a
    cursor that now and then jumps elsewhere, with a backspace in twenty. Returns the log (as
    compaction leaves it: the whole document in one update), a version every
    `edits // versions` keystrokes (each the change since the one before, one in ten whole),
    and who typed what (one range per person per minute at 5 keystrokes a second)."""
    docs: list[Doc[Text]] = [Doc() for _ in range(TYPISTS)]
    rng = random.Random(2)
    changes: list[bytes] = []
    ranges: list[AuthorRange] = []
    cursors = [0, 0]
    every = max(1, edits // versions)
    per_minute = KEYSTROKES_PER_SECOND * 60
    start = datetime.now(UTC) - timedelta(seconds=edits / TYPISTS / KEYSTROKES_PER_SECOND)
    last_state = b"\x00"
    for number in range(edits):
        author = number % TYPISTS
        doc = docs[author]
        text = doc.get("codemirror", type=Text)
        clock_before = _clock_of(doc)
        before = doc.get_state()
        half = len(text) // 2
        low, high = (0, half) if author == 0 else (half, len(text))
        if rng.random() < 0.02 or not low <= cursors[author] <= high:
            cursors[author] = rng.randint(low, high)
        if rng.random() < 0.05 and cursors[author] > low:
            cursors[author] -= 1
            del text[cursors[author]]
            moved = -1
        else:
            text.insert(cursors[author], rng.choice("abcdefghij (){}:\n"))
            cursors[author] += 1
            moved = 1
        update = doc.get_update(before)
        docs[1 - author].apply_update(update)
        if author == 0:  # the second half moved along
            cursors[1] += moved
        written = _clock_of(doc) - clock_before
        if written:
            minute = (number // TYPISTS) // per_minute
            moment = start + timedelta(minutes=minute)
            last = ranges[-TYPISTS:] if ranges else []
            mine = next((r for r in last if r.client == doc.client_id), None)
            if mine is not None and mine.time == moment:
                ranges[ranges.index(mine)] = AuthorRange(
                    mine.client, mine.clock, mine.length + written, mine.author, moment
                )
            else:
                who = Author(["Ada", "Bo"][author], self_declared=True)
                ranges.append(AuthorRange(doc.client_id, clock_before, written, who, moment))
        if (number + 1) % every == 0:
            whole = len(changes) % 10 == 0
            changes.append(docs[0].get_update() if whole else docs[0].get_update(last_state))
            last_state = docs[0].get_state()
    return [docs[0].get_update()], changes, ranges


def _clock_of(doc: Doc[Text]) -> int:
    """The next clock of the document's own client."""
    state = decode_state_vector(doc.get_state())
    return state.get(doc.client_id, 0)


async def seed_big_room(db: Path, edits: int, versions: int) -> None:
    """The room `big-history`, written into the store before the server opens it."""
    log, changes, ranges = await asyncio.to_thread(typed_room, edits, versions)
    store = SQLiteStore(str(db))
    await store.open()
    try:
        await store.create_room("big-history", "big history", "python")
        await store.append_many("big-history", log)
        base = None
        for number, change in enumerate(changes):
            saved = await store.save_version(
                "big-history",
                change,
                label=None,
                automatic=True,
                authors=["Ada", "Bo"],
                base=None if number % 10 == 0 else base,
            )
            base = saved.id
        await store.save_authorship("big-history", ranges)
    finally:
        await store.close()


async def panel(http: httpx.AsyncClient, edits: int) -> list[str]:
    room = "/api/rooms/big-history"
    timings: dict[str, list[float]] = {}

    async def timed(what: str, path: str, **params: int) -> httpx.Response:
        started = time.perf_counter()
        answer = await http.get(path, params=params)
        timings.setdefault(what, []).append(time.perf_counter() - started)
        answer.raise_for_status()
        return answer

    oldest, cursor = None, None
    while True:  # the oldest version's id, from the last page
        params = {"limit": 100} | ({"cursor": cursor} if cursor is not None else {})
        page = (await http.get(f"{room}/versions", params=params)).json()
        if page["versions"]:
            oldest = page["versions"][-1]["id"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    for _ in range(REPEAT + 1):
        listed = (await timed("first page of 50 versions", f"{room}/versions", limit=50)).json()
        newest = listed["versions"][0]["id"]
        blamed = (await timed("blame of the text now", f"{room}/blame")).json()
        await timed(
            "text of the newest version (a chain of changes)", f"{room}/versions/{newest}/text"
        )
        await timed("its diff against the room now", f"{room}/versions/{newest}/diff/current")
        await timed("blame of the oldest version", f"{room}/versions/{oldest}/blame")
    return [
        f"- {edits:,} keystrokes of two people, {blamed['line_count']:,} lines,"
        f" {len(blamed['runs']):,} runs of lines by one author:",
        *(
            f"  - {what}: first {_ms(times[0])}, then {_ms(statistics.median(times[1:]))}"
            for what, times in timings.items()
        ),
    ]


def _db_bytes(db: Path) -> int:
    return sum(path.stat().st_size for path in db.parent.glob(db.name + "*"))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--versions", type=int, default=500)
    parser.add_argument("--edits", type=int, default=100_000)
    arguments = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-history-"))
    db = directory / "history.db"
    await seed_big_room(db, arguments.edits, arguments.versions)
    env = {
        "COLLAB_STORE_URL": f"sqlite:///{db}",
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_COMPLETION_WORKERS": "0",
        "COLLAB_ROOM_OPENINGS_PER_MINUTE": "0",
        "COLLAB_VERSIONS_KEPT": str(arguments.versions + 10),
    }
    server = ServerProcess(free_port(), env, directory / "server.log")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=120) as http:
            lines = ["Storage:", *await typing_hour(http, arguments.minutes, db)]
            lines += ["Listing:", *await listing(http, arguments.versions)]
            lines += ["Diff and restore:", *await diff_and_restore(http)]
            lines += ["The history panel on a big room:", *await panel(http, arguments.edits)]
    finally:
        await server.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
