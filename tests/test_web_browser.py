"""The web editor end to end: two people in real Chromium, one room, this server.

The browser side is tests/browser/editor.e2e.mjs (playwright-core driving Debian's Chromium);
this test serves the app, runs the script, and checks what it reports against the server's own
copy. Screenshots land in artifacts/web/ on every run.

The server has a completion worker (the default `settings` fixture turns completion off), warmed
up before the browsers start: the script takes `os.path` from the popup, which only jedi offers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from collab_server.settings import Settings
from tests.browser_script import ROOT, require_browser, run_browser_script
from tests.conftest import RunningServer, run_server
from tests.polling import poll

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

SCRIPT = ROOT / "tests" / "browser" / "editor.e2e.mjs"
ARTIFACTS = ROOT / "artifacts" / "web"
RUN_SECONDS = 90  # the script's own waits are 10 s at most; it takes ~15 s in all
WARM_UP_SECONDS = 60  # a worker starts and warms jedi in 1-4 s here, more on a loaded machine
WARM_UP_ROOM = "jedi-warm-up"
WARM_UP_TEXT = "import os\nos.pa"  # completing `path` needs jedi; the generic provider lacks it


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    """The app with one completion worker (this module only), warm before the browsers start."""
    # A deadline far above jedi's time here: the test is about the editor, not this machine's speed.
    with_completion = settings.model_copy(
        update={"completion_workers": 1, "completion_deadline_ms": 5_000}
    )
    async with run_server(with_completion) as running:
        await _warm_up_jedi(running)
        yield running


async def _warm_up_jedi(server: RunningServer) -> None:
    async with server.http() as http:
        created = await http.post("/api/rooms", json={"id": WARM_UP_ROOM, "language": "python"})
        assert created.status_code == 201, created.text
        written = await http.put(f"/api/rooms/{WARM_UP_ROOM}/text", content=WARM_UP_TEXT.encode())
        assert written.status_code == 200, written.text
        at_end = {"offset": len(WARM_UP_TEXT)}

        async def jedi_answers() -> bool:  # the first answers may be generic, until jedi is warm
            response = await http.post(
                f"/api/rooms/{WARM_UP_ROOM}/complete", json=at_end, timeout=30
            )
            assert response.status_code == 200, response.text
            return bool(response.json()["provider"] == "jedi")

        await poll(jedi_answers, seconds=WARM_UP_SECONDS)
        deleted = await http.delete(f"/api/rooms/{WARM_UP_ROOM}")
        assert deleted.status_code == 204, deleted.text


async def test_two_people_edit_one_room_in_real_browsers(server: RunningServer) -> None:
    await require_browser()
    result = await run_browser_script(
        SCRIPT, ARTIFACTS, server.http_url, str(ARTIFACTS), seconds=RUN_SECONDS
    )
    async with server.http() as http:
        text = await http.get(f"/api/rooms/{result['room']}/text", params={"name": "codemirror"})
        room = await http.get(f"/api/rooms/{result['room']}")
    assert text.text == result["text"]  # the server's copy is what the editors show
    assert "# typed while offline\n" in text.text
    assert text.text.endswith("\nimport os\nos.path\nprint(os.getcwd)")  # both completions taken
    assert room.json()["name"] == "Pairing session"
    assert room.json()["language"] == result["language"] == "python"
    screenshots = ("alice-1280", "bob-400", "bob-lobby-400", "lobby-1280")
    for name in (*screenshots, "completion-1280", "completion-400"):
        assert (await anyio.Path(ARTIFACTS / f"{name}.png").stat()).st_size > 10_000, name
