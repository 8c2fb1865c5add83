"""What the fuzzer keeps when the server dies: the last frames sent (one file each, with an
index), the end of the server's stderr, and a triage: which room's frames reproduce the death
in the oracle, shrunk to a minimal reproducer when the failure is new.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fuzz.minimise import Shrinker, same_failure
from bench.fuzz.oracle import Oracle
from collab_server.protocol import ProtocolError, SyncStep2, SyncUpdate, decode_message


@dataclass(frozen=True, slots=True)
class SentFrame:
    seq: int  # the run's frame counter when it was sent
    at: float  # seconds since the start of the run
    room: str
    worker: int
    via: str
    kind: str
    data: bytes


def save_frames(directory: Path, frames: list[SentFrame]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    index = []
    for number, frame in enumerate(frames, 1):
        safe_kind = re.sub(r"[^A-Za-z0-9_.+-]", "_", frame.kind)[:80]
        name = f"{number:04d}.{frame.via}.{safe_kind}.bin"
        (directory / name).write_bytes(frame.data)
        index.append(
            {
                "file": name,
                "seq": frame.seq,
                "at": round(frame.at, 3),
                "room": frame.room,
                "worker": frame.worker,
                "via": frame.via,
                "kind": frame.kind,
                "bytes": len(frame.data),
            }
        )
    (directory / "frames.json").write_text(json.dumps(index, indent=1))


def update_of(frame: SentFrame) -> bytes | None:
    """The Yjs update a frame carries (a REST body is one), or None."""
    if frame.via == "rest":
        return frame.data
    if frame.via != "ws":
        return None
    try:
        message = decode_message(frame.data)
    except ProtocolError:
        return None
    if isinstance(message, SyncUpdate | SyncStep2):
        return message.update
    return None


def triage(
    frames: list[SentFrame], oracle: Oracle, known: dict[str, str], budget: int
) -> dict[str, Any]:
    """Find a room whose updates fail fatally in the oracle; shrink it if its failure is new.

    `known` maps failure signatures to the reproducer already written for them (updated here).
    """
    by_room: dict[str, list[bytes]] = defaultdict(list)
    for frame in frames:
        update = update_of(frame)
        if update is not None:
            by_room[frame.room].append(update)
    # The room of the last frames first: the likeliest culprit.
    rooms = list(dict.fromkeys(frame.room for frame in reversed(frames)))
    for room in rooms:
        updates = by_room.get(room)
        if not updates:
            continue
        verdict = oracle.judge(updates)
        if not verdict.fatal:
            continue
        signature = same_failure(verdict)
        result: dict[str, Any] = {
            "reproduced_in_oracle": True,
            "room": room,
            "oracle": f"{verdict.outcome} at {verdict.stage}: {verdict.detail.splitlines()[0]}",
            "signature": signature,
        }
        if signature in known:
            result["reproducer"] = known[signature]
            return result
        started = time.monotonic()
        shrinker = Shrinker(oracle, signature, budget=budget)
        small = shrinker.shrink(updates)
        result["minimal_updates_hex"] = [update.hex() for update in small]
        result["minimise_seconds"] = round(time.monotonic() - started, 1)
        result["minimise_runs"] = shrinker.runs
        return result
    return {"reproduced_in_oracle": False}


def triage_difference(updates: list[bytes], oracle: Oracle, budget: int) -> dict[str, Any]:
    """A room that differed after a restart: do its stored updates give different documents
    live and replayed in the oracle, or fail to load at all (an update that was stored and
    then failed to apply)? Either way, shrink them."""
    verdict = oracle.judge(updates, compare=True)
    result: dict[str, Any] = {
        "oracle": f"{verdict.outcome} at {verdict.stage or '-'}: {verdict.detail[:200]}"
    }
    if verdict.outcome == "ok":
        return result
    signature = same_failure(verdict)
    shrinker = Shrinker(oracle, signature, budget=budget, compare=True)
    small = shrinker.shrink(updates)
    result.update(
        signature=signature,
        detail=oracle.judge(small, compare=True).detail.splitlines()[:6],
        minimal_updates_hex=[update.hex() for update in small],
        minimise_runs=shrinker.runs,
    )
    return result


def stored_log(database: Path, room: str) -> list[bytes]:
    """A room's snapshot and log rows in the SQLite store, read-only (the server keeps
    running), in the order a cold load replays them."""
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as connection:
        snapshot = connection.execute(
            "SELECT data FROM snapshots WHERE room = ?", (room,)
        ).fetchall()
        rows = connection.execute(
            "SELECT data FROM updates WHERE room = ? ORDER BY seq", (room,)
        ).fetchall()
    return [bytes(row[0]) for row in [*snapshot, *rows]]


def write_reproducer(directory: Path, updates_hex: list[str]) -> list[str]:
    names = []
    for number, text in enumerate(updates_hex, 1):
        name = f"minimal.{number}.bin"
        (directory / name).write_bytes(bytes.fromhex(text))
        names.append(str(directory / name))
    return names
