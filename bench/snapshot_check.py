"""Benchmark: checking a room's snapshot, at load and at each compaction, for typists who edit
the same text (each one's keystrokes start next to another's).

    .venv/bin/python -m bench.snapshot_check [--baseline DIR] [--timeout 120]

A snapshot lists its items client by client, so an item whose origin is another typist's item
comes before that item. Each case builds its document in a child process (killed past
`--timeout`) and reports the seconds `check_stored` takes on the snapshot (a load) and `squash`
takes on the snapshot and its last 2,000 keystrokes (a compaction of a loaded room).
`--baseline DIR` runs the same cases with the `collab_server` found in DIR (say a
`git archive REV | tar -x -C DIR`) first on the path. Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

# (typists, keystrokes each, keystrokes a typist makes before the next one types)
CASES = [(2, 2_000, 8), (10, 400, 1), (10, 1_200, 1), (10, 1_200, 8), (2, 20_000, 8)]
COMPACTED_TAIL = 2_000


def interleaved_typing(typists: int, keystrokes: int, turn: int) -> list[bytes]:
    """Every keystroke's update, in the order the server got them: the typists take turns of
    `turn` keystrokes, each turn typed where the previous typist stopped."""
    from pycrdt import Doc, Text

    docs: list[Doc[Any]] = [Doc() for _ in range(typists)]
    updates = []
    at = 0
    for round_ in range(keystrokes // turn):
        for typist, doc in enumerate(docs):
            text = doc.get("codemirror", type=Text)
            for stroke in range(turn):
                before = doc.get_state()
                text.insert(min(at, len(text)), "abcdefgh"[(round_ + typist + stroke) % 8])
                at += 1
                update = doc.get_update(before)
                updates.append(update)
                for other in docs:
                    if other is not doc:
                        other.apply_update(update)
    return updates


def run_case(case: tuple[int, int, int], baseline: str | None, answer: Connection) -> None:
    if baseline:
        sys.path.insert(0, baseline)
    from collab_server.protocol.update import UpdateLimits
    from collab_server.rooms import snapshot

    updates = interleaved_typing(*case)
    limits = UpdateLimits()
    whole = snapshot.build_stored(updates).get_update()
    started = time.perf_counter()
    snapshot.check_stored([whole], limits)
    load = time.perf_counter() - started
    started = time.perf_counter()
    snapshot.squash([whole, *updates[-COMPACTED_TAIL:]], limits, checked=True)
    compaction = time.perf_counter() - started
    answer.send((len(updates), len(whole), load, compaction))


def measure(case: tuple[int, int, int], baseline: str | None, timeout: float) -> str:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(target=run_case, args=(case, baseline, sending))
    child.start()
    # The child's end too: one that died has nothing to send, and must not read as too slow.
    if not multiprocessing.connection.wait([receiving, child.sentinel], timeout):
        child.kill()
        child.join()
        return f"over {timeout:.0f} s | over {timeout:.0f} s"
    if not receiving.poll():
        child.join()
        raise SystemExit(f"case {case} failed (exit code {child.exitcode})")
    _, _, load, compaction = receiving.recv()
    child.join()
    return f"{load:.3f} | {compaction:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a directory holding the collab_server to compare")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per case and tree")
    args = parser.parse_args()
    trees = [("baseline", args.baseline), ("this tree", None)] if args.baseline else []
    trees = trees or [("this tree", None)]
    print("| typists, keystrokes each, turn | tree | load check s | compaction s |")
    print("|---|---|---:|---:|")
    for case in CASES:
        typists, keystrokes, turn = case
        for name, directory in trees:
            figures = measure(case, directory, args.timeout)
            print(f"| {typists}, {keystrokes:,}, {turn} | {name} | {figures} |", flush=True)


if __name__ == "__main__":
    main()
