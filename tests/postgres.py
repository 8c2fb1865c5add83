"""Throwaway PostgreSQL databases for tests, and a TCP proxy that can cut a store off.

Each test session gets its own database, `collab_test_<random>`, made on the server that
`COLLAB_TEST_POSTGRES_URL` names (default `postgresql://root@127.0.0.1:5432/postgres`) and dropped
at the end, so parallel runs on one machine never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from persistence.postgres import PostgresStore

T = TypeVar("T")

BASE_URL_ENV = "COLLAB_TEST_POSTGRES_URL"
DEFAULT_BASE_URL = "postgresql://root@127.0.0.1:5432/postgres"


def base_url() -> str:
    return os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL)


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    host = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=host))


async def create_database(prefix: str = "collab_test") -> str:
    """Create an empty database with a unique name; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(base_url(), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(base_url(), name)


async def drop_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    conn = await asyncpg.connect(base_url(), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _run_apart(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a thread of its own (callers may be inside a loop)."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


@contextlib.contextmanager
def scratch_database(prefix: str = "collab_test") -> Iterator[str]:
    """A database for the duration of the block, for session fixtures (sync, loop or not)."""
    url = _run_apart(create_database(prefix))
    try:
        yield url
    finally:
        _run_apart(drop_database(url))


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "collab_test") -> AsyncIterator[str]:
    """A database for the duration of the block, made and dropped in the running loop."""
    url = await create_database(prefix)
    try:
        yield url
    finally:
        await drop_database(url)


@contextlib.asynccontextmanager
async def opened_store(url: str, **options: int) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store, open for the block."""
    store = PostgresStore(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def clear(url: str) -> None:
    """Empty the store's tables (the schema stays), if the schema is there yet."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        if await conn.fetchval("SELECT to_regclass('rooms') IS NOT NULL"):
            await conn.execute("TRUNCATE rooms, updates, snapshots CASCADE")  # and versions
    finally:
        await conn.close()


def cluster_ctl(action: str) -> None:
    """Stop or start the machine's PostgreSQL cluster (every database on it)."""
    version = next(iter(sorted(path.name for path in Path("/etc/postgresql").iterdir())))
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


class TcpProxy:
    """Forwards 127.0.0.1:port to PostgreSQL; `cut()` drops every connection and refuses new
    ones (as an outage does, without stopping the server other tests use); `restore()` ends it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._drop_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_off = True
        self._drop_all()

    def restore(self) -> None:
        self.cut_off = False

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        async with asyncio.TaskGroup() as pipes:
            pipes.create_task(self._pipe(reader, up_writer))
            pipes.create_task(self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
