"""One fuzz run: the fuzzing connections, the honest clients, and the server's life between
them.

Workers send frames over WebSockets (and some updates over REST) into a few fuzz rooms, a new
room every `room_frames` frames. Every `restart_every` frames the server is stopped gracefully
and started again, and each room fuzzed since the last restart must hold the same document
afterwards. When the server dies on its own the keeper saves the last frames, starts it again,
probes the rooms and triages the death; the run goes on against the same store.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.fuzz.connection import Link
from bench.fuzz.crashes import SentFrame
from bench.fuzz.generate import Frame, FrameGenerator
from bench.fuzz.honest_process import HonestProcess
from bench.fuzz.keeper import ServerKeeper
from bench.fuzz.monitor import Monitor
from bench.fuzz.oracle import Oracle
from bench.fuzz.server import ServerProcess
from bench.fuzz.stats import Stats

TOUCHED_LIMIT = 64  # rooms compared at each restart: the most recently fuzzed


@dataclass
class Options:
    frames: int
    seed: int
    store: str  # "sqlite" or "memory"
    out: Path
    connections: int = 4
    rooms: int = 2
    room_frames: int = 3000
    restart_every: int = 50_000
    honest_rate: float = 20.0
    check_every: float = 5.0
    ring: int = 256
    minimise: bool = True
    minimise_budget: int = 1500
    huge: float = 0.002
    disabled: frozenset[str] = frozenset()
    weights: dict[str, float] = field(default_factory=dict)
    max_seconds: float | None = None
    port: int = 0
    server_source: Path | None = None  # run the server from this checkout


class Campaign:
    def __init__(self, options: Options, env: dict[str, str]) -> None:
        self.options = options
        options.out.mkdir(parents=True, exist_ok=True)
        self.stats = Stats()
        self._precheck = Oracle(seconds=5.0)
        self.generator = FrameGenerator(
            options.seed,
            weights=options.weights,
            disabled=options.disabled,
            huge=options.huge,
            decode_check=self._precheck.decodes,
        )
        server = ServerProcess(options.port, env, options.out / "server.log", options.server_source)
        self.server = server
        database = options.out / "fuzz.db" if options.store == "sqlite" else None
        self.keeper = ServerKeeper(
            server, self.stats, options.out, options.minimise_budget, database
        )
        self.http = self.keeper.http
        self.honest_room = f"honest-{options.seed}"
        self.honest = HonestProcess(
            server.ws_url,
            server.http_url,
            self.honest_room,
            options.seed,
            options.honest_rate,
            options.check_every,
        )
        self.ring: deque[SentFrame] = deque(maxlen=options.ring)
        self.up = asyncio.Event()  # set while fuzz frames may go out
        self._restart_due = asyncio.Event()
        self._stopping = asyncio.Event()  # the supervisor finishes what it does, then returns
        self._active_connections = 0
        self._no_connections = asyncio.Event()  # set while no fuzzing connection is open
        self._no_connections.set()
        self._next_restart = options.restart_every
        self._room_number = 0
        self._rooms = [self._new_room() for _ in range(options.rooms)]
        self._room_frames = dict.fromkeys(self._rooms, 0)
        self._touched: dict[str, None] = {}  # an ordered set
        self._started = time.monotonic()
        self.monitor = Monitor(self)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _new_room(self) -> str:
        self._room_number += 1
        return f"fz{self.options.seed}-{self._room_number}"

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self._started = time.monotonic()
        self.stats.started = time.time()
        await self.keeper.start()
        await self.honest.start(self.options.out / "honest.log")
        self.up.set()
        try:
            async with asyncio.TaskGroup() as tasks:
                supervisor = tasks.create_task(self._supervise())
                monitor = tasks.create_task(self.monitor.run())
                workers = [
                    tasks.create_task(self._worker(index))
                    for index in range(self.options.connections)
                ]
                await asyncio.gather(*workers)
                self._stopping.set()
                await supervisor
                await self._final_check()
                monitor.cancel()
        finally:
            await self.honest.command("report")
            await self.honest.stop()
            if self.server.running:
                await self.server.stop()
            await self.keeper.close()
            self._precheck.close()
        return self.report()

    def report(self) -> dict[str, Any]:
        settings = {
            key: (str(value) if isinstance(value, Path | frozenset) else value)
            for key, value in vars(self.options).items()
        }
        result = self.stats.to_json(self.elapsed, settings)
        result["honest"] = honest = dict(self.honest.last_report)
        errors = dict(honest.get("errors", {}))
        for kind, count in self.stats.honest_errors.items():  # seen from this side
            errors[kind] = errors.get(kind, 0) + count
        honest["errors"] = errors
        result["server_log_kinds"] = dict(self.server.log_kinds)
        result["server_log_samples"] = self.server.log_samples
        result["server_starts"] = self.server.incarnation
        result["reproducers"] = self.keeper.reproducers
        (self.options.out / "report.json").write_text(json.dumps(result, indent=1))
        return result

    def _done(self) -> bool:
        if self.stats.frames_sent >= self.options.frames:
            return True
        limit = self.options.max_seconds
        return limit is not None and self.elapsed > limit

    # -- fuzzing connections ------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        rng = random.Random(self.options.seed * 1000 + index)
        while not self._done():
            await self.up.wait()
            room = self._rooms[index % len(self._rooms)]
            try:
                await self._connection(index, room, rng)
            except (OSError, InvalidHandshake, TimeoutError) as error:
                if self.up.is_set() and self.server.running:
                    self.stats.connect_failures[type(error).__name__] += 1
                await asyncio.sleep(0.05)

    async def _connection(self, index: int, room: str, rng: random.Random) -> None:
        async with connect(
            f"{self.server.ws_url}/{room}",
            max_size=None,
            compression=None,
            open_timeout=5,
            close_timeout=2,
            ping_interval=None,
        ) as websocket:
            self._active_connections += 1
            self._no_connections.clear()
            self.stats.connections += 1
            link = Link(websocket, self.stats)
            try:
                expect_close, last_kind = await self._burst(link, index, room, rng)
            except ConnectionClosed:
                expect_close, last_kind = False, self.ring[-1].kind if self.ring else ""
            finally:
                self._active_connections -= 1
                if not self._active_connections:
                    self._no_connections.set()
                link.stop()
        if link.record_close(expect_close, last_kind, self.up.is_set()):
            self.generator.reset(room, index)  # frames after the one it refused were lost

    async def _burst(
        self, link: Link, index: int, room: str, rng: random.Random
    ) -> tuple[bool, str]:
        """Send one connection's frames. After a frame the server should refuse, ask whether
        the connection is still open, and go on if it is. Returns whether the connection ended
        on such a frame, and the kind of the last frame."""
        own_client = rng.randrange(1, 2**31)
        burst = rng.choice([10, 50, 200, 1000, 5000])
        sent = 0
        last_kind = ""
        while sent < burst and self.up.is_set() and not self._done():
            for frame in self.generator.group(room, own_client, index):
                await self._send(link.websocket, room, index, frame)
                sent += 1
                last_kind = frame.kind
                if frame.closes:
                    if not await link.still_open():
                        return True, last_kind
                    self.stats.tolerated[frame.kind] += 1
            if sent % 8 == 0:
                await asyncio.sleep(0)  # let the reader and the other workers run
        return False, last_kind

    async def _send(self, websocket: ClientConnection, room: str, index: int, frame: Frame) -> None:
        stats = self.stats
        self.ring.append(
            SentFrame(
                stats.frames_sent, self.elapsed, room, index, frame.via, frame.kind, frame.data
            )
        )
        if frame.via == "rest":
            await self._post(room, frame.data)
        elif frame.via == "text":
            await websocket.send(frame.data.decode(errors="replace"))
        else:
            await websocket.send(frame.data)
        stats.frames_sent += 1
        stats.frame_bytes += len(frame.data)
        stats.frames_by_category[frame.kind.split(".")[0]] += 1
        stats.frames_by_kind[frame.kind] += 1
        stats.frames_by_via[frame.via] += 1
        self._touched[room] = None
        count = self._room_frames.get(room, 0) + 1
        self._room_frames[room] = count
        if count >= self.options.room_frames and room in self._rooms:
            self._retire(room)
        if (
            self.options.store != "memory"
            and stats.frames_sent >= self._next_restart
            and not self._done()  # the final check restarts it anyway
        ):
            self._next_restart += self.options.restart_every
            self._restart_due.set()

    async def _post(self, room: str, update: bytes) -> None:
        try:
            response = await self.http.post(f"/api/rooms/{room}/update", content=update)
            self.stats.http_statuses[f"POST update {response.status_code}"] += 1
        except httpx.HTTPError as error:
            self.stats.http_statuses[f"POST update {type(error).__name__}"] += 1

    def _retire(self, room: str) -> None:
        self._rooms[self._rooms.index(room)] = fresh = self._new_room()
        self._room_frames.pop(room, None)
        self._room_frames[fresh] = 0
        self.generator.forget(room)

    def _retire_all(self) -> None:
        for room in list(self._rooms):
            self._retire(room)

    # -- pauses for the server's sake ---------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            exited = asyncio.create_task(self.server.wait())
            restart = asyncio.create_task(self._restart_due.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            done, _ = await asyncio.wait(
                {exited, restart, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            restart.cancel()
            stopping.cancel()
            if exited not in done and stopping in done:
                exited.cancel()
                return
            await self._pause(server_alive=exited not in done)
            if exited in done:
                await self.keeper.after_death(
                    exited.result(), list(self.ring), self.options.minimise
                )
                self._retire_all()  # the old rooms may hold what killed it
            else:
                exited.cancel()
                self._restart_due.clear()
                await self._graceful_restart()
            await self._resume()

    async def _pause(self, server_alive: bool = True) -> None:
        """No fuzz frame goes out, no connection stays open, the honest writer stops and (if
        the server is alive) its watcher catches up."""
        self.up.clear()
        answer = await self.honest.command("pause" if server_alive else "hold")
        if answer.get("caught_up") is False:
            self.stats.honest_error("watcher_behind", "not caught up when the run paused")
        try:
            async with asyncio.timeout(15):
                await self._no_connections.wait()
        except TimeoutError:
            self.stats.honest_error("pause", "fuzz connections still open after 15 s")

    async def _resume(self) -> None:
        await self.honest.command("resume")
        self.up.set()

    async def _graceful_restart(self) -> None:
        rooms = [*list(self._touched)[-TOUCHED_LIMIT:], self.honest_room]
        await self.keeper.restart_and_compare(rooms)
        self._touched.clear()
        self._retire_all()
        await self.honest.command("check")

    async def _final_check(self) -> None:
        await self._pause(server_alive=self.server.running)
        if not self.server.running:  # it died as the workers finished
            await self.keeper.after_death(
                await self.server.wait(), list(self.ring), self.options.minimise
            )
        if self.options.store != "memory":
            await self._graceful_restart()
        else:
            await self.honest.command("check")
        self.monitor.sample_cpu()
        memory = self.server.memory_kib()
        if memory is not None:
            self.stats.sample_rss(self.elapsed, *memory)
