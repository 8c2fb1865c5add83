"""A child process that does to updates what the server does, to triage and minimise fast.

The server checks an update (`get_state`, which decodes it), applies it to the room's document
(whose `meta` map is observed), answers sync step 1 from it (`get_update(state)`), compacts it
(`get_update()`), and on a cold load replays the stored log one update at a time in one
transaction. The oracle does the same steps in that order and says which one failed and how:
`rejected` (ValueError, the server's 4422), `panic` (pycrdt's PanicException, a BaseException),
or the process died (a signal: what kills the server). A panic is caught and reported; only a
death ends the child, and `Oracle` starts another.

    .venv/bin/python -m bench.fuzz.oracle [--compare] FILE...   # the files as one case
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fuzz.child import Child, ChildDied, ChildTimedOut, serve, stderr_so_far

STAGES = ("check", "apply", "sync", "encode", "replay")


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # ok, rejected, panic, died, timeout
    stage: str  # the step that failed ("" when ok)
    detail: str  # exception text, or the signal and the end of stderr

    @property
    def fatal(self) -> bool:
        return self.outcome in ("panic", "died", "timeout")

    def signature(self) -> str:
        """What tells two failures apart: the outcome, the step and the first line of detail."""
        first = self.detail.strip().splitlines()[0] if self.detail.strip() else ""
        return f"{self.outcome}:{self.stage}:{first[:160]}"


# -- the child ----------------------------------------------------------------------------------


def _run_case(updates: list[bytes], compare: bool = False) -> dict[str, str]:
    """The server's steps; with `compare`, also whether the document built live (one apply
    per update, or one merged batch) equals the one replayed from the log after a restart."""
    from pycrdt import Doc, Map, get_state, merge_updates

    accepted: list[bytes] = []
    stage = "check"
    try:
        for update in updates:
            try:
                get_state(update)
            except ValueError:
                continue
            accepted.append(update)
        if not accepted:
            return {"outcome": "rejected", "stage": "check", "detail": "no update decodes"}
        stage = "apply"
        doc: Doc[Any] = Doc()
        meta: Map[Any] = doc.get("meta", type=Map)
        meta.observe(lambda event: None)  # as the room does: pycrdt builds the event's keys
        for update in accepted:
            try:
                doc.apply_update(update)
            except ValueError as error:
                return {"outcome": "rejected", "stage": stage, "detail": str(error)}
        stage = "sync"
        doc.get_update(b"\x00")
        stage = "encode"
        doc.get_update()
        stage = "replay"
        fresh: Doc[Any] = Doc()
        with fresh.transaction():
            for update in accepted:
                fresh.apply_update(update)
        fresh.get_update()
        if compare:
            stage = "merge"
            merged: Doc[Any] = Doc()
            merged.apply_update(merge_updates(*accepted))
            stage = "compare"
            found = _divergence({"one by one": doc, "merged": merged, "replayed": fresh})
            if found:
                return {"outcome": "differs", "stage": "replay", "detail": found}
    except ValueError as error:
        return {"outcome": "rejected", "stage": stage, "detail": str(error)}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # pyo3's PanicException derives from BaseException
        kind = "panic" if type(error).__name__ == "PanicException" else "error"
        return {"outcome": kind, "stage": stage, "detail": f"{type(error).__name__}: {error}"}
    return {"outcome": "ok", "stage": "", "detail": ""}


def _divergence(docs: dict[str, Any]) -> str:
    """How the documents differ, first line naming only the kind (it goes in the signature)."""
    from bench.fuzz.roomstate import differences, summarise

    summaries = {name: summarise(doc.get_update()) for name, doc in docs.items()}
    (first, base), *others = summaries.items()
    lines = []
    for name, summary in others:
        for line in differences(base, summary) or []:
            lines.append(f"{first} vs {name}: {line}")
    if not lines:
        return ""
    kind = "state vector" if any("state vector" in line for line in lines) else "content"
    return "\n".join([f"live and replayed documents differ ({kind})", *lines])


def _decodes(updates: list[bytes]) -> list[bool]:
    """Whether yrs decodes each update (what the server's first check asks)."""
    from pycrdt import get_state

    answers = []
    for update in updates:
        try:
            get_state(update)
            answers.append(True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            answers.append(False)
    return answers


def _handle(parts: list[bytes]) -> dict[str, Any]:
    if parts[:1] == [b"decode"]:
        return {"decodes": _decodes(parts[1:])}
    result = _run_case(parts[1:], compare=parts[0] == b"compare")
    if result["outcome"] in ("panic", "error"):
        result["detail"] += "\n" + stderr_so_far()
    return result


# -- the parent ---------------------------------------------------------------------------------


class Oracle:
    """`judge` runs a case in the child, and starts another child after a death."""

    def __init__(self, seconds: float = 20.0) -> None:
        self._child = Child("bench.fuzz.oracle", seconds)

    def decodes(self, updates: list[bytes]) -> list[bool] | None:
        """Whether yrs decodes each update; None if that killed the child (a deep value)."""
        try:
            answer = self._child.ask([b"decode", *updates])
        except (ChildDied, ChildTimedOut):
            return None
        decodes: list[bool] = answer["decodes"]
        return decodes

    def judge(self, updates: list[bytes], compare: bool = False) -> Verdict:
        """What the server's steps do with these updates; with `compare`, also whether the
        live and the replayed documents are the same (outcome "differs" if not)."""
        try:
            result = self._child.ask([b"compare" if compare else b"judge", *updates])
        except ChildDied as death:
            return Verdict("died", "", death.how)
        except ChildTimedOut as error:
            return Verdict("timeout", "", str(error))
        return Verdict(result["outcome"], result["stage"], result["detail"])

    def close(self) -> None:
        self._child.close()


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        serve(_handle)
        return
    compare = "--compare" in sys.argv[1:]
    files = [Path(name) for name in sys.argv[1:] if name != "--compare"]
    oracle = Oracle()
    try:
        verdict = oracle.judge([file.read_bytes() for file in files], compare)
    finally:
        oracle.close()
    print(f"{verdict.outcome} at {verdict.stage or '-'}: {verdict.detail}")


if __name__ == "__main__":
    main()
