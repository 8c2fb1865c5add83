"""`POST /api/rooms/{room}/complete`: completion items for a cursor in a room's text.

The server completes against its own copy of the document; the client sends only where the cursor
is, in the units editors count (UTF-16 code units), and gets back the range to replace in the same
units, so a CodeMirror completion source can use the answer as it is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collab_server.auth import Role
from collab_server.completion.cursor import Cursor, Located, locate
from collab_server.completion.job import Completions, ItemKind, Provider
from collab_server.completion.service import (
    Admission,
    CompletionBusy,
    CompletionError,
    CompletionRequest,
)
from collab_server.languages import DEFAULT_LANGUAGE
from collab_server.positions import PositionError, utf16_length
from collab_server.protocol import ProtocolError
from collab_server.rooms.client_state import decode_state_vector, wait_until_holds
from collab_server.rooms.ids import DEFAULT_TEXT, is_text_name
from collab_server.transport.errors import ApiError
from collab_server.transport.requests import client_address, json_body, room_id_for
from collab_server.transport.room_urls import ROOM_PATH
from collab_server.transport.services import services

logger = logging.getLogger(__name__)

Position = Annotated[int, Field(ge=0, strict=True)]


class CompleteBody(BaseModel):
    """Where the cursor is: `offset`, or `line` and `column` (0-based, UTF-16 code units)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(DEFAULT_TEXT, description="The shared text, as in /text?name=.")
    line: Position | None = None
    column: Position | None = None
    offset: Position | None = None
    state_vector: str | None = Field(
        None,
        max_length=65_536,
        description="base64 of Y.encodeStateVector(doc) when the client asked: the server first "
        "waits (within the deadline) until its copy holds all of it.",
    )

    @model_validator(mode="after")
    def _one_position(self) -> CompleteBody:
        by_line = self.line is not None or self.column is not None
        if not is_text_name(self.name):
            raise ValueError(f"{self.name!r} is not a text name")
        if self.offset is not None and by_line:
            raise ValueError("give either offset or line and column, not both")
        if self.offset is None and (self.line is None or self.column is None):
            raise ValueError("give offset, or both line and column")
        return self


class CompletionItem(BaseModel):
    label: str
    kind: ItemKind  # a CodeMirror completion type (its icon): class, function, keyword, ...
    detail: str | None
    insert_text: str


class CompletionAnswer(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")  # UTF-16 offsets into the text: the range items replace
    to: int
    items: list[CompletionItem]
    provider: Provider  # "jedi", "generic", or "none" when nothing answered in time
    partial: bool  # part of the document or of the providers was left out (deadline, size)


async def complete(request: Request) -> Response:
    deadline = time.monotonic() + services(request).settings.completion_deadline_ms / 1000
    room_id = await room_id_for(request, Role.VIEWER)
    try:
        body = CompleteBody.model_validate_json(await json_body(request))
    except ValidationError as error:
        raise ApiError.invalid_body(error) from error
    wanted = _state_vector(body.state_vector)
    counted = services(request).metrics
    try:
        # Admitted before the document is read: a refusal costs nothing document-sized.
        with services(request).completion.admitted() as admission:
            answer = await _complete(request, room_id, body, wanted, admission, deadline)
    except CompletionBusy as error:
        counted.completions["busy"] += 1
        # A completion is typed again within a second anyway; an editor may wait that long.
        raise ApiError(503, "completion_busy", str(error), {"Retry-After": "1"}) from error
    except CompletionError as error:
        counted.completions["unavailable"] += 1
        raise ApiError(503, "completion_unavailable", str(error)) from error
    counted.completions["partial" if answer.partial else "complete"] += 1
    return JSONResponse(answer.model_dump(mode="json", by_alias=True))


async def _complete(
    request: Request,
    room_id: str,
    body: CompleteBody,
    wanted: dict[int, int],
    admission: Admission,
    deadline: float,
) -> CompletionAnswer:
    registry = services(request).registry
    async with registry.lease(room_id, create=False, opener=client_address(request)) as room:
        if wanted:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await wait_until_holds(room, wanted)
            except TimeoutError as error:
                detail = "the server has not received the client's latest edits yet; retry"
                raise ApiError(409, "document_behind", detail) from error
        # One native call; a pycrdt document is read on the thread that made it, this one.
        text = str(room.text(body.name))
        language = room.language or DEFAULT_LANGUAGE
    try:
        cursor = await locate(text, Cursor(body.offset, body.line, body.column))
    except PositionError as error:
        raise ApiError(422, "invalid_position", str(error)) from error
    answer = await services(request).completion.complete(
        admission,
        CompletionRequest(text, cursor.index, language, key=f"{room_id}/{body.name}"),
        deadline,
    )
    if answer.partial:
        logger.debug("room %s: partial completion: %s", room_id, "; ".join(answer.notes))
    return _view(answer, text, cursor)


def _state_vector(encoded: str | None) -> dict[int, int]:
    if encoded is None:
        return {}
    try:
        return decode_state_vector(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ProtocolError) as error:
        raise ApiError(
            422, "invalid_state_vector", f"not a base64 Yjs state vector: {error}"
        ) from error


def _view(answer: Completions, text: str, cursor: Located) -> CompletionAnswer:
    return CompletionAnswer(
        from_=cursor.offset - utf16_length(text[answer.start : cursor.index]),
        to=cursor.offset + utf16_length(text[cursor.index : answer.end]),
        items=[
            CompletionItem(
                label=item.label, kind=item.kind, detail=item.detail, insert_text=item.insert_text
            )
            for item in answer.items
        ],
        provider=answer.provider,
        partial=answer.partial,
    )


routes = [Route(f"{ROOM_PATH}/complete", complete, methods=["POST"])]
