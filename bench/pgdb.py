"""A throwaway PostgreSQL database for one benchmark run (COLLAB_BENCH_POSTGRES_URL names the
server; default postgresql://root@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BASE_URL = os.environ.get("COLLAB_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    name = f"collab_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(BASE_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(BASE_URL)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextmanager
def scratch_database_sync() -> Iterator[str]:
    """`scratch_database` for synchronous drivers: the database lives across the with-block."""
    name = f"collab_bench_{secrets.token_hex(4)}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(BASE_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(BASE_URL)._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
