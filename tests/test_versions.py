"""A room's history over REST with real clients: versions saved, listed, read, compared,
restored while someone types, kept through compaction and a restart, and who may do what."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path

import anyio
import httpx
import pytest
from pycrdt import Doc, Text

from collab_server.auth import Role, mint_token
from collab_server.protocol.update import UpdateLimits
from collab_server.rooms.editors import MAX_AUTHOR_CHARS, MAX_AUTHORS, SERVER_AUTHOR, Editors
from collab_server.rooms.history import CHAIN_LENGTH, Checkpoints, save_version
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import load_stored
from collab_server.settings import Settings
from persistence import VersionRecord
from persistence.memory import MemoryStore
from tests.conftest import RunningServer, run_server
from tests.helpers import FakeSocket, bearer, keystrokes, text_path
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio

SECRET = "test-secret-" + "0123456789abcdef" * 4
LIMITS = UpdateLimits()


def versions_path(room: str) -> str:
    return f"/api/rooms/{room}/versions"


async def save(http: httpx.AsyncClient, room: str, label: str | None = None) -> dict[str, object]:
    saved = await http.post(versions_path(room), json={"label": label} if label else None)
    assert saved.status_code == 201, saved.text
    answer: dict[str, object] = saved.json()
    return answer


async def test_a_saved_version_names_its_editors_and_reads_back(server: RunningServer) -> None:
    async with server.http() as http, yclient(server.ws_url, "hist") as ada:
        ada.set_awareness(1, {"user": {"name": "Ada", "color": "#f00"}})
        await ada.wait_until(lambda: ada.doc.client_id in ada.awareness)
        ada.text.insert(0, "def f():\n    return 1\n")
        await poll(lambda: _text_is(http, "hist", "def f():\n    return 1\n"))
        first = await save(http, "hist", "first")
        assert (first["label"], first["automatic"], first["authors"]) == ("first", False, ["Ada"])
        ada.text.insert(len(ada.text), "# 🎉 中文\n")
        await poll(lambda: _text_is(http, "hist", "def f():\n    return 1\n# 🎉 中文\n"))
        second = await save(http, "hist")
        assert (second["label"], second["authors"]) == (None, ["Ada"])

        listed = (await http.get(versions_path("hist"))).json()
        assert [v["id"] for v in listed["versions"]] == [second["id"], first["id"]]
        assert (await http.get(f"{versions_path('hist')}/{first['id']}")).json() == first
        then = await http.get(f"{versions_path('hist')}/{first['id']}/text")
        assert then.text == "def f():\n    return 1\n"
        assert then.headers["x-content-type-options"] == "nosniff"
        state = await http.get(f"{versions_path('hist')}/{second['id']}/update")
        doc: Doc[Text] = Doc()
        doc.apply_update(state.content)
        assert str(doc.get("codemirror", type=Text)) == "def f():\n    return 1\n# 🎉 中文\n"


async def test_versions_come_a_page_at_a_time(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "paged"})).status_code == 201
        ids = [(await save(http, "paged", f"v{n}"))["id"] for n in range(5)]
        first = (await http.get(versions_path("paged"), params={"limit": 2})).json()
        assert [v["id"] for v in first["versions"]] == [ids[4], ids[3]]
        rest = await http.get(
            versions_path("paged"), params={"limit": 10, "cursor": first["next_cursor"]}
        )
        assert [v["id"] for v in rest.json()["versions"]] == ids[2::-1]
        assert rest.json()["next_cursor"] is None
        bad = await http.get(versions_path("paged"), params={"cursor": "x"})
        assert (bad.status_code, bad.json()["error"]) == (422, "invalid_cursor")


async def test_a_diff_compares_versions_and_the_room_now(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "diffs"})).status_code == 201
        await http.put(text_path("diffs"), content=b"a\nb\nc\n")
        old = await save(http, "diffs")
        await http.put(text_path("diffs"), content="a\nB\nc\nd ✓\n".encode())
        diff = await http.get(f"{versions_path('diffs')}/{old['id']}/diff/current")
        assert diff.status_code == 200
        assert diff.text.splitlines()[2:] == ["@@ -1,3 +1,4 @@", " a", "-b", "+B", " c", "+d ✓"]
        back = await http.get(f"{versions_path('diffs')}/current/diff/{old['id']}")
        assert "-d ✓" in back.text.splitlines()
        missing = await http.get(f"{versions_path('diffs')}/999999/diff/current")
        assert (missing.status_code, missing.json()["error"]) == (404, "version_not_found")
        nonsense = await http.get(f"{versions_path('diffs')}/latest/diff/current")
        assert nonsense.status_code == 404


async def test_version_ids_anyone_can_type_get_404_or_422_not_500(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "ids"})).status_code == 201
        path = versions_path("ids")
        for raw in ["9" * 20, "²", "1" * 5000, "-1"]:
            for suffix in ["", "/text", "/update"]:
                answer = await http.get(f"{path}/{raw}{suffix}")
                assert (answer.status_code, answer.json()["error"]) == (404, "version_not_found")
            diff = await http.get(f"{path}/{raw}/diff/current")
            assert diff.status_code == 404
            assert (await http.delete(f"{path}/{raw}")).status_code == 404
            listed = await http.get(path, params={"cursor": raw})
            assert (listed.status_code, listed.json()["error"]) == (422, "invalid_cursor")


async def test_a_diff_past_its_size_is_refused_with_413(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "big"})).status_code == 201
        old = await save(http, "big")
        await http.put(text_path("big"), content=b"x\n" * (1024 * 1024 + 1))  # over 2 MiB
        refused = await http.get(f"{versions_path('big')}/{old['id']}/diff/current")
        assert (refused.status_code, refused.json()["error"]) == (413, "diff_too_large")


async def test_a_restore_is_an_edit_everyone_follows_and_keeps_concurrent_typing(
    server: RunningServer,
) -> None:
    async with (
        server.http() as http,
        yclient(server.ws_url, "undo") as ada,
        yclient(server.ws_url, "undo") as bo,
    ):
        ada.text.insert(0, "line one\nline two\n")
        await bo.wait_until(lambda: str(bo.text) == "line one\nline two\n")
        kept = await save(http, "undo", "good")
        ada.text.insert(len(ada.text), "a refactor gone wrong\n")
        await poll(lambda: _text_is(http, "undo", "line one\nline two\na refactor gone wrong\n"))
        # Cy types at the same moment from a copy of the room as it is: her edit reaches the
        # server only after the restore.
        cy: Doc[Text] = Doc()
        cy.apply_update((await http.get("/api/rooms/undo/update")).content)
        before_typing = cy.get_state()
        cy.get("codemirror", type=Text).insert(0, "# Cy 🎉\n")
        restored = await http.post(f"{versions_path('undo')}/{kept['id']}/restore")
        assert restored.status_code == 200, restored.text
        before, after = restored.json()["before"], restored.json()["after"]
        assert before["automatic"] and after["automatic"] and after["id"] > before["id"]
        await ada.wait_until(lambda: str(ada.text) == "line one\nline two\n")
        await bo.wait_until(lambda: str(bo.text) == "line one\nline two\n")
        sent = await http.post("/api/rooms/undo/update", content=cy.get_update(before_typing))
        assert sent.status_code == 204
        expected = "# Cy 🎉\nline one\nline two\n"
        await ada.wait_until(lambda: str(ada.text) == expected)
        await bo.wait_until(lambda: str(bo.text) == expected)
        assert await _text_is(http, "undo", expected)
        # The state before the restore is a version of its own: the restore can be undone.
        undo = await http.get(f"{versions_path('undo')}/{before['id']}/text")
        assert undo.text == "line one\nline two\na refactor gone wrong\n"
        assert (await http.get(f"{versions_path('undo')}/{after['id']}/text")).text == (
            "line one\nline two\n"
        )


async def test_a_restore_brings_the_room_settings_back(server: RunningServer) -> None:
    async with server.http() as http, yclient(server.ws_url, "lang") as ada:
        with ada.doc.transaction():  # one update: both are stored when the language shows
            ada.meta["language"] = "python"
            ada.meta["tabSize"] = 4
        await poll(async_json_is(http, "/api/rooms/lang", "language", "python"))
        kept = await save(http, "lang")
        changed = await http.patch("/api/rooms/lang", json={"language": "javascript"})
        assert changed.json()["language"] == "javascript"
        ada.meta["tabSize"] = 2
        ada.meta["theme"] = "dark"
        await ada.wait_until(lambda: ada.meta.get("language") == "javascript")
        restored = await http.post(f"{versions_path('lang')}/{kept['id']}/restore")
        assert restored.status_code == 200
        assert (await http.get("/api/rooms/lang")).json()["language"] == "python"
        await ada.wait_until(lambda: ada.meta.to_py() == {"language": "python", "tabSize": 4})


async def test_versions_survive_compaction_unload_and_a_restart(tmp_path: Path) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/store.db",
        room_idle_seconds=0.1,
        compact_after_updates=5,
        completion_workers=0,
    )
    async with run_server(settings) as server, server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "kept"})).status_code == 201
        await http.put(text_path("kept"), content="version text ✓\n".encode())
        saved = await save(http, "kept", "keep me")
        for n in range(8):  # past the compaction threshold, then unloaded when idle
            await http.put(text_path("kept"), content=f"later {n}\n".encode())
        await poll(lambda: server.registry.loaded("kept") is None)
    async with run_server(settings) as server, server.http() as http:
        listed = (await http.get(versions_path("kept"))).json()["versions"]
        # The named one, and the checkpoint made as the edited room left memory.
        assert [(v["label"], v["automatic"]) for v in listed] == [(None, True), ("keep me", False)]
        last = await http.get(f"{versions_path('kept')}/{listed[0]['id']}/text")
        assert last.text == "later 7\n"
        then = await http.get(f"{versions_path('kept')}/{saved['id']}/text")
        assert then.text == "version text ✓\n"


async def test_automatic_versions_while_editing_and_when_the_room_empties(
    settings: Settings,
) -> None:
    quick = settings.model_copy(
        update={"version_every_seconds": 0.3, "versions_kept": 1, "room_idle_seconds": 0.2}
    )
    async with run_server(quick) as server, server.http() as http:
        async with yclient(server.ws_url, "auto") as ada:
            ada.set_awareness(1, {"user": {"name": "Ada"}})
            await ada.wait_until(lambda: ada.doc.client_id in ada.awareness)
            named = await save(http, "auto", "named")
            ada.text.insert(0, "first")
            await anyio.sleep(0.4)
            ada.text.insert(0, "second ")  # an edit past the span: a checkpoint follows it

            async def automatic() -> list[dict[str, object]]:
                listed = (await http.get(versions_path("auto"))).json()["versions"]
                return [v for v in listed if v["automatic"]]

            await poll(automatic)
            (checkpoint,) = await automatic()
            assert checkpoint["authors"] == ["Ada"] and checkpoint["label"] is None
            ada.text.insert(len(ada.text), " third")
            await poll(lambda: _text_is(http, "auto", "second first third"))
        # The room empties and leaves memory: one more checkpoint, with the last edit.
        await poll(lambda: server.registry.loaded("auto") is None)
        (newest, *_) = await automatic()
        text = await http.get(f"{versions_path('auto')}/{newest['id']}/text")
        assert text.text == "second first third"
        # Nothing changed since: a visit that only reads makes none.
        async with yclient(server.ws_url, "auto"):
            pass
        await poll(lambda: server.registry.loaded("auto") is None)
        kept = (await http.get(versions_path("auto"))).json()["versions"]
        # One automatic version kept (the setting), the older checkpoint gone; named ones stay.
        assert [v["id"] for v in kept] == [newest["id"], named["id"]]
        assert newest["id"] != checkpoint["id"]


async def test_viewers_read_editors_save_and_restore_admins_delete(settings: Settings) -> None:
    guarded = settings.model_copy(update={"auth_secret": Settings(auth_secret=SECRET).auth_secret})

    def as_role(role: Role, room: str = "guarded") -> dict[str, str]:
        return bearer(mint_token(SECRET, room, role, None))

    async with run_server(guarded) as server, server.http() as http:
        created = await http.post(
            "/api/rooms", json={"id": "guarded"}, headers=as_role(Role.EDITOR)
        )
        assert created.status_code == 201
        path = versions_path("guarded")
        assert (await http.post(path, headers=as_role(Role.VIEWER))).status_code == 403
        saved = await http.post(path, headers=as_role(Role.EDITOR))
        assert saved.status_code == 201
        one = f"{path}/{saved.json()['id']}"
        assert (await http.get(path, headers=as_role(Role.VIEWER))).status_code == 200
        assert (await http.get(f"{one}/text", headers=as_role(Role.VIEWER))).status_code == 200
        assert (await http.get(path, headers=as_role(Role.VIEWER, "other"))).status_code == 403
        viewer_restore = await http.post(f"{one}/restore", headers=as_role(Role.VIEWER))
        assert viewer_restore.status_code == 403
        assert (await http.post(f"{one}/restore", headers=as_role(Role.EDITOR))).status_code == 200
        assert (await http.delete(one, headers=as_role(Role.VIEWER))).status_code == 403
        assert (await http.delete(one, headers=as_role(Role.EDITOR))).status_code == 403
        assert (await http.delete(one, headers=as_role(Role.ADMIN))).status_code == 204
        gone = await http.get(one, headers=as_role(Role.VIEWER))
        assert (gone.status_code, gone.json()["error"]) == (404, "version_not_found")


async def _text_is(http: httpx.AsyncClient, room: str, expected: str) -> bool:
    answer = await http.get(text_path(room))
    return answer.status_code == 200 and answer.text == expected


def async_json_is(
    http: httpx.AsyncClient, path: str, key: str, value: object
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        answer = await http.get(path)
        return bool(answer.status_code == 200 and answer.json().get(key) == value)

    return check


async def test_an_edit_stored_while_a_version_is_saved_waits_for_the_next_one() -> None:
    """In process: the version holds the document as it was when its save began; an edit that
    lands during the store's write keeps its editor and still makes the next checkpoint due."""
    store = SlowVersionStore()
    await store.ensure_room("r")
    room = Room("r", load_stored([], LIMITS), store, limits=LIMITS)
    await room.write(keystrokes("codemirror", "a")[0])
    saving = asyncio.create_task(save_version(store, room, label=None, automatic=True))
    await store.arrived.wait()
    await room.write(keystrokes("codemirror", "b")[0])
    store.gate.set()
    saved = await saving
    assert saved.authors == ("server",)
    assert room.editors.first_edit is not None  # the checkpoint at unload will come
    assert room.editors.names() == ["server"]


