"""The completion service's limits and fallbacks: the admission bound (taken before the document
is read, given back on every path), the AI provider and its failures, a worker that dies, a 1 MB
document, completion turned off. Real servers and worker processes throughout; the only stand-in
is the AI endpoint, a real HTTP server speaking the OpenAI API."""

from __future__ import annotations

import base64
import multiprocessing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from pycrdt import Text

from collab_server.completion.service import (
    CompletionBusy,
    CompletionRequest,
    CompletionService,
)
from collab_server.rooms.room import Room
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.fake_llm import FakeLlm, Mode, fake_llm
from tests.helpers import labels, room_with
from tests.polling import poll

pytestmark = pytest.mark.anyio

PYTHON = "import os\nos.pa"
JS = "const counter = 1;\nco"  # served by the generic provider: no wait for jedi's warm-up
BIG = "class Model:\n    def save(self, value):\n        self.value = value\n\n" * 20_000  # 1.4 MB


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "store_url": "memory://",
        "completion_workers": 1,
        "completion_deadline_ms": 30_000,
        **settings,
    }
    async with run_server(Settings(**values)) as running:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as http:
            yield http


async def complete_end(http: httpx.AsyncClient, room: str, text: str) -> httpx.Response:
    return await http.post(f"/api/rooms/{room}/complete", json={"offset": len(text)})


# -- the AI provider --------------------------------------------------------------------------


async def test_ai_continuation_is_offered_first() -> None:
    async with fake_llm("unter += 1;\n") as llm:
        async with serving(
            completion_llm_url=llm.url,
            completion_llm_model="tiny-coder",
            completion_llm_key="sekrit",
            completion_llm_timeout_ms=30_000,
        ) as http:
            await room_with(http, "javascript", JS, room="js")
            response = await complete_end(http, "js", JS)
    assert response.status_code == 200
    answer = response.json()
    assert answer["items"][0] == {
        "label": "counter += 1;",
        "kind": "text",
        "detail": "AI · tiny-coder",
        "insert_text": "counter += 1;\n",  # replaces "co", like the other items
    }
    assert "counter" in labels(response.json())[1:]  # the local items follow
    assert (answer["from"], answer["to"]) == (len(JS) - 2, len(JS))
    sent = llm.requests[0]
    assert sent["model"] == "tiny-coder"
    assert sent["messages"][-1]["content"] == JS + "<CURSOR>"
    assert llm.headers[0]["authorization"] == "Bearer sekrit"


@pytest.mark.parametrize("mode", ["error", "garbage", "hold"])
async def test_ai_failures_leave_the_local_items(mode: Mode) -> None:
    async with fake_llm("unter") as llm:
        llm.mode = mode
        # Time enough for the request to reach the fake API (it shares this event loop) on a
        # loaded machine; "hold" then waits out the AI timeout, well inside the deadline.
        async with serving(completion_llm_url=llm.url, completion_llm_timeout_ms=1_000) as http:
            await room_with(http, "javascript", JS, room="js")
            response = await complete_end(http, "js", JS)
            assert llm.requests  # it was asked
    assert response.status_code == 200
    assert labels(response.json()) == ["counter", "const", "console", "continue"]


# -- limits -----------------------------------------------------------------------------------


async def test_requests_over_the_bound_get_503() -> None:
    async with fake_llm("th") as llm:
        llm.mode = "hold"
        async with serving(
            completion_queue=1, completion_llm_url=llm.url, completion_llm_timeout_ms=30_000
        ) as http:
            await room_with(http, "javascript", JS, room="js")
            async with anyio.create_task_group() as tasks:
                first: list[httpx.Response] = []

                async def hold_the_only_slot() -> None:
                    first.append(await complete_end(http, "js", JS))

                tasks.start_soon(hold_the_only_slot)
                with anyio.fail_after(30):
                    await llm.received.wait()  # the first request is in flight
                refused = await complete_end(http, "js", JS)
                llm.release.set()
            again = await complete_end(http, "js", JS)
    assert refused.status_code == 503
    assert refused.json()["error"] == "completion_busy"
    assert refused.headers["retry-after"] == "1"
    assert first[0].status_code == 200
    assert again.status_code == 200  # the slot was given back


@asynccontextmanager
async def the_only_slot_held(http: httpx.AsyncClient, llm: FakeLlm) -> AsyncIterator[None]:
    """A request in flight, held by the AI endpoint, for a server with `completion_queue=1`."""
    llm.mode = "hold"
    await room_with(http, "javascript", JS, room="held")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(complete_end, http, "held", JS)
        with anyio.fail_after(30):
            await llm.received.wait()
        yield
        llm.release.set()


