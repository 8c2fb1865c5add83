"""Stock y-websocket clients (yjs 13, y-websocket 3, `ws`) run by a Node driver process.

`tests/node/driver.mjs` hosts any number of WebsocketProviders and takes JSON-line commands on
stdin; `NodeClients` sends them and waits for the answers, each under its own timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
DRIVER = ROOT / "tests" / "node" / "driver.mjs"
# Answers can carry a whole document's text.
LINE_LIMIT = 64 * 1024 * 1024
# Every command fails after this long, so that no test hangs; a test that claims something
# happens sooner says so with its own `anyio.fail_after`.
COMMAND_SECONDS = 20


def node_missing() -> str | None:
    """Why the Node clients cannot run here, or None if they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (ROOT / "node_modules" / "y-websocket").is_dir():
        return "the npm packages are not installed (run `npm ci`)"
    return None


class DriverError(Exception):
    """The driver answered a command with an error, or died."""


class NodeClients:
    """One driver process and the clients it hosts, each known by a name."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}

    async def call(self, command: str, **arguments: Any) -> Any:
        """Send one command and return its result (after at most `COMMAND_SECONDS`)."""
        stdin = self._process.stdin
        assert stdin is not None
        command_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        try:
            with anyio.fail_after(COMMAND_SECONDS):
                stdin.write(json.dumps({"id": command_id, "cmd": command, **arguments}).encode())
                stdin.write(b"\n")
                await stdin.drain()
                return await answer
        finally:
            self._pending.pop(command_id, None)

    async def _read_answers(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            reply = json.loads(line)
            answer = self._pending.get(reply["id"])
            if answer is None or answer.done():
                continue
            if reply["ok"]:
                answer.set_result(reply["result"])
            else:
                answer.set_exception(DriverError(reply["error"]))
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(DriverError("the Node driver exited"))

    async def kill(self) -> None:
        """SIGKILL the driver: its clients vanish without closing their sockets."""
        self._process.kill()
        await self._process.wait()
        if self._process.stdin is not None:
            self._process.stdin.close()

    def freeze(self) -> None:
        """SIGSTOP the driver, as a laptop lid closes: its sockets stay open and say nothing."""
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._process.send_signal(signal.SIGCONT)

    # -- typed shortcuts for the common commands ---------------------------------------------

    async def open(
        self, client: str, room: str, *, awareness: Any = None, **options: Any
    ) -> dict[str, Any]:
        """Connect a new client and wait until it is synced; its id and the states it saw."""
        if awareness is not None:
            options["awareness"] = awareness
        result: dict[str, Any] = await self.call("open", client=client, room=room, **options)
        return result

    async def insert(self, client: str, index: int, text: str) -> None:
        """Insert at a UTF-16 index, as an editor would."""
        await self.call("insert", client=client, index=index, text=text)

    async def delete(self, client: str, index: int, length: int) -> None:
        await self.call("delete", client=client, index=index, length=length)

    async def text(self, client: str) -> str:
        result = await self.call("text", client=client)
        text: str = result["text"]
        return text

    async def wait_text(self, clients: list[str], text: str | None = None) -> str:
        """Wait until all `clients` hold the same text (and `text`, if given); return it."""
        arguments: dict[str, Any] = {} if text is None else {"text": text}
        result = await self.call("waitText", clients=clients, **arguments)
        converged: str = result["text"]
        return converged

    async def states(self, client: str) -> dict[int, Any]:
        """The awareness states `client` knows, by client id."""
        result = await self.call("awareness", client=client)
        return {int(client_id): state for client_id, state in result["states"].items()}

    async def wait_awareness(self, client: str, of: int, *, present: bool = True) -> None:
        await self.call("waitAwareness", client=client, of=of, present=present)

    async def status(self, client: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("status", client=client)
        return result


@asynccontextmanager
async def node_clients(ws_url: str) -> AsyncIterator[NodeClients]:
    """Start a driver whose clients connect to `ws_url`; stop it (and them) on exit."""
    missing = node_missing()
    if missing is not None:
        # A failure, not a skip: `make test` installs everything, so this is a broken setup.
        raise RuntimeError(f"cannot run the Node clients: {missing}")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(DRIVER),
        ws_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    clients = NodeClients(process)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(clients._read_answers)
            try:
                yield clients
            finally:
                # Closing stdin makes the driver destroy its providers and exit.
                if process.returncode is None and process.stdin is not None:
                    process.stdin.close()
                with anyio.move_on_after(5, shield=True) as waiting:
                    await process.wait()
                if waiting.cancelled_caught:
                    process.kill()
                    await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
