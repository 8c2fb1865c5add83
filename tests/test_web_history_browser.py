"""The history panel of the editor page end to end, in real Chromium, on a server with tokens.

The browser side is tests/browser/history.e2e.mjs (playwright-core driving Debian's Chromium):
Alice saves a version from the panel, types on, and restores it; Bob's page shows the restored
text and the restore's versions in his open panel; a viewer sees the versions without Save or
Restore; the panel pages through a room of 500 versions. This test serves the app with a secret,
makes the room of 500 versions, runs the script, and checks what it reports against the
server's own copy. Screenshots land in artifacts/web-history/ on every run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from pydantic import SecretStr

from collab_server.auth import ALL_ROOMS, Role, mint_token
from collab_server.settings import Settings
from tests.browser_script import ROOT, require_browser, run_browser_script
from tests.conftest import RunningServer, run_server
from tests.helpers import bearer

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

SCRIPT = ROOT / "tests" / "browser" / "history.e2e.mjs"
ARTIFACTS = ROOT / "artifacts" / "web-history"
RUN_SECONDS = 120  # the script's own waits are 10 s at most; it takes ~20 s in all
SECRET = "history-browser-secret-" + "x" * 20
ROOM = "history-room"
BIG_ROOM = "history-500"
BIG_ROOM_VERSIONS = 500
BATCH = 50


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    with_auth = settings.model_copy(update={"auth_secret": SecretStr(SECRET)})
    async with run_server(with_auth) as running:
        yield running


async def _make_big_room(server: RunningServer, editor: str) -> None:
    """A room with 500 named versions (saved 50 at once: one at a time loads the room anew)."""
    headers = bearer(editor)
    async with server.http() as http:
        created = await http.post("/api/rooms", json={"id": BIG_ROOM}, headers=headers)
        assert created.status_code == 201, created.text
        for batch in range(0, BIG_ROOM_VERSIONS, BATCH):
            text = f"batch {batch}\n".encode()
            written = await http.put(f"/api/rooms/{BIG_ROOM}/text", content=text, headers=headers)
            assert written.status_code == 200, written.text
            async with anyio.create_task_group() as group:
                for number in range(batch, batch + BATCH):
                    group.start_soon(_save_version, http, headers, f"step {number}")


async def _save_version(http: httpx.AsyncClient, headers: dict[str, str], label: str) -> None:
    saved = await http.post(
        f"/api/rooms/{BIG_ROOM}/versions", json={"label": label}, headers=headers
    )
    assert saved.status_code == 201, saved.text


async def test_save_type_restore_and_the_other_page_follows(server: RunningServer) -> None:
    await require_browser()
    editor = mint_token(SECRET, ALL_ROOMS, Role.EDITOR)
    viewer = mint_token(SECRET, ROOM, Role.VIEWER)
    await _make_big_room(server, editor)  # the room of the test is made by Alice's page

    result = await run_browser_script(
        SCRIPT,
        ARTIFACTS,
        server.http_url,
        str(ARTIFACTS),
        ROOM,
        BIG_ROOM,
        editor,
        viewer,
        seconds=RUN_SECONDS,
    )
    saved_id = result["savedId"]
    async with server.http() as http:
        text = await http.get(
            f"/api/rooms/{ROOM}/text", params={"name": "codemirror"}, headers=bearer(viewer)
        )
        listed = await http.get(
            f"/api/rooms/{ROOM}/versions", params={"limit": 10}, headers=bearer(viewer)
        )
        saved = await http.get(
            f"/api/rooms/{ROOM}/versions/{saved_id}/text",
            params={"name": "codemirror"},
            headers=bearer(viewer),
        )
    assert text.status_code == 200, text.text
    # The server's copy is the restored version, as both pages showed it.
    assert text.text == result["text"] == result["saved"] == saved.text
    assert text.text == "alpha = 1\nbeta = 2\ngamma = 3\n"
    versions = listed.json()["versions"]
    # Newest first; an automatic checkpoint may follow once the pages left (it has no label).
    assert [v["label"] for v in versions if v["label"] is not None] == [
        f"restored version {saved_id}",
        f"before restoring version {saved_id}",
        "First draft",
    ]
    first_draft = next(v for v in versions if v["label"] == "First draft")
    assert first_draft["automatic"] is False
    assert first_draft["authors"] == ["Alice", "Bob"]
    for name in ("history-alice-1280", "history-bob-1024", "history-viewer-400"):
        assert (await anyio.Path(ARTIFACTS / f"{name}.png").stat()).st_size > 10_000, name
    for name in ("history-diff-1280", "history-confirm-1280"):
        assert (await anyio.Path(ARTIFACTS / f"{name}.png").stat()).st_size > 10_000, name
