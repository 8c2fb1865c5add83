"""Shrink a failing case (a list of updates) to a small one that fails the same way.

First whole updates go, then structs, delete-set entries and content (on the decoded model,
so each step stays a well-formed update), then client ids become 1, 2, 3..., and last single
bytes go (ddmin). Every candidate is judged by the oracle (a child process doing what the
server does); it is kept when its failure has the same signature (outcome, step, message with
the numbers blanked out).

    .venv/bin/python -m bench.fuzz.minimise CRASH_DIR_OR_FILES... --out bench/fuzz/corpus/NAME
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from bench.fuzz.oracle import Oracle, Verdict
from bench.fuzz.rewrite import rename_clients
from bench.fuzz.ydecode import DecodeError, decode_update
from bench.fuzz.yencode import (
    AnyContent,
    ClientStructs,
    DeleteSet,
    Item,
    String,
    Update,
    encode_update,
)
from collab_server.protocol import ProtocolError, SyncStep2, SyncUpdate, decode_message


def same_failure(verdict: Verdict) -> str:
    """The verdict's signature with numbers blanked out, plus where yrs panicked (one message,
    such as `Option::unwrap()` on `None`, comes from several places)."""
    where = re.search(r"panicked at \S*/src/(\S+?):(\d+):", verdict.detail)
    place = f" @ {where.group(1)}:{where.group(2)}" if where else ""
    return re.sub(r"\d+", "N", verdict.signature()) + place


class Shrinker:
    def __init__(
        self,
        oracle: Oracle,
        target: str,
        budget: int = 4000,
        seconds: float = 300.0,
        compare: bool = False,
    ) -> None:
        self._oracle = oracle
        self._compare = compare  # shrinking a difference between live and replayed documents
        self._target = target
        self.budget = budget  # oracle runs
        self._deadline = time.monotonic() + seconds  # hangs take the oracle's timeout each
        self.runs = 0

    def fails(self, updates: list[bytes]) -> bool:
        if self.runs >= self.budget or not updates or time.monotonic() > self._deadline:
            return False
        self.runs += 1
        return same_failure(self._oracle.judge(updates, self._compare)) == self._target

    def shrink(self, updates: list[bytes]) -> list[bytes]:
        updates = self._drop_updates(updates)
        changed = True
        while changed and self.runs < self.budget:
            changed = False
            for index in range(len(updates)):
                smaller = self._shrink_model(updates, index)
                if smaller != updates[index]:
                    updates = [*updates[:index], smaller, *updates[index + 1 :]]
                    changed = True
            renamed = _renumber(updates)
            if renamed != updates and self.fails(renamed):
                updates = renamed
                changed = True
        for index in range(len(updates)):
            updates[index] = self._ddmin_bytes(updates, index)
        return self._drop_updates(updates)  # bytes gone may have emptied a whole update

    def _drop_updates(self, updates: list[bytes]) -> list[bytes]:
        index = 0
        while index < len(updates) and len(updates) > 1:
            candidate = updates[:index] + updates[index + 1 :]
            if self.fails(candidate):
                updates = candidate
            else:
                index += 1
        return updates

    def _shrink_model(self, updates: list[bytes], index: int) -> bytes:
        try:
            model = decode_update(updates[index])
        except DecodeError:
            return updates[index]
        for candidate in _smaller_models(model):
            data = encode_update(candidate)
            trial = [*updates[:index], data, *updates[index + 1 :]]
            if len(data) < len(updates[index]) and self.fails(trial):
                return data
        return updates[index]

    def _ddmin_bytes(self, updates: list[bytes], index: int) -> bytes:
        data = updates[index]
        chunk = max(1, len(data) // 2)
        while chunk >= 1 and self.runs < self.budget:
            start = 0
            while start < len(data):
                candidate = data[:start] + data[start + chunk :]
                if self.fails([*updates[:index], candidate, *updates[index + 1 :]]):
                    data = candidate
                else:
                    start += chunk
            chunk //= 2
        return data


def _smaller_models(update: Update) -> Iterator[Update]:
    """Candidates one step smaller than `update`, biggest cuts first."""
    runs = update.clients
    for index in range(len(runs)):
        yield replace(update, clients=runs[:index] + runs[index + 1 :])
    ds = update.delete_set.clients
    for index in range(len(ds)):
        yield replace(update, delete_set=DeleteSet(ds[:index] + ds[index + 1 :]))
    for index, (client, ranges) in enumerate(ds):
        if len(ranges) > 1:
            halves = [ranges[: len(ranges) // 2], ranges[len(ranges) // 2 :]]
            for half in halves:
                entries = (*ds[:index], (client, half), *ds[index + 1 :])
                yield replace(update, delete_set=DeleteSet(entries))
    for run_index, run in enumerate(runs):
        structs = run.structs
        if len(structs) > 2:
            for kept in (structs[: len(structs) // 2], structs[len(structs) // 2 :]):
                yield _with_run(update, run_index, replace(run, structs=kept))
        for index in reversed(range(len(structs))):
            kept = structs[:index] + structs[index + 1 :]
            yield _with_run(update, run_index, replace(run, structs=kept))
        for index, block in enumerate(structs):
            for simpler in _simpler_items(block):
                kept = (*structs[:index], simpler, *structs[index + 1 :])
                yield _with_run(update, run_index, replace(run, structs=kept))


def _simpler_items(block: object) -> Iterator[Item]:
    if not isinstance(block, Item):
        return
    content = block.content
    if isinstance(content, String) and isinstance(content.text, str) and len(content.text) > 1:
        yield replace(block, content=String(content.text[: len(content.text) // 2]))
    if isinstance(content, AnyContent) and len(content.values) > 1:
        yield replace(block, content=AnyContent(content.values[:1]))
    if not (isinstance(content, AnyContent) and content.values == (None,)):
        yield replace(block, content=AnyContent((None,)))
    if isinstance(block.parent, str) and len(block.parent) > 1:
        yield replace(block, parent=block.parent[:1])


def _with_run(update: Update, index: int, run: ClientStructs) -> Update:
    runs = list(update.clients)
    runs[index] = run
    return replace(update, clients=tuple(runs))


def _renumber(updates: list[bytes]) -> list[bytes]:
    """Client ids 1, 2, 3... in order of appearance, the same in every update of the case."""
    names: dict[int, int] = {}
    try:
        return rename_clients(updates, lambda client: names.setdefault(client, len(names) + 1))
    except DecodeError:
        return updates


def updates_of(paths: list[Path]) -> list[bytes]:
    """The updates in frame files (y-protocols frames, or raw updates sent over REST), in
    name order; a crash directory's frames.txt index names them."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.bin")) if path.is_dir() else [path])
    updates = []
    for file in files:
        data = file.read_bytes()
        try:
            message = decode_message(data)
        except ProtocolError:
            message = None
        if isinstance(message, SyncUpdate | SyncStep2):
            updates.append(message.update)
        elif message is None or ".rest." in file.name:
            updates.append(data)
    return updates


def minimise_case(
    updates: list[bytes], oracle: Oracle, log: Callable[[str], None] = print
) -> tuple[list[bytes], Verdict] | None:
    verdict = oracle.judge(updates)
    if not verdict.fatal:
        log(f"does not fail in the oracle ({verdict.outcome} {verdict.stage})")
        return None
    shrinker = Shrinker(oracle, same_failure(verdict))
    small = shrinker.shrink(updates)
    log(f"{sum(map(len, updates))} -> {sum(map(len, small))} bytes in {shrinker.runs} runs")
    return small, oracle.judge(small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="prefix of the files written")
    args = parser.parse_args()
    oracle = Oracle()
    try:
        result = minimise_case(updates_of(args.paths), oracle)
    finally:
        oracle.close()
    if result is None:
        raise SystemExit(1)
    small, verdict = result
    for index, data in enumerate(small, 1):
        suffix = f".{index}.bin" if len(small) > 1 else ".bin"
        path = args.out.with_name(args.out.name + suffix)
        path.write_bytes(data)
        print(f"{path}: {data.hex()}")
    print(f"{verdict.outcome} at {verdict.stage}: {verdict.detail}")


if __name__ == "__main__":
    main()
