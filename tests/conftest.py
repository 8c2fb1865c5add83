"""Fixtures: a real uvicorn server on a free port, with a fresh store per test."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from starlette.applications import Starlette

from collab_server.cli import build_server
from collab_server.rooms.registry import RoomRegistry
from collab_server.settings import Settings
from collab_server.transport.services import Services
from tests import postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class RunningServer:
    settings: Settings
    app: Starlette
    port: int
    http_url: str  # http://127.0.0.1:port
    ws_url: str  # ws://127.0.0.1:port/ws, what a WebsocketProvider takes

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10)

    @property
    def registry(self) -> RoomRegistry:
        """For the few tests that look inside (which rooms are loaded)."""
        services: Services = self.app.state.services
        return services.registry


@asynccontextmanager
async def run_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """Serve the app in this event loop on a socket bound up front, so no wait for the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    server = build_server(settings.model_copy(update={"port": port}))
    server.config.loop = "asyncio"
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        app = server.config.app
        assert isinstance(app, Starlette)
        yield RunningServer(
            settings, app, port, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
        )
    finally:
        server.should_exit = True
        await task
        listener.close()


@pytest.fixture
def settings() -> Settings:
    # No completion pool unless a test asks for one: its workers cost a second of CPU to warm.
    return Settings(store_url="memory://", room_idle_seconds=0.2, completion_workers=0)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with run_server(settings) as running:
        yield running


# -- PostgreSQL (tests/postgres.py) ----------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this test session's own (COLLAB_TEST_POSTGRES_URL names the server)."""
    with postgres.scratch_database() as url:
        yield url
