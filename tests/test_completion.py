"""Completion over HTTP against a real server, real worker processes and real jedi.

One server for the module: its worker warms jedi once. The deadline is long here so that what is
tested is what the providers answer, never how fast this machine is (timings live in bench/).
The cursor's conversion from UTF-16 is also checked on its own, against `positions.py`.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from pycrdt import Doc, Text

from collab_server.completion import cursor
from collab_server.completion.cursor import Cursor, Located, locate
from collab_server.languages import LANGUAGES
from collab_server.positions import (
    PositionError,
    index_from_line_column,
    index_from_utf16,
    utf16_from_index,
)
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.helpers import labels, room_with, utf16_length
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def completing() -> AsyncIterator[RunningServer]:
    settings = Settings(store_url="memory://", completion_workers=1, completion_deadline_ms=30_000)
    async with run_server(settings) as running:
        yield running


@pytest.fixture
async def http(completing: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=completing.http_url, timeout=60) as client:
        yield client


async def complete(http: httpx.AsyncClient, room: str, **position: Any) -> dict[str, Any]:
    response = await http.post(f"/api/rooms/{room}/complete", json=position)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def item(answer: dict[str, Any], label: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in answer["items"] if e["label"] == label]
    assert found, f"{label!r} not in {labels(answer)}"
    return found[0]


# -- Python (jedi) ----------------------------------------------------------------------------


async def test_stdlib_module_attribute(http: httpx.AsyncClient) -> None:
    room = await room_with(http, "python", "import os\nos.pa")
    answer = await complete(http, room, line=1, column=5)
    assert answer["provider"] == "jedi"
    assert answer["partial"] is False
    assert (answer["from"], answer["to"]) == (13, 15)  # replaces "pa"
    assert item(answer, "path")["insert_text"] == "path"
    assert item(answer, "path")["detail"] == "os"
    assert all(label.lower().startswith("pa") for label in labels(answer))


async def test_attribute_of_a_class_defined_in_the_document(http: httpx.AsyncClient) -> None:
    text = (
        "class Greeter:\n"
        "    def __init__(self, name):\n"
        "        self.greeting = 'hello ' + name\n"
        "\n"
        "    def wave(self, times=1):\n"
        "        return self.greeting * times\n"
        "\n"
        "g = Greeter('ada')\n"
        "g."
    )
    room = await room_with(http, "python", text)
    answer = await complete(http, room, offset=utf16_length(text))
    assert answer["provider"] == "jedi"
    assert item(answer, "greeting")["kind"] == "property"
    assert item(answer, "wave")["kind"] == "method"
    # Names of the document come before the dunders inherited from object.
    assert labels(answer).index("wave") < labels(answer).index("__class__")


async def test_keyword_arguments_and_document_names(http: httpx.AsyncClient) -> None:
    text = "def connect(host, port=5432, *, timeout=1.0):\n    pass\n\nconnect('db', ti"
    room = await room_with(http, "python", text)
    answer = await complete(http, room, offset=utf16_length(text))
    assert labels(answer)[0] == "timeout="
    assert "TimeoutError" in labels(answer)


async def test_non_ascii_before_the_cursor(http: httpx.AsyncClient) -> None:
    before = 'greeting = "héllo wörld 😀"\nimport os\nx = "😀"; os.'
    text = before + "pa"
    room = await room_with(http, "python", text)
    # Column in UTF-16 code units, as the browser counts: the emoji on that line counts two.
    by_line = await complete(http, room, line=2, column=utf16_length('x = "😀"; os.pa'))
    by_offset = await complete(http, room, offset=utf16_length(text))
    for answer in (by_line, by_offset):
        assert "path" in labels(answer)
        assert (answer["from"], answer["to"]) == (utf16_length(before), utf16_length(text))


async def test_path_completions_do_not_list_the_servers_files(http: httpx.AsyncClient) -> None:
    text = "open('/et"
    room = await room_with(http, "python", text)
    answer = await complete(http, room, offset=utf16_length(text))
    assert answer["items"] == []


# -- other languages (generic) ----------------------------------------------------------------


async def test_javascript_keywords_and_identifiers(http: httpx.AsyncClient) -> None:
    text = (
        "function computeTotal(items) {\n"
        "  let counter = 0;\n"
        "  for (const item of items) counter += item.price;\n"
        "  return counter;\n"
        "}\n"
        "const total = computeTotal([]);\n"
        "co"
    )
    room = await room_with(http, "javascript", text)
    answer = await complete(http, room, offset=utf16_length(text))
    assert answer["provider"] == "generic"
    assert (answer["from"], answer["to"]) == (utf16_length(text) - 2, utf16_length(text))
    assert item(answer, "const")["kind"] == "keyword"
    assert item(answer, "continue")["kind"] == "keyword"
    assert item(answer, "computeTotal")["kind"] == "function"
    assert item(answer, "counter")["kind"] == "variable"
    assert "co" not in labels(answer)  # the word being typed is not offered back


async def test_generic_ranking_prefix_then_nearness(http: httpx.AsyncClient) -> None:
    text = "let nameFar = 1;\n" + "let filler = 0;\n" * 200 + "let nameNear = 2, surname = 3;\nna"
    room = await room_with(http, "javascript", text)
    answer = await complete(http, room, offset=utf16_length(text))
    ranked = labels(answer)
    assert ranked[:2] == ["nameNear", "nameFar"]
    assert ranked.index("surname") > ranked.index("nameFar")  # substring after prefix matches


async def test_non_ascii_identifiers_in_a_generic_language(http: httpx.AsyncClient) -> None:
    text = 'const café = "😀😀";\nconst s = "😀"; ca'
    room = await room_with(http, "javascript", text)
    answer = await complete(http, room, line=1, column=utf16_length('const s = "😀"; ca'))
    assert item(answer, "café")["insert_text"] == "café"
    assert answer["from"] == utf16_length(text) - 2


EXPECTED_KEYWORD = {
    "python": ("whi", "while"),
    "javascript": ("fun", "function"),
    "typescript": ("inter", "interface"),
    "go": ("fun", "func"),
    "rust": ("imp", "impl"),
    "java": ("publ", "public"),
    "c": ("stru", "struct"),
    "cpp": ("names", "namespace"),
    "html": ("butt", "button"),
    "css": ("backg", "background-color"),
    "sql": ("sel", "select"),  # typed in lower case, offered in lower case
    "markdown": ("th", None),
    "plaintext": ("th", None),
}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_language_gets_keywords_and_identifiers(
    http: httpx.AsyncClient, language: str
) -> None:
    prefix, keyword = EXPECTED_KEYWORD[language]
    text = f"{prefix}ItemCount = 1\n{prefix}"
    room = await room_with(http, language, text)
    answer = await complete(http, room, offset=utf16_length(text))
    assert item(answer, f"{prefix}ItemCount")["kind"] != "keyword"
    if keyword is not None:
        assert item(answer, keyword)["kind"] == "keyword"
    else:
        assert all(entry["kind"] != "keyword" for entry in answer["items"])


async def test_text_name_and_empty_document(http: httpx.AsyncClient) -> None:
    room = await room_with(http, "plaintext", "")
    answer = await complete(http, room, name="notes", line=0, column=0)
    assert answer == {"from": 0, "to": 0, "items": [], "provider": "generic", "partial": False}


async def test_waits_for_the_edit_the_client_made_before_asking(
    completing: RunningServer, http: httpx.AsyncClient
) -> None:
    text = "const counter = 1;\n"
    room = await room_with(http, "javascript", text)
    async with yclient(completing.ws_url, room) as client:
        # The keystroke "co" exists on the client and its state vector counts it, but it
        # reaches the server (over the WebSocket) only after the completion request.
        typing: Doc[Any] = Doc()
        typing.apply_update(client.doc.get_update())
        typing.get("codemirror", type=Text).insert(len(text), "co")
        state_vector = base64.b64encode(typing.get_state()).decode()
        answers: list[dict[str, Any]] = []

        async def ask() -> None:
            position = {"offset": len(text) + 2, "state_vector": state_vector}
            answers.append(await complete(http, room, **position))

        loaded = completing.registry.loaded(room)
        assert loaded is not None and loaded.leases == 1  # the client's
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ask)
            # The request holds the room: its handler has it, and must wait for the edit rather
            # than answer (against the old text, "co" is past the end: 422). Not
            # `wait_all_tasks_blocked`: its 0.1 s polls can fall in step with uvicorn's 0.1 s
            # ticks in this loop, and it then never returns.
            await poll(lambda: loaded.leases == 2)
            assert answers == []
            client.doc.apply_update(typing.get_update(client.doc.get_state()))
    answer = answers[0]
    assert (answer["from"], answer["to"]) == (len(text), len(text) + 2)
    assert "counter" in labels(answer)
    assert "const" in labels(answer)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"line": 5, "column": 0}, 422, "invalid_position"),  # past the last line
        ({"line": 0, "column": 4}, 422, "invalid_position"),  # past the end of the line
        ({"offset": 99}, 422, "invalid_position"),
        ({"offset": 14}, 422, "invalid_position"),  # inside the emoji's surrogate pair
        ({"offset": -1}, 422, "invalid_body"),
        ({"line": 0, "column": -2}, 422, "invalid_body"),
        ({"offset": 1.5}, 422, "invalid_body"),
        ({"offset": "3"}, 422, "invalid_body"),
        ({"line": 1}, 422, "invalid_body"),
        ({"offset": 1, "line": 0, "column": 0}, 422, "invalid_body"),
        ({"offset": 1, "name": "meta"}, 422, "invalid_body"),
        ({"offset": 1, "name": "no/slash"}, 422, "invalid_body"),
        ({"offset": 1, "extra": True}, 422, "invalid_body"),
        ({"offset": 1, "state_vector": "not base64!"}, 422, "invalid_state_vector"),
        ({"offset": 1, "state_vector": "AQ=="}, 422, "invalid_state_vector"),  # truncated
    ],
)
async def test_bad_positions(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, error: str
) -> None:
    room = await room_with(http, "javascript", "abc\nlet x = '😀';")
    response = await http.post(f"/api/rooms/{room}/complete", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


async def test_unknown_room_and_broken_json(http: httpx.AsyncClient) -> None:
    missing = await http.post("/api/rooms/nobody-here/complete", json={"offset": 0})
    assert missing.status_code == 404
    assert missing.json()["error"] == "room_not_found"
    room = await room_with(http, "python", "x")
    broken = await http.post(f"/api/rooms/{room}/complete", content=b"{not json")
    assert broken.status_code == 400
    assert broken.json()["error"] == "invalid_json"


# -- the cursor, converted a slice at a time --------------------------------------------------


def _whole(convert: Callable[..., int], *arguments: Any) -> int | str:
    try:
        return convert(*arguments)
    except PositionError:
        return "error"


async def _sliced(text: str, at: Cursor) -> Located | str:
    try:
        return await locate(text, at)
    except PositionError:
        return "error"


@pytest.mark.parametrize(
    "text",
    ["", "abc", "abc\nlet x = '😀';", "aé😀b\nπx\n\n😀😀\n" * 3, "\n\n\nab\n", "x" * 20],
)
async def test_the_cursor_is_where_a_whole_text_conversion_puts_it(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cursor, "SLICE", 3)  # slice boundaries everywhere, surrogates included
    for offset in range(utf16_length(text) + 2):
        index = _whole(index_from_utf16, text, offset)
        expected = index if isinstance(index, str) else Located(index, offset)
        assert await _sliced(text, Cursor(offset=offset)) == expected, offset
    for line in range(text.count("\n") + 2):
        for column in range(utf16_length(text) + 2):
            index = _whole(index_from_line_column, text, line, column)
            expected = (
                index if isinstance(index, str) else Located(index, utf16_from_index(text, index))
            )
            assert await _sliced(text, Cursor(line=line, column=column)) == expected, (line, column)
