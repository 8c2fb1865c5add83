"""Benchmark: how long `text_edits` (PUT /api/rooms/{room}/text) takes, ordinary and adversarial.

    .venv/bin/python -m bench.text_diff [--repeat 5] [--baseline HEAD~1] [--timeout 120]

Every case runs in a child process (fresh, and killed past `--timeout`), which builds its own
seeded input and reports the best of `--repeat` runs. `--baseline REV` also times the
`text_edits` of `collab_server/rooms/text_edit.py` as it was at the git revision REV, once per
case (the difflib version took minutes on some of these). Not a test: nothing here passes or
fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import subprocess
import sys
import sysconfig
import time
import types
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import cast

from collab_server.rooms.text_edit import diff_text

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
MODULE_PATH = "collab_server/rooms/text_edit.py"
Edits = Callable[[str, str], list[object]]


def code_edits(lines: list[str], count: int, seed: int) -> list[str]:
    """`lines` after `count` edits a person might make: change, insert or delete a line."""
    rng = random.Random(seed)
    edited = list(lines)
    for _ in range(count):
        index = rng.randrange(len(edited))
        kind = rng.randrange(3)
        if kind == 0:
            edited[index] = edited[index].rstrip("\n") + "  # changed\n"
        elif kind == 1:
            edited.insert(index, "    value = compute(value)  # inserted\n")
        else:
            del edited[index]
    return edited


def python_1000() -> tuple[str, str]:
    lines = (STDLIB / "argparse.py").read_text().splitlines(keepends=True)[:1000]
    return "".join(lines), "".join(code_edits(lines, 3, seed=1))


def python_1mb() -> tuple[str, str]:
    """Distinct stdlib modules, in name order, up to 1 MB, with 30 edits spread over them."""
    lines: list[str] = []
    size = 0
    for path in sorted(STDLIB.glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            lines.append(line)
            size += len(line)
        if size >= 1_000_000:
            break
    return "".join(lines), "".join(code_edits(lines, 30, seed=2))


def alternating(count: int) -> tuple[str, str]:
    return "x\n" * count, "x\ny\n" * count


def random_lines(count: int, kinds: int, seed: int) -> tuple[str, str]:
    """Two independent texts of `count` lines drawn from `kinds` short lines: many matches."""
    rng = random.Random(seed)
    choices = [f"{kind}\n" for kind in range(kinds)]
    return "".join(rng.choices(choices, k=count)), "".join(rng.choices(choices, k=count))


def different_1mb() -> tuple[str, str]:
    """Two unrelated 1 MB texts of random lines of letters: nothing in common."""
    rng = random.Random(3)

    def text() -> str:
        lines: list[str] = []
        size = 0
        while size < 1_000_000:
            line = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randrange(60))) + "\n"
            lines.append(line)
            size += len(line)
        return "".join(lines)

    return text(), text()


CASES: dict[str, tuple[str, Callable[[], tuple[str, str]]]] = {
    "python-1000": ("1,000-line Python file, 3 lines edited", python_1000),
    "python-1mb": ("1 MB of Python (stdlib modules), 30 lines edited", python_1mb),
    "xy-1000": ("1,000 x lines -> alternating x/y", lambda: alternating(1000)),
    "xy-2000": ("2,000 x lines -> alternating x/y", lambda: alternating(2000)),
    "xy-20000": ("20,000 x lines -> alternating x/y", lambda: alternating(20_000)),
    "random-20000": ("20,000 random lines of 4 kinds, twice", lambda: random_lines(20_000, 4, 4)),
    "random-1mb": (
        "1 MB: 500,000 random lines of 4 kinds, twice",
        lambda: random_lines(500_000, 4, 5),
    ),
    "different-1mb": ("1 MB -> a different 1 MB (random letters)", different_1mb),
    # At MAX_DETAILED_CHARS (old and new middles together), and past it.
    "random-4mib": (
        "4 MiB: 2 x 1,048,576 random lines of 4 kinds",
        lambda: random_lines(1 << 20, 4, 6),
    ),
    "random-5mib": (
        "5 MiB: 2 x 1,310,720 random lines of 4 kinds",
        lambda: random_lines(1_310_720, 4, 7),
    ),
}


def baseline_edits(revision: str) -> Edits:
    """`text_edits` as the module was at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{MODULE_PATH}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("baseline_text_edit")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{revision}:{MODULE_PATH}", "exec"), module.__dict__)
    return cast(Edits, module.text_edits)


def measure(case: str, baseline: str | None, repeat: int, into: Connection) -> None:
    """In the child: the best time of `repeat` runs, and what the diff did."""
    old, new = CASES[case][1]()
    best = float("inf")
    if baseline is not None:
        edits = baseline_edits(baseline)
        for _ in range(repeat):
            started = time.perf_counter()
            count = len(edits(old, new))
            best = min(best, time.perf_counter() - started)
        into.send((best, count, 0, 0))
        return
    for _ in range(repeat):
        started = time.perf_counter()
        diff = diff_text(old, new)
        best = min(best, time.perf_counter() - started)
    into.send((best, len(diff.edits), diff.steps, diff.coarse))


def run(case: str, baseline: str | None, repeat: int, timeout: float) -> tuple[float, ...] | None:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=measure, args=(case, baseline, repeat, sender))
    child.start()
    deadline = time.monotonic() + timeout
    while not receiver.poll(0.2):
        if not child.is_alive() and not receiver.poll():
            raise RuntimeError(f"{case}: the child failed (exit code {child.exitcode})")
        if time.monotonic() > deadline:
            child.terminate()
            child.join()
            return None
    result = cast(tuple[float, ...], receiver.recv())
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the best counts")
    parser.add_argument("--baseline", help="also time text_edits as it was at this git revision")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case and code")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    options = parser.parse_args()

    header = "| case | old chars | new chars | edits | coarse | Myers steps | time ms |"
    if options.baseline:
        header += f" {options.baseline} ms | its edits |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for case in options.cases.split(","):
        title, build = CASES[case]
        old, new = build()
        figures = run(case, None, options.repeat, options.timeout)
        if figures is None:
            row = f"| {title} | {len(old):,} | {len(new):,} | | | | > {options.timeout:.0f} s |"
        else:
            seconds, edits, steps, coarse = figures
            row = (
                f"| {title} | {len(old):,} | {len(new):,} | {edits:,.0f} | {coarse:.0f} |"
                f" {steps:,.0f} | {seconds * 1000:,.1f} |"
            )
        if options.baseline:
            before = run(case, options.baseline, 1, options.timeout)
            if before is None:
                row += f" > {options.timeout * 1000:,.0f} | |"
            else:
                row += f" {before[0] * 1000:,.1f} | {before[1]:,.0f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
