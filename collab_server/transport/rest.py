"""The REST API for rooms under /api/rooms: create, list, change, delete and recover them, read
and write their text and document. JSON in and out, validated by pydantic."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from collab_server.auth import Role
from collab_server.languages import Language
from collab_server.positions import utf16_length
from collab_server.protocol import CloseCode, ProtocolError
from collab_server.rooms.ids import MAX_ROOM_ID_CHARS, room_id_problem
from collab_server.transport.access import authenticated, permit
from collab_server.transport.errors import ApiError
from collab_server.transport.requests import (
    NO_SNIFF,
    bounded_body,
    client_address,
    json_answer,
    json_body,
    page_limit,
    room_id_for,
    room_record,
    room_record_for,
    text_name,
)
from collab_server.transport.room_urls import ROOM_PATH
from collab_server.transport.services import services
from persistence import RoomExists, RoomRecord

logger = logging.getLogger(__name__)


def _room_id(value: str) -> str:
    problem = room_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


RoomId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ROOM_ID_CHARS), AfterValidator(_room_id)
]
# A token for a few rooms reads past the others' pages: at most this many a request.
PAGES_READ_PER_REQUEST = 10


class CreateRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: RoomId | None = Field(None, description="Room id; generated when absent.")
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Display name; the id when absent."
    )
    language: Language | None = None


class ChangeRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    language: Language | None = None


class QuarantineView(BaseModel):
    reason: str  # why the stored history cannot be replayed
    since: datetime


class RoomView(BaseModel):
    id: str
    name: str
    language: str | None
    peers: int
    quarantined: QuarantineView | None  # set while the room's history cannot be replayed
    created_at: datetime
    updated_at: datetime
    size_bytes: int
    ws_url: str  # the room's WebSocket
    provider_url: str  # what `new WebsocketProvider(provider_url, id, doc)` takes
    page_url: str


class RoomList(BaseModel):
    rooms: list[RoomView]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last one."
    )


class RecoveryView(BaseModel):
    room: str
    dry_run: bool
    stored_updates: int  # the snapshot and the log rows that were replayed
    dropped: list[int]  # which of them could not be replayed (0 is the snapshot, if any)
    dropped_bytes: int


class TextWritten(BaseModel):
    room: str
    name: str
    length: int  # in UTF-16 code units, as editors count


def _base_urls(request: Request) -> tuple[str, str]:
    base = (services(request).settings.public_url or str(request.base_url)).rstrip("/")
    ws_base = "ws" + base.removeprefix("http") if base.startswith("http") else base
    return base, ws_base


def _view(request: Request, record: RoomRecord) -> RoomView:
    status = services(request).catalog.status(record.id)
    base, ws_base = _base_urls(request)
    quarantine = status.quarantine
    return RoomView(
        id=record.id,
        name=record.name,
        language=status.language if status.in_memory else record.language,
        peers=status.peers,
        quarantined=quarantine and QuarantineView(reason=quarantine.reason, since=quarantine.since),
        created_at=record.created_at,
        updated_at=record.updated_at,
        size_bytes=record.size_bytes,
        ws_url=f"{ws_base}/ws/{record.id}",
        provider_url=f"{ws_base}/ws",
        page_url=f"{base}/r/{record.id}",
    )


async def create_room(request: Request) -> Response:
    grant = authenticated(request)  # who asks comes before what is asked: 401 before 422
    try:
        body = CreateRoom.model_validate_json(await json_body(request))
    except ValidationError as error:
        raise ApiError.invalid_body(error) from error
    permit(grant, Role.EDITOR, body.id)  # a generated id needs a token for every room
    room_id = body.id or secrets.token_urlsafe(8)
    try:
        await services(request).catalog.create(
            room_id, body.name or room_id, body.language, client_address(request)
        )
    except RoomExists as error:
        raise ApiError(409, "room_exists", f"room {room_id!r} already exists") from error
    logger.info("room %s created over REST", room_id)
    return json_answer(_view(request, await room_record(request, room_id)), 201)


async def list_rooms(request: Request) -> Response:
    """A page of the rooms the token covers (all of them without access control), newest
    first: `?limit=` (1-1000, default 100) and `?cursor=` (a page's `next_cursor`)."""
    grant = authenticated(request)
    limit = page_limit(request)
    cursor = request.query_params.get("cursor") or None
    catalog = services(request).catalog
    visible: list[RoomRecord] = []
    # A token for a few rooms reads past the others, a bounded number of pages a request.
    for _ in range(PAGES_READ_PER_REQUEST):
        records = await catalog.page(limit, after=cursor)
        cursor = records[-1].id if len(records) == limit else None
        for position, record in enumerate(records):
            if grant.covers(record.id):
                visible.append(record)
                if len(visible) == limit:
                    more = position + 1 < len(records) or cursor is not None
                    cursor = record.id if more else None
                    break
        if len(visible) == limit or cursor is None:
            break
    return json_answer(
        RoomList(rooms=[_view(request, record) for record in visible], next_cursor=cursor)
    )


async def get_room(request: Request) -> Response:
    return json_answer(_view(request, await room_record_for(request, Role.VIEWER)))


async def change_room(request: Request) -> Response:
    """Rename a room, or switch its language (in the document, where every editor follows)."""
    record = await room_record_for(request, Role.EDITOR)
    try:
        body = ChangeRoom.model_validate_json(await json_body(request))
    except ValidationError as error:
        raise ApiError.invalid_body(error) from error
    catalog = services(request).catalog
    if body.name is not None and not await catalog.rename(record.id, body.name):
        raise ApiError(404, "room_not_found", f"no room {record.id!r}")
    if body.language is not None:
        await catalog.set_language(record.id, body.language, opener=client_address(request))
    return json_answer(_view(request, await room_record(request, record.id)))


async def delete_room(request: Request) -> Response:
    record = await room_record_for(request, Role.ADMIN)
    if not await services(request).catalog.delete(record.id):
        raise ApiError(404, "room_not_found", f"no room {record.id!r}")
    logger.info(
        "room %s deleted over REST (peers closed with %d)", record.id, CloseCode.ROOM_DELETED
    )
    return Response(status_code=204)


async def recover_room(request: Request) -> Response:
    """Rebuild a quarantined room from its stored history without what cannot be replayed
    (admin); `?dry_run=1` only reports what would be dropped."""
    record = await room_record_for(request, Role.ADMIN)
    dry_run = request.query_params.get("dry_run", "") in ("1", "true")
    result = await services(request).catalog.recover(record.id, dry_run=dry_run)
    view = RecoveryView(
        room=record.id,
        dry_run=dry_run,
        stored_updates=result.parts,
        dropped=result.dropped,
        dropped_bytes=result.dropped_bytes,
    )
    return json_answer(view)


async def get_text(request: Request) -> Response:
    room_id = await room_id_for(request, Role.VIEWER)
    name = text_name(request)
    async with services(request).registry.lease(
        room_id, create=False, opener=client_address(request)
    ) as room:
        # User-chosen bytes served from the page's origin: never sniffed as HTML.
        return PlainTextResponse(str(room.text(name)), headers=NO_SNIFF)


async def put_text(request: Request) -> Response:
    room_id = await room_id_for(request, Role.EDITOR)
    name = text_name(request)
    raw = await bounded_body(request)
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        raise ApiError(400, "invalid_text", "the body must be UTF-8 text") from error
    async with services(request).registry.lease(
        room_id, create=False, opener=client_address(request)
    ) as room:
        await room.replace_text(name, text)
    return json_answer(TextWritten(room=room_id, name=name, length=utf16_length(text)))


async def get_update(request: Request) -> Response:
    """The room's document as one Yjs update (v1): `Y.applyUpdate(doc, bytes)` loads it."""
    room_id = await room_id_for(request, Role.VIEWER)
    async with services(request).registry.lease(
        room_id, create=False, opener=client_address(request)
    ) as room:
        return Response(room.full_update(), media_type="application/octet-stream", headers=NO_SNIFF)


async def post_update(request: Request) -> Response:
    """Apply a Yjs update (v1) from a script or service, stored and relayed as a client's is."""
    room_id = await room_id_for(request, Role.EDITOR)
    update = await bounded_body(request)
    async with services(request).registry.lease(
        room_id, create=False, opener=client_address(request)
    ) as room:
        try:
            await room.write(update)
        except ProtocolError as error:
            raise ApiError(422, "update_rejected", error.reason) from error
    return Response(status_code=204)


routes = [
    Route("/api/rooms", create_room, methods=["POST"]),
    Route("/api/rooms", list_rooms, methods=["GET"]),
    Route(ROOM_PATH, get_room, methods=["GET"]),
    Route(ROOM_PATH, change_room, methods=["PATCH"]),
    Route(ROOM_PATH, delete_room, methods=["DELETE"]),
    Route(f"{ROOM_PATH}/recover", recover_room, methods=["POST"]),
    Route(f"{ROOM_PATH}/text", get_text, methods=["GET"]),
    Route(f"{ROOM_PATH}/text", put_text, methods=["PUT"]),
    Route(f"{ROOM_PATH}/update", get_update, methods=["GET"]),
    Route(f"{ROOM_PATH}/update", post_update, methods=["POST"]),
]
