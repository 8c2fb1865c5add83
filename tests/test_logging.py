"""COLLAB_LOG_FORMAT=json: the server's log lines are JSON objects, one a line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

import anyio
import httpx
import pytest

from collab_server.cli import JsonLogFormatter
from tests.polling import poll
from tests.server_process import free_port, serve_command

pytestmark = pytest.mark.anyio


def test_a_record_becomes_one_json_line_with_its_error() -> None:
    try:
        raise ValueError("bad π")
    except ValueError:
        record = logging.LogRecord(
            "collab_server.rooms", logging.WARNING, __file__, 1, "room %s: %d", ("é", 3), None
        )
        record.exc_info = sys.exc_info()
    line = JsonLogFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["level"] == "warning" and fields["logger"] == "collab_server.rooms"
    assert fields["message"] == "room é: 3"
    assert fields["time"].endswith("+00:00")
    assert "ValueError: bad π" in fields["error"]


async def test_the_server_logs_json_lines() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *serve_command(port),
        env={
            **os.environ,
            "COLLAB_LOG_FORMAT": "json",
            "COLLAB_STORE_URL": "memory://",
            "COLLAB_COMPLETION_WORKERS": "0",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        with anyio.fail_after(30):
            first = json.loads(await process.stderr.readline())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def created() -> bool:
                try:
                    return (await http.post("/api/rooms", json={"id": "logged"})).status_code == 201
                except httpx.TransportError:
                    return False  # not listening yet

            await poll(created, seconds=30)
    finally:
        process.terminate()
        with anyio.fail_after(20):
            rest = await process.stderr.read()
            await process.wait()
    assert first["message"] == f"collab-server on http://127.0.0.1:{port} (store memory://)"
    assert first["level"] == "info" and first["logger"] == "collab_server"
    later = [json.loads(line)["message"] for line in rest.decode().splitlines()]
    assert "room logged created over REST" in later