async def test_a_refused_request_never_reads_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    read = Room.text

    def counted(room: Room, name: str) -> Text:
        reads.append(room.id)
        return read(room, name)

    async with fake_llm("th") as llm:
        async with serving(
            completion_queue=1, completion_llm_url=llm.url, completion_llm_timeout_ms=30_000
        ) as http:
            await room_with(http, "python", BIG, room="big")
            async with the_only_slot_held(http, llm):
                monkeypatch.setattr(Room, "text", counted)
                refused = await complete_end(http, "big", BIG)
                monkeypatch.undo()
    assert refused.status_code == 503
    assert refused.json()["error"] == "completion_busy"
    assert reads == []  # neither read nor converted: a flood of refusals costs no document work


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"offset": len(JS) + 1}, "invalid_position"),
        ({"line": 9, "column": 0}, "invalid_position"),
        # client 12345 has 3 items the server never receives
        (
            {"offset": 0, "state_vector": base64.b64encode(bytes([1, 0xB9, 0x60, 3])).decode()},
            "document_behind",
        ),
    ],
)
async def test_a_request_that_fails_after_admission_gives_its_slot_back(
    body: dict[str, Any], error: str
) -> None:
    async with serving(completion_queue=1, completion_deadline_ms=1_000) as http:
        await room_with(http, "javascript", JS, room="js")
        for _ in range(2):  # with the only slot not given back, the second would get 503
            failed = await http.post("/api/rooms/js/complete", json=body)
            assert failed.json()["error"] == error
        answered = await complete_end(http, "js", JS)
    assert answered.status_code == 200


async def test_a_cancelled_request_gives_its_slot_back_once_its_job_is_done() -> None:
    settings = Settings(
        store_url="memory://",
        completion_workers=1,
        completion_queue=1,
        completion_deadline_ms=30_000,
    )
    asked = anyio.Event()

    async def ask(service: CompletionService) -> None:
        with service.admitted() as admission:
            asked.set()
            await service.complete(admission, CompletionRequest(JS, len(JS), "javascript", "k"))

    def admits(service: CompletionService) -> bool:
        try:
            with service.admitted():
                return True
        except CompletionBusy:
            return False

    async with CompletionService(settings) as service:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ask, service)
            await asked.wait()
            await anyio.wait_all_tasks_blocked()  # it waits for the worker's answer
            tasks.cancel_scope.cancel()
        await poll(lambda: admits(service), seconds=30)


async def test_a_dead_worker_is_replaced() -> None:
    async with serving() as http:
        await room_with(http, "javascript", JS, room="js")
        assert (await complete_end(http, "js", JS)).status_code == 200
        workers = multiprocessing.active_children()
        assert len(workers) == 1
        workers[0].kill()
        broken = await complete_end(http, "js", JS)
        assert broken.status_code == 503
        assert broken.json()["error"] == "completion_unavailable"
        healed = await complete_end(http, "js", JS)
    assert healed.status_code == 200
    assert "counter" in labels(healed.json())


async def test_a_1mb_document_answers_with_the_default_deadline() -> None:
    block = "".join(
        f"class Model{i}:\n    def save(self, value):\n        self.value{i} = value\n\n"
        for i in range(200)
    )
    text = block * (1_000_000 // len(block) + 1)
    middle = text.index("self.value", len(text) // 2) + len("self.va")
    async with serving(completion_deadline_ms=500) as http:
        await room_with(http, "python", text, room="big")
        response = await http.post("/api/rooms/big/complete", json={"offset": middle})
    assert len(text.encode()) > 1_000_000
    assert response.status_code == 200
    answer = response.json()
    assert (answer["from"], answer["to"]) == (middle - 2, middle)
    assert answer["partial"] is True  # jedi saw a window, or the generic provider did
    assert all("va" in item["label"].lower() for item in answer["items"])


async def test_a_state_vector_the_server_never_gets_answers_409() -> None:
    async with serving(completion_deadline_ms=200) as http:
        await room_with(http, "javascript", JS, room="js")
        # client 12345 has 3 items the server never receives
        ahead = base64.b64encode(bytes([1, 0xB9, 0x60, 3])).decode()
        response = await http.post(
            "/api/rooms/js/complete", json={"offset": len(JS), "state_vector": ahead}
        )
    assert response.status_code == 409
    assert response.json()["error"] == "document_behind"


async def test_completion_turned_off(server: RunningServer) -> None:
    async with server.http() as http:
        await room_with(http, "python", PYTHON, room="p")
        response = await complete_end(http, "p", PYTHON)
    assert response.status_code == 503
    assert response.json()["error"] == "completion_unavailable"
