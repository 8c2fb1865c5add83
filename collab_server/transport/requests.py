"""What the HTTP routes read from a request and how they answer: the room it names (checked
against the token), its body within a size limit, who sent it, a page limit, a text name; JSON
answers, and the header that keeps user text from being sniffed as HTML."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from collab_server.auth import Role
from collab_server.rooms.ids import DEFAULT_TEXT, is_text_name
from collab_server.transport.access import require
from collab_server.transport.errors import ApiError
from collab_server.transport.services import services
from persistence import RoomRecord

JSON_BODY_BYTES = 256 * 1024  # room bodies and completion requests (state vector included)
# Lists come a page at a time: 18,000 rooms in one answer were 7.3 MB and 2 s of the event loop,
# and the lobby asked every 3 s.
DEFAULT_PAGE = 100
MAX_PAGE = 1000
# User-chosen bytes served from the page's origin: never sniffed as HTML.
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}


async def room_record_for(request: Request, role: Role) -> RoomRecord:
    """The room the path names, if the token gives `role` on it (else 401/403); 404 if it was
    never created nor joined, or was deleted."""
    room_id = request.path_params["room"]
    require(request, role, room_id)
    return await room_record(request, room_id)


async def room_id_for(request: Request, role: Role) -> str:
    """The room the path names, checked as `room_record_for` does, for routes that need only its
    document. A room in memory needs no store lookup, so its text, document and completions stay
    served while a PostgreSQL store is unreachable."""
    room_id: str = request.path_params["room"]
    require(request, role, room_id)
    if services(request).registry.loaded(room_id) is None:
        await room_record(request, room_id)
    return room_id


async def room_record(request: Request, room_id: str) -> RoomRecord:
    """The stored room `room_id`, or an `ApiError` 404."""
    record = await services(request).catalog.record(room_id)
    if record is None:
        raise ApiError(404, "room_not_found", f"no room {room_id!r}")
    return record


def client_address(request: Request) -> str | None:
    """Who opens rooms, for their rate (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else None


async def json_body(request: Request) -> bytes:
    """A JSON request's body, or 413 past `JSON_BODY_BYTES`."""
    return await bounded_body(request, JSON_BODY_BYTES)


async def bounded_body(request: Request, limit: int | None = None) -> bytes:
    """The request body, or 413 past `limit` (default: the WebSocket message limit, which REST
    writes of text and updates share), found before more than the limit is held in memory."""
    if limit is None:
        limit = services(request).settings.max_message_bytes
    too_large = ApiError(413, "too_large", f"body larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def page_limit(request: Request) -> int:
    """`?limit=` (1-`MAX_PAGE`, default `DEFAULT_PAGE`), or 422."""
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(422, "invalid_limit", f"limit must be 1-{MAX_PAGE}")
    return int(raw)


def text_name(request: Request) -> str:
    """`?name=`, the shared text a route reads or writes (default y-codemirror.next's), or 422."""
    name = request.query_params.get("name", DEFAULT_TEXT)
    if not is_text_name(name):
        raise ApiError(422, "invalid_text_name", f"{name!r} is not a text name")
    return name


def json_answer(model: BaseModel, status_code: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status_code)
