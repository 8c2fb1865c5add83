"""The server as a child process (`python -m collab_server serve`), for restarts and kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx

from tests.polling import poll


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as in a crash."""
        self.process.send_signal(signal.SIGKILL)


def cli_command(*arguments: str) -> list[str]:
    """`collab-server ARGUMENTS`, run by this interpreter."""
    return [sys.executable, "-m", "collab_server", *arguments]


def serve_command(port: int) -> list[str]:
    return cli_command("serve", "--port", str(port))


@asynccontextmanager
async def server_process(
    env: dict[str, str], port: int | None = None
) -> AsyncIterator[ServerProcess]:
    """Start the server with `COLLAB_*` settings from `env`; stop it (SIGTERM) on exit."""
    port = port or free_port()
    process = await asyncio.create_subprocess_exec(
        *serve_command(port), env={**os.environ, "COLLAB_LOG_LEVEL": "warning", **env}
    )
    server = ServerProcess(process, port)
    try:
        await _wait_healthy(server)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
        with anyio.fail_after(20):
            await process.wait()


async def _wait_healthy(server: ServerProcess) -> None:
    """Poll /healthz: a child process gives no other sign that it is listening."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:

        async def healthy() -> bool:
            if server.process.returncode is not None:
                raise RuntimeError(f"server exited with {server.process.returncode}")
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await poll(healthy, seconds=30)
