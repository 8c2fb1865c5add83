"""`collab-server copy`: rooms move from the SQLite default to PostgreSQL intact.

The source is filled by a real server (REST and WebSocket clients; it compacts the rooms as it
stops) and one more update makes a log tail; the copy is then served by a real server on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from pycrdt import Text

from collab_server.rooms.snapshot import doc_from_log
from collab_server.settings import Settings
from persistence import BUFFERED, Author, AuthorRange, StoreUnavailable, open_store
from persistence.copy import copy_rooms
from persistence.memory import MemoryStore
from tests.conftest import run_server
from tests.server_process import cli_command
from tests.yclient import yclient

pytestmark = pytest.mark.anyio

PYTHON_TEXT = "print('héllo π 🎉')\n"
TYPED = "# typed live\n"
TAIL = "# written after the last compaction\n"


async def _fill_source(settings: Settings, python_room: str, notes_room: str) -> None:
    async with run_server(settings) as server, server.http() as http:
        created = await http.post(
            "/api/rooms", json={"id": python_room, "name": "Pair", "language": "python"}
        )
        assert created.status_code == 201, created.text
        written = await http.put(f"/api/rooms/{python_room}/text", content=PYTHON_TEXT.encode())
        assert written.status_code == 200
        async with yclient(server.ws_url, python_room) as client:
            for character in TYPED:  # one update each, as keystrokes come
                client.text.insert(len(client.text), character)
        async with yclient(server.ws_url, notes_room) as client:  # a room made by joining
            client.text.insert(0, "notes")
        # What a client sent before it left is stored before the server lets go of the room.
    # The server compacted every room as it stopped; one more update makes a log tail as well.
    store = open_store(settings.store_url)
    await store.open()
    try:
        doc = doc_from_log(await store.load(python_room))
        text = doc.get("codemirror", type=Text)
        assert isinstance(text, Text)
        assert str(text) == PYTHON_TEXT + TYPED
        before = doc.get_state()
        text.insert(len(text), TAIL)
        await store.append(python_room, doc.get_update(before))
        stored = await store.load(python_room)
        assert stored.snapshot is not None and len(stored.updates) == 1
    finally:
        await store.close()


async def test_copy_moves_rooms_from_sqlite_to_postgres_intact(
    settings: Settings,
    tmp_path: Path,
    postgres_url: str,
) -> None:
    python_room, notes_room = (
        f"copy-py-{secrets.token_hex(3)}",
        f"copy-notes-{secrets.token_hex(3)}",
    )
    sqlite_url = f"sqlite:///{tmp_path}/source.db"
    await _fill_source(
        settings.model_copy(update={"store_url": sqlite_url}),
        python_room,
        notes_room,
    )

    code, printed = await collab_server("copy", "--from", sqlite_url, "--to", postgres_url)
    assert (code, printed.splitlines()[-1]) == (0, "copied 2 of 2 rooms"), printed

    async with run_server(settings.model_copy(update={"store_url": postgres_url})) as server:
        async with server.http() as http:
            python = await http.get(f"/api/rooms/{python_room}")
            assert (python.json()["name"], python.json()["language"]) == ("Pair", "python")
            text = await http.get(f"/api/rooms/{python_room}/text")
            assert text.text == PYTHON_TEXT + TYPED + TAIL
            notes = await http.get(f"/api/rooms/{notes_room}/text")
            assert notes.text == "notes"
        async with yclient(server.ws_url, python_room) as client:  # a client resyncs from it
            assert str(client.text) == PYTHON_TEXT + TYPED + TAIL

    code, again = await collab_server(
        "copy", "--from", sqlite_url, "--to", postgres_url, python_room
    )
    assert code == 0 and f"{python_room}: skipped" in again and "copied 0 of 1 rooms" in again
    code, refused = await collab_server("copy", "--from", sqlite_url, "--to", postgres_url, "ghost")
    assert code == 1 and "the source has no room 'ghost'" in refused


async def collab_server(*arguments: str) -> tuple[int, str]:
    """Run the real command; its exit code and what it printed (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *cli_command(*arguments),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    with anyio.fail_after(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


class BufferingStore(MemoryStore):
    """A target that takes appends only into an outage buffer, as PostgreSQL does while down."""

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        return [BUFFERED] * len(updates)


async def test_copy_into_a_store_that_only_buffers_fails_and_leaves_no_room() -> None:
    source, target = MemoryStore(), BufferingStore()
    await source.create_room("r", "r", None)
    await source.append("r", b"\x00\x00")
    with pytest.raises(StoreUnavailable, match="could not store room 'r'"):
        await copy_rooms(source, target)
    assert await target.get_room("r") is None  # a later run copies it, rather than skipping it


async def test_copy_carries_versions_and_authorship_with_their_times_labels_and_order(
    tmp_path: Path,
) -> None:
    source = MemoryStore()
    await source.create_room("r", "r", None)
    await source.append("r", b"\x00\x00")
    earlier = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    await source.save_version(
        "r", b"one", label=None, automatic=True, authors=["Ada"], created_at=earlier
    )
    await source.save_version("r", b"two", label="named", automatic=False, authors=["Ada", "Bo"])
    wrote = AuthorRange(5, 0, 12, Author("Ada", "ada", self_declared=False), earlier)
    await source.save_authorship("r", [wrote])
    target = open_store(f"sqlite:///{tmp_path}/target.db")
    await target.open()
    try:
        (copied,) = await copy_rooms(source, target)
        assert copied.versions == 2
        newest, oldest = await target.page_versions("r", 10)
        assert (oldest.automatic, oldest.authors, oldest.created_at) == (True, ("Ada",), earlier)
        assert (newest.label, newest.authors) == ("named", ("Ada", "Bo"))
        assert await target.version_parts("r", oldest.id) == [b"one"]
        assert await target.version_parts("r", newest.id) == [b"two"]
        assert await target.load_authorship("r") == [wrote]
    finally:
        await target.close()