class SlowVersionStore(MemoryStore):
    """A memory store whose version saves wait while `gate` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.arrived = asyncio.Event()

    async def save_version(
        self,
        room_id: str,
        state: bytes,
        *,
        label: str | None,
        automatic: bool,
        authors: Sequence[str],
        created_at: datetime | None = None,
        base: int | None = None,
    ) -> VersionRecord:
        self.arrived.set()
        await self.gate.wait()
        return await super().save_version(
            room_id, state, label=label, automatic=automatic, authors=authors, base=base
        )


def test_a_versions_authors_are_bounded_in_number_and_length() -> None:
    """Names are what clients announce: 300 editors named with 10,000 characters each."""
    peers = [FakeSocket().peer("r") for _ in range(300)]
    names = {peer: [f"{number:03} " + "x" * 10_000] for number, peer in enumerate(peers)}
    editors = Editors(lambda peer: names[peer])
    for peer in peers[:150]:
        editors.stored(peer)
    for peer in peers[150:]:
        editors.stored(peer)
        editors.left(peer)
    editors.stored(None)
    authors = editors.names()
    assert len(authors) == MAX_AUTHORS + 1 and authors[-1] == SERVER_AUTHOR
    assert all(len(name) <= MAX_AUTHOR_CHARS for name in authors)


async def test_versions_after_the_first_keep_only_what_changed_and_read_back_whole(
    server: RunningServer,
) -> None:
    store = server.registry.store
    texts = ["x = 1\n" * 2000]
    async with server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "inc"})).status_code == 201
        saved = []
        for n in range(CHAIN_LENGTH + 2):
            if n:
                texts.append(texts[-1] + f"# step {n} 😀\n")
            await http.put(text_path("inc"), content=texts[-1].encode())
            saved.append(await save(http, "inc", f"v{n}"))
        records = [await store.get_version("inc", int(str(v["id"]))) for v in saved]
        bases = [record.base if record else "gone" for record in records]
        # Whole, then changes to the one before; whole again after CHAIN_LENGTH of them.
        assert bases[0] is None and bases[CHAIN_LENGTH] is None
        assert bases[1:CHAIN_LENGTH] == [v["id"] for v in saved[: CHAIN_LENGTH - 1]]
        assert int(str(saved[1]["size_bytes"])) * 20 < int(str(saved[0]["size_bytes"]))
        # Deleting a version others are built on leaves them whole.
        assert (await http.delete(f"{versions_path('inc')}/{saved[0]['id']}")).status_code == 204
        assert (await http.get(f"{versions_path('inc')}/{saved[0]['id']}")).status_code == 404
        for version, text in list(zip(saved, texts, strict=True))[1:]:
            then = await http.get(f"{versions_path('inc')}/{version['id']}/text")
            assert then.text == text


async def test_named_versions_stop_at_the_cap_and_restores_keep_to_the_retention(
    settings: Settings,
) -> None:
    capped = settings.model_copy(update={"named_versions_max": 2, "versions_kept": 2})
    async with run_server(capped) as server, server.http() as http:
        assert (await http.post("/api/rooms", json={"id": "cap"})).status_code == 201
        first = await save(http, "cap", "one")
        await save(http, "cap", "two")
        refused = await http.post(versions_path("cap"), json={"label": "three"})
        assert refused.status_code == 409 and refused.json()["error"] == "too_many_versions"
        assert (await http.delete(f"{versions_path('cap')}/{first['id']}")).status_code == 204
        await save(http, "cap", "three")
        for _ in range(3):  # each restore saves two automatic versions
            named = await _newest_named(http)
            restored = await http.post(f"{versions_path('cap')}/{named}/restore")
            assert restored.status_code == 200, restored.text
        listed = (await http.get(versions_path("cap"))).json()["versions"]
        assert sum(v["automatic"] for v in listed) == 2
        assert [v["label"] for v in listed if not v["automatic"]] == ["three", "two"]


async def _newest_named(http: httpx.AsyncClient) -> int:
    listed = (await http.get(versions_path("cap"))).json()["versions"]
    return int(next(v["id"] for v in listed if not v["automatic"]))


async def test_a_checkpoint_another_process_made_redundant_is_left_out() -> None:
    """Two processes' copies of one room on one store (in process): each has editors, so each
    would checkpoint; one whose document a fresh version already holds does not."""
    store = MemoryStore()
    await store.ensure_room("r")
    a = Room("r", load_stored([], LIMITS), store, limits=LIMITS)
    b = Room("r", load_stored([], LIMITS), store, limits=LIMITS)
    clock = [0.0]
    async with Jobs() as jobs:

        def checkpoints() -> Checkpoints:
            return Checkpoints(
                store, jobs, every_seconds=600, keep=10, max_age_days=0, now=lambda: clock[0]
            )

        at_a, at_b = checkpoints(), checkpoints()
        first = keystrokes("codemirror", "ab")
        await a.write(first[0])
        await b.apply_remote_updates([first[0]])
        await b.write(first[1])
        await a.apply_remote_updates([first[1]])
        # While editing: A's span is over first, and then B's, a moment later.
        assert a.editors.first_edit is not None and b.editors.first_edit is not None
        clock[0] = max(a.editors.first_edit, b.editors.first_edit) + 601
        at_a.after_edit(a)
        await poll(lambda: a.editors.first_edit is None)  # A saved its checkpoint
        before = b.editors.first_edit
        at_b.after_edit(b)
        await poll(lambda: b.editors.first_edit != before)
        assert b.editors.first_edit is not None  # left out: a new span began, names kept
        assert len(await versions(store)) == 1
        assert b.editors.names() == ["server"]
        # Leaving: A unloads first with the document both hold; B's checkpoint would repeat it.
        second = keystrokes("codemirror", "c")[0]
        await a.write(second)
        await b.apply_remote_updates([second])
        await at_a.at_unload(a)
        await at_b.at_unload(b)
        assert len(await versions(store)) == 2
        # A document the newest version does not hold is saved.
        third = keystrokes("codemirror", "d")[0]
        await b.write(third)
        await at_b.at_unload(b)
        assert len(await versions(store)) == 3


async def versions(store: MemoryStore) -> list[VersionRecord]:
    return await store.page_versions("r", 100)
