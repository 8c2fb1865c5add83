"""The server's life during a fuzz run: starting it again after a death (saving what preceded
the death, probing the rooms that were being fuzzed, triaging in the oracle), and graceful
restarts that must leave every room as it was.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from bench.fuzz.crashes import (
    SentFrame,
    save_frames,
    stored_log,
    triage,
    triage_difference,
    write_reproducer,
)
from bench.fuzz.oracle import Oracle
from bench.fuzz.roomstate import Inspector, Summary, differences
from bench.fuzz.server import NO_KEEPALIVE, ServerProcess, ServerStartError, describe_exit
from bench.fuzz.stats import Stats

SAVED_CRASHES = 40
SAVED_DIFFERENCES = 20


class ServerKeeper:
    def __init__(
        self,
        server: ServerProcess,
        stats: Stats,
        out: Path,
        minimise_budget: int,
        database: Path | None = None,
    ) -> None:
        self.database = database  # the SQLite store, read for the logs of rooms that differ
        self.server = server
        self.stats = stats
        self.out = out
        self.http = httpx.AsyncClient(base_url=server.http_url, timeout=30, limits=NO_KEEPALIVE)
        self.poisoned: set[str] = set()
        self.reproducers: dict[str, str] = {}  # failure signature -> reproducer files
        self._minimise_budget = minimise_budget
        self._triage_lock = asyncio.Lock()
        self._triage_tasks: set[asyncio.Task[None]] = set()
        self._oracle: Oracle | None = None
        self._inspector: Inspector | None = None
        self._started = time.monotonic()

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started, 1)

    async def close(self) -> None:
        if self._triage_tasks:
            await asyncio.gather(*self._triage_tasks)
        await self.http.aclose()
        for helper in (self._oracle, self._inspector):
            if helper is not None:
                await asyncio.to_thread(helper.close)

    async def start(self) -> None:
        for _ in range(5):
            try:
                await self.server.start()
                return
            except ServerStartError as error:
                print(f"server start failed: {error}; retrying", flush=True)
                await asyncio.sleep(1)
        raise RuntimeError("the server does not start any more")

    # -- deaths -------------------------------------------------------------------------------

    async def after_death(self, code: int, frames: list[SentFrame], minimise: bool) -> None:
        """Record a death, start the server again, and load once more each room that was being
        fuzzed: one that kills the server as it loads is poisoned for good."""
        number = len(self.stats.crashes) + 1
        record: dict[str, Any] = {
            "number": number,
            "at_seconds": self._elapsed(),
            "frames_sent": self.stats.frames_sent,
            "exit": describe_exit(code),
            "rooms_in_last_frames": sorted({frame.room for frame in frames[-32:]}),
            "last_frame_kinds": [frame.kind for frame in frames[-8:]],
            "server_stderr_tail": list(self.server.log_tail)[-25:],
            **_last_words(list(self.server.log_tail)),
        }
        if number <= SAVED_CRASHES:
            directory = self.out / "crashes" / f"crash-{number:03d}"
            save_frames(directory, frames)
            (directory / "stderr.txt").write_text("\n".join(self.server.log_tail))
            record["directory"] = str(directory)
        self.stats.crashes.append(record)
        print(f"[{record['at_seconds']:7.1f}s] server {record['exit']}", flush=True)
        await self.start()
        for room in record["rooms_in_last_frames"]:
            await self._probe(room)
        if minimise and number <= SAVED_CRASHES:
            task = asyncio.create_task(self._triage(record, frames))
            self._triage_tasks.add(task)
            task.add_done_callback(self._triage_tasks.discard)

    async def _probe(self, room: str) -> None:
        if room in self.poisoned:
            return
        try:
            await self.http.get(f"/api/rooms/{room}/update")
        except httpx.HTTPError:
            await self._maybe_poisoned(room)

    async def _maybe_poisoned(self, room: str) -> bool:
        """After a failed request for `room`: if the server died of it, the room is poisoned
        (it kills the server whenever it loads); start the server again."""
        try:
            async with asyncio.timeout(2):  # the process is reaped a moment after the reset
                code = await self.server.wait()
        except TimeoutError:
            return False
        self.poisoned.add(room)
        self.stats.poisoned_rooms.append(
            {"room": room, "exit_on_load": describe_exit(code), "at_seconds": self._elapsed()}
        )
        print(f"room {room} kills the server when it loads ({describe_exit(code)})", flush=True)
        await self.start()
        return True

    async def _triage(self, record: dict[str, Any], frames: list[SentFrame]) -> None:
        async with self._triage_lock:
            if self._oracle is None:
                self._oracle = Oracle(seconds=10.0)
            result = await asyncio.to_thread(
                triage, frames, self._oracle, self.reproducers, self._minimise_budget
            )
        record["triage"] = result
        signature = result.get("signature") or "not reproduced in the oracle"
        self.stats.crash_signatures[signature] += 1
        if "minimal_updates_hex" in result and "directory" in record:
            files = write_reproducer(Path(record["directory"]), result["minimal_updates_hex"])
            self.reproducers[signature] = ", ".join(files)
            result["reproducer"] = self.reproducers[signature]

    # -- graceful restarts --------------------------------------------------------------------

    async def restart_and_compare(self, rooms: Iterable[str]) -> dict[str, Any]:
        """Read each room, stop the server (SIGTERM), start it, read each room again."""
        phases: dict[str, float] = {}
        mark = time.monotonic()

        def phase(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            phases[name] = round(now - mark, 2)
            mark = now

        rooms = [room for room in rooms if room not in self.poisoned]
        before = {room: await self._summary(room) for room in rooms}
        logs = {room: self._log(room) for room in rooms}  # what the restart will replay
        phase("read_before")
        code, killed = await self.server.stop()
        phase("stop")
        # uvicorn re-raises the SIGTERM it caught once it has shut down: a clean stop.
        clean = code in (0, -signal.SIGTERM) and not killed
        entry: dict[str, Any] = {
            "at_seconds": self._elapsed(),
            "frames_sent": self.stats.frames_sent,
            "stop": ("clean: " if clean else "NOT CLEAN: ")
            + describe_exit(code)
            + (" (SIGKILL after 30 s)" if killed else ""),
            "rooms": len(rooms),
        }
        await self.start()
        phase("start")
        differing = 0
        not_comparable: Counter[str] = Counter()
        for room in rooms:
            after = await self._summary(room)
            if room in self.poisoned:
                continue
            verdict = differences(before[room], after)
            if verdict is None:
                # A room the server could not read before the restart was broken by earlier
                # input (a panic leaves a document unusable): worth knowing, not comparable.
                reason = before[room].get("server_error") or "inspection failed"
                not_comparable[f"before the restart: {reason}"] += 1
                continue
            self.stats.rooms_compared += 1
            if verdict:
                differing += 1
                self._record_difference(room, before[room], after, verdict, logs[room])
        phase("read_after")
        entry.update(rooms_differing=differing, not_comparable=dict(not_comparable), seconds=phases)
        self.stats.restarts.append(entry)
        print(
            f"[{entry['at_seconds']:7.1f}s] restart: {entry['stop']}; {differing} of "
            f"{len(rooms)} rooms differ; not comparable: {dict(not_comparable)}; seconds {phases}",
            flush=True,
        )
        return entry

    async def _summary(self, room: str) -> Summary:
        try:
            response = await self.http.get(f"/api/rooms/{room}/update")
        except httpx.HTTPError as error:
            await self._maybe_poisoned(room)
            return {"server_error": f"GET update: {type(error).__name__}"}
        if response.status_code != 200:
            return {"server_error": f"GET update {response.status_code}"}
        if self._inspector is None:
            self._inspector = Inspector()
        summary = await asyncio.to_thread(self._inspector.summary, response.content)
        summary["bytes"] = response.content  # kept for the record if the room differs
        return summary

    def _log(self, room: str) -> list[bytes]:
        if self.database is None:
            return []
        try:
            return stored_log(self.database, room)
        except sqlite3.Error:
            return []

    def _record_difference(
        self, room: str, before: Summary, after: Summary, found: list[str], log: list[bytes]
    ) -> None:
        entry: dict[str, Any] = {"room": room, "differences": found[:10]}
        if len(self.stats.rooms_differing) < SAVED_DIFFERENCES:
            directory = self.out / "restarts" / room
            directory.mkdir(parents=True, exist_ok=True)
            for name, summary in (("before", before), ("after", after)):
                data = summary.get("bytes")
                if isinstance(data, bytes):
                    (directory / f"{name}.update.bin").write_bytes(data)
            for number, update in enumerate(log, 1):
                (directory / f"log.{number:05d}.bin").write_bytes(update)
            entry["directory"] = str(directory)
            if log:
                task = asyncio.create_task(self._triage_difference(entry, log, directory))
                self._triage_tasks.add(task)
                task.add_done_callback(self._triage_tasks.discard)
        self.stats.note(self.stats.rooms_differing, entry)

    async def _triage_difference(
        self, entry: dict[str, Any], log: list[bytes], directory: Path
    ) -> None:
        async with self._triage_lock:
            if self._oracle is None:
                self._oracle = Oracle(seconds=10.0)
            result = await asyncio.to_thread(
                triage_difference, log, self._oracle, self._minimise_budget
            )
        entry["triage"] = result
        if "minimal_updates_hex" in result:
            files = write_reproducer(directory, result["minimal_updates_hex"])
            self.reproducers.setdefault(result["signature"], ", ".join(files))


def _last_words(lines: list[str]) -> dict[str, Any]:
    """From the end of the server's stderr: the last yrs panic before the death (a panic
    leaves a document that later segfaults), and the Python stack faulthandler printed."""
    found: dict[str, Any] = {}
    panics = [line for line in lines if "panicked at" in line]
    if panics:
        where = re.search(r".*/src/(\S+?):(\d+)", panics[-1])
        found["last_panic_before_death"] = f"{where.group(1)}:{where.group(2)}" if where else ""
    if any("overflowed its stack" in line for line in lines):
        found["stack_overflow"] = True
    if "Current thread" in "\n".join(lines):
        start = max(i for i, line in enumerate(lines) if line.startswith("Current thread"))
        frames = [line.strip() for line in lines[start + 1 : start + 8] if "File" in line]
        found["python_stack_at_death"] = frames
    return found
