"""Who wrote what: authorship stamped by the server as it stores updates, and blame over REST,
with stock y-websocket clients, tokens that name people, a restart, and a client that sends
someone else's items as its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc, Text

from collab_server.auth import Role, mint_token
from collab_server.protocol import encode_update
from collab_server.rooms.authorship import MAX_NAME_CHARS, named
from collab_server.rooms.blame import MAX_GROUPS, TextTooLarge, blame
from collab_server.settings import Settings
from persistence import Author, AuthorRange
from tests.conftest import RunningServer, run_server
from tests.helpers import bearer, text_path
from tests.nodeclients import node_clients, node_missing
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio

SECRET = "test-secret-" + "0123456789abcdef" * 4
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
needs_node = pytest.mark.skipif(node_missing() is not None, reason=str(node_missing()))


def guarded(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_secret": Settings(auth_secret=SECRET).auth_secret})


def people(answer: dict[str, Any]) -> list[tuple[int, int, str | None]]:
    return [(run["from_line"], run["to_line"], run["author"]) for run in answer["runs"]]


async def blame_of(http: httpx.AsyncClient, room: str, version: int | None = None) -> Any:
    path = f"/api/rooms/{room}" + (f"/versions/{version}" if version else "") + "/blame"
    answer = await http.get(path, params={"name": "codemirror"})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def text_is(http: httpx.AsyncClient, room: str, text: str) -> bool:
    return (await http.get(text_path(room))).text == text


# -- over the wire ---------------------------------------------------------------------------------


@needs_node
async def test_blame_names_who_typed_each_line_and_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db", room_idle_seconds=0.2, completion_workers=0
    )
    alice, bob = {"user": {"name": "Alice"}}, {"user": {"name": "Bob"}}
    async with run_server(settings) as server, server.http() as http:
        async with node_clients(server.ws_url) as node:
            await node.open("alice", "pair", awareness=alice)
            await node.open("bob", "pair", awareness=bob)
            await node.insert("alice", 0, "def f():\n    return 1\n")
            await node.wait_text(["alice", "bob"], "def f():\n    return 1\n")
            await node.insert("bob", 9, "    # 😀 中文 fix\n")
            await node.insert("alice", 0, "import os\n")
            final = "import os\ndef f():\n    # 😀 中文 fix\n    return 1\n"
            await node.wait_text(["alice", "bob"], final)
            await poll(lambda: text_is(http, "pair", final))
            answer = await blame_of(http, "pair")
        assert people(answer) == [(1, 2, "Alice"), (3, 3, "Bob"), (4, 5, "Alice")]
        assert answer["line_count"] == 5 and answer["version"] is None
        assert answer["authors"] == [
            {"name": "Alice", "user": None, "self_declared": True},
            {"name": "Bob", "user": None, "self_declared": True},
        ]
        written = datetime.fromisoformat(answer["runs"][0]["time"])
        assert abs(datetime.now(UTC) - written) < timedelta(minutes=1)
        # Text written over REST is the server's.
        assert (await http.put(text_path("pair"), content=(final + "x = 1\n").encode())).is_success
        assert people(await blame_of(http, "pair"))[-2:] == [(4, 4, "Alice"), (5, 6, "server")]
        await poll(lambda: server.registry.loaded("pair") is None)
    async with run_server(settings) as server, server.http() as http:
        assert people(await blame_of(http, "pair")) == [
            (1, 2, "Alice"),
            (3, 3, "Bob"),
            (4, 4, "Alice"),
            (5, 6, "server"),
        ]


@needs_node
async def test_with_tokens_the_token_names_the_author_whatever_the_editor_announces(
    settings: Settings,
) -> None:
    settings = guarded(settings)
    token = mint_token(SECRET, "*", Role.EDITOR, user="u-17", name="Alice Liddell")
    anonymous = mint_token(SECRET, "*", Role.EDITOR)
    async with run_server(settings) as server, server.http() as http:
        http.headers.update(bearer(mint_token(SECRET, "*", Role.VIEWER)))
        async with node_clients(server.ws_url) as node:
            await node.open(
                "alice", "tok", awareness={"user": {"name": "Bob"}}, params={"token": token}
            )
            await node.open(
                "carol", "tok", awareness={"user": {"name": "Carol"}}, params={"token": anonymous}
            )
            await node.insert("alice", 0, "signed\n")
            await node.wait_text(["alice", "carol"], "signed\n")
            await node.insert("carol", 7, "unsigned\n")
            await node.wait_text(["alice", "carol"], "signed\nunsigned\n")
            await poll(lambda: text_is(http, "tok", "signed\nunsigned\n"))
            answer = await blame_of(http, "tok")
    assert answer["runs"][:2] == [
        {
            "from_line": 1,
            "to_line": 1,
            "author": "Alice Liddell",
            "user": "u-17",
            "self_declared": False,
            "time": answer["runs"][0]["time"],
        },
        {
            "from_line": 2,
            "to_line": 3,
            "author": "Carol",
            "user": None,
            "self_declared": True,
            "time": answer["runs"][1]["time"],
        },
    ]


async def test_sending_someone_elses_items_again_claims_nothing(server: RunningServer) -> None:
    async with server.http() as http, yclient(server.ws_url, "claim") as ada:
        await ada.announce("Ada")
        ada.text.insert(0, "mine\n")
        await poll(lambda: text_is(http, "claim", "mine\n"))
        async with yclient(server.ws_url, "claim", sync=False) as mallory:
            await mallory.announce("Mallory")
            await mallory.send_raw(encode_update(ada.doc.get_update()))  # all of Ada's items
            await mallory.send_raw(encode_update(_typed(7, "theirs\n")))
            await poll(lambda: text_is(http, "claim", "theirs\nmine\n"))
        assert people(await blame_of(http, "claim")) == [(1, 1, "Mallory"), (2, 3, "Ada")]


async def test_a_version_is_blamed_as_it_was(server: RunningServer) -> None:
    async with server.http() as http, yclient(server.ws_url, "then") as ada:
        await ada.announce("Ada")
        ada.text.insert(0, "one\n")
        await poll(lambda: text_is(http, "then", "one\n"))
        saved = (await http.post("/api/rooms/then/versions", json={"label": "v"})).json()
        await http.put(text_path("then"), content=b"one\ntwo\n")
        assert people(await blame_of(http, "then")) == [(1, 1, "Ada"), (2, 3, "server")]
        assert people(await blame_of(http, "then", saved["id"])) == [(1, 2, "Ada")]
        missing = await http.get("/api/rooms/then/versions/999999/blame")
        assert missing.status_code == 404 and missing.json()["error"] == "version_not_found"
        assert (await http.get("/api/rooms/nowhere/blame")).status_code == 404


async def test_blame_needs_a_token_for_the_room(settings: Settings) -> None:
    settings = guarded(settings)
    async with run_server(settings) as server, server.http() as http:
        admin = bearer(mint_token(SECRET, "*", Role.ADMIN))
        assert (await http.post("/api/rooms", json={"id": "b1"}, headers=admin)).is_success
        assert (await http.get("/api/rooms/b1/blame")).status_code == 401
        elsewhere = bearer(mint_token(SECRET, "b2", Role.VIEWER))
        assert (await http.get("/api/rooms/b1/blame", headers=elsewhere)).status_code == 403
        viewer = bearer(mint_token(SECRET, "b1", Role.VIEWER))
        assert (await http.get("/api/rooms/b1/blame", headers=viewer)).json()["runs"] == [
            {
                "from_line": 1,
                "to_line": 1,
                "author": None,
                "user": None,
                "self_declared": False,
                "time": None,
            }
        ]


# -- the computation -------------------------------------------------------------------------------


def _typed(client: int, text: str, base: bytes | None = None, at: int = 0) -> bytes:
    """An update of client `client` inserting `text` at `at` into the document `base`."""
    doc: Doc[Text] = Doc(client_id=client)
    if base is not None:
        doc.apply_update(base)
    before = doc.get_state()
    doc.get("codemirror", type=Text).insert(at, text)
    return doc.get_update(before)


def _merged(*updates: bytes) -> bytes:
    doc: Doc[Text] = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc.get_update()


def test_lines_go_to_who_wrote_most_of_them_and_unknown_text_to_nobody() -> None:
    first = _typed(1, "ab\ncd\n")
    second = _typed(2, "XYZW", first, at=4)  # "ab\ncXYZWd\n": line 2 is mostly theirs
    third = _typed(3, "old\n", _merged(first, second), at=0)  # nobody recorded it
    state = _merged(first, second, third)
    ranges = [
        AuthorRange(1, 0, 6, Author("Ada"), NOW),
        AuthorRange(2, 0, 4, Author("Bo"), NOW + timedelta(minutes=5)),
    ]
    runs, lines = blame(state, "codemirror", ranges, 1 << 20)
    assert lines == 4
    assert [(r.from_line, r.to_line, r.author.name if r.author else None) for r in runs] == [
        (1, 1, None),
        (2, 2, "Ada"),
        (3, 3, "Bo"),
        (4, 4, "Ada"),  # the empty last line: the newline that made it
    ]
    assert runs[2].time == NOW + timedelta(minutes=5)


def test_bytes_are_counted_in_utf8_whatever_the_clocks_count() -> None:
    first = _typed(1, "😀😀😀😀\n")  # 8 clock ticks (UTF-16), 16 bytes
    second = _typed(2, "中文\n", first, at=0)
    runs, _ = blame(
        _merged(first, second),
        "codemirror",
        [AuthorRange(1, 0, 9, Author("Ada"), NOW), AuthorRange(2, 0, 3, Author("Bo"), NOW)],
        1 << 20,
    )
    assert [(r.from_line, r.author.name if r.author else None) for r in runs] == [
        (1, "Bo"),
        (2, "Ada"),
    ]


def test_many_authors_are_bounded_to_a_few_passes() -> None:
    updates, ranges, state = [], [], None
    for n in range(MAX_GROUPS + 20):
        update = _typed(100 + n, f"line {n}\n", state, at=0)
        updates.append(update)
        state = _merged(*updates)
        ranges.append(AuthorRange(100 + n, 0, len(f"line {n}\n"), Author(f"p{n}"), NOW))
    assert state is not None
    runs, lines = blame(state, "codemirror", ranges, 1 << 20)
    names = {run.author.name for run in runs if run.author}
    assert len(names) == MAX_GROUPS and "21 others" in names
    assert lines == MAX_GROUPS + 21


def test_a_text_past_the_bound_is_not_blamed() -> None:
    with pytest.raises(TextTooLarge):
        blame(_typed(1, "x" * 101), "codemirror", [], 100)


def test_authors_are_cut_before_they_are_kept() -> None:
    """A presence name may be 64 KiB: the cache of authors keeps 100 characters of each."""
    first = named("Ada" + "a" * 65_536, self_declared=True)
    second = named("Ada" + "a" * 65_000, self_declared=True)
    assert first is second and len(first.name) == MAX_NAME_CHARS
