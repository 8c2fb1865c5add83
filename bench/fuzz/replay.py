"""Send each corpus case to a real server process and say what happened.

    .venv/bin/python -m bench.fuzz.replay [--server-source DIR] [--large] [NAME ...]

Each case gets a fresh server (SQLite in a temporary directory) and a room of its own. Its
updates go over one WebSocket as sync updates (its frames as they are); then: did the
connection stay open (or with which code did it close), is the process alive, what does
`GET /api/rooms/{room}/update` answer, and, for cases that show after a restart, what it
answers once the server was stopped (SIGTERM) and started again. Also the server's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.fuzz.connection import Link
from bench.fuzz.corpus import CASES, Case
from bench.fuzz.frames import sync_frame
from bench.fuzz.roomstate import Inspector, differences
from bench.fuzz.server import NO_KEEPALIVE, ServerProcess, describe_exit
from bench.fuzz.stats import Stats
from bench.fuzz.yencode import ClientStructs, Item, String, Update, encode_update
from bench.ports import free_port

UPDATE = 2
# An insert by a client of its own (99) into its own text: harmless, and slow enough to store
# (a commit) that updates sent right after it queue up.
FILLER = encode_update(Update((ClientStructs(99, 0, (Item(String("filler"), parent="filler"),)),)))


async def _send(server: ServerProcess, room: str, case: Case, stats: Stats) -> str:
    frames = list(case.frames) or [sync_frame(UPDATE, update) for update in case.updates]
    try:
        async with connect(
            f"{server.ws_url}/{room}", max_size=None, compression=None, ping_interval=None
        ) as websocket:
            link = Link(websocket, stats)
            try:
                if case.pacing == "batch":
                    # Stored while the next ones queue up behind it: they become one batch.
                    await websocket.send(sync_frame(UPDATE, FILLER))
                for frame in frames:
                    await websocket.send(frame)
                    if case.pacing == "apart":
                        await asyncio.sleep(0.5)
                await asyncio.sleep(1)  # updates are applied after they are stored
                open_ = await link.still_open()
                await asyncio.sleep(0.5)  # what the server relays back, the echo included
            except ConnectionClosed:
                open_ = False
            finally:
                link.stop()
    except (OSError, InvalidHandshake, TimeoutError) as error:
        return f"no connection: {type(error).__name__}"
    if open_:
        return "connection still open"
    received = websocket.protocol.close_rcvd
    return (
        f"closed {received.code} {received.reason}" if received else "closed 1006 (no close frame)"
    )


async def _read(server: ServerProcess, room: str) -> tuple[str, bytes | None]:
    """What GET /update answers (and its body when 200); a death it causes is reported."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60, limits=NO_KEEPALIVE) as http:
        try:
            response = await http.get(f"/api/rooms/{room}/update")
        except httpx.HTTPError as error:
            try:
                async with asyncio.timeout(2):
                    code = await server.wait()
                return f"GET update failed: server {describe_exit(code)}", None
            except TimeoutError:
                return f"GET update failed: {type(error).__name__}", None
    body = response.content if response.status_code == 200 else None
    return f"GET update {response.status_code}", body


def _compare(before: bytes, after: bytes) -> str:
    inspector = Inspector()
    try:
        found = differences(inspector.summary(before), inspector.summary(after))
    finally:
        inspector.close()
    return f"document changed by the restart: {found}" if found else "same document"


async def _alive(server: ServerProcess) -> str:
    try:
        async with asyncio.timeout(1):
            return f"server {describe_exit(await server.wait())}"
    except TimeoutError:
        return "server alive"


async def replay(case: Case, source: Path | None) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="fuzz-replay-") as directory:
        env = {
            "COLLAB_STORE_URL": f"sqlite:///{directory}/replay.db",
            "COLLAB_COMPLETION_WORKERS": "0",
            "COLLAB_CLIENT_MESSAGES_PER_SECOND": "0",
            "COLLAB_LOG_LEVEL": "warning",
            "RUST_BACKTRACE": "0",
        }
        server = ServerProcess(free_port(), env, Path(directory) / "server.log", source)
        await server.start()
        stats = Stats()
        room = f"replay-{case.name}"
        seen = [await _send(server, room, case, stats), await _alive(server)]
        before: bytes | None = None
        if server.running:
            answer, before = await _read(server, room)
            seen.append(answer)
        memory = server.memory_kib()
        if memory is not None:
            seen.append(f"peak RSS {memory[1] // 1024} MiB")
        if server.log_kinds.get("panic"):
            seen.append(f"{server.log_kinds['panic']} log lines of a panic")
        if case.restart:
            if server.running:
                await server.stop()
            await server.start()
            answer, after = await _read(server, room)
            seen.append("after a restart: " + answer)
            if before is not None and after is not None:
                seen.append(await asyncio.to_thread(_compare, before, after))
        if stats.server_output:
            seen.append(f"server sent: {dict(stats.server_output)}")
        if server.running:
            await server.stop()
        return seen


async def _main(names: list[str], source: Path | None, large: bool) -> None:
    for case in CASES:
        if (names and case.name not in names) or (case.large and not large and not names):
            continue
        print(f"{case.name}: {'; '.join(await replay(case, source))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="cases to run (default: all but the large)")
    parser.add_argument("--server-source", type=Path, default=None)
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    asyncio.run(_main(args.names, args.server_source, args.large))


if __name__ == "__main__":
    main()
