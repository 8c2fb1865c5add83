"""The REST API for a room's history under /api/rooms/{room}/versions: save a version, list and
read them, compare two (or one with the room now), restore one, delete one; and who wrote each
line (`/blame`, now or in a version). Viewers read, compare and blame; editors save and restore;
admins delete."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from collab_server.auth import Role
from collab_server.rooms.blame import BlameRun, TextTooLarge
from collab_server.rooms.history import CURRENT, TooManyVersions, VersionMissing
from collab_server.transport.errors import ApiError
from collab_server.transport.requests import (
    NO_SNIFF,
    client_address,
    json_answer,
    json_body,
    page_limit,
    room_id_for,
    text_name,
)
from collab_server.transport.room_urls import ROOM_PATH
from collab_server.transport.services import services
from persistence import Author, VersionRecord

logger = logging.getLogger(__name__)

VERSIONS_PATH = ROOM_PATH + "/versions"
VERSION_PATH = VERSIONS_PATH + "/{version}"
MAX_VERSION_ID = 2**63 - 1  # ids are 64-bit integers in every store


class SaveVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="A name for the version; none for an unnamed one."
    )


class VersionView(BaseModel):
    id: int
    room: str
    created_at: datetime
    label: str | None
    automatic: bool  # a checkpoint the server made, not one someone saved
    authors: list[str]  # who edited since the version before ("server": REST and restores)
    size_bytes: int


class VersionList(BaseModel):
    versions: list[VersionView]
    next_cursor: int | None = Field(
        description="Pass as `cursor` for the next page; null on the last one."
    )


class Restored(BaseModel):
    before: VersionView  # the room just before the restore, saved so it can be undone
    after: VersionView  # the room once restored


class AuthorView(BaseModel):
    name: str  # from their token, or as their editor announced it (`self_declared`)
    user: str | None  # their token's `sub`
    self_declared: bool


class BlameRunView(BaseModel):
    from_line: int  # 1-based
    to_line: int  # inclusive
    author: str | None  # null: written before the server recorded authorship
    user: str | None
    self_declared: bool
    time: datetime | None  # when the newest text of these lines was written


class BlameView(BaseModel):
    room: str
    version: int | None  # null: the room now
    line_count: int
    authors: list[AuthorView]  # everyone in `runs`, in order of first appearance
    runs: list[BlameRunView]


def _blame_view(room_id: str, version: int | None, runs: list[BlameRun], lines: int) -> BlameView:
    authors: dict[Author, None] = dict.fromkeys(run.author for run in runs if run.author)
    return BlameView(
        room=room_id,
        version=version,
        line_count=lines,
        authors=[
            AuthorView(name=a.name, user=a.user, self_declared=a.self_declared) for a in authors
        ],
        runs=[
            BlameRunView(
                from_line=run.from_line,
                to_line=run.to_line,
                author=run.author.name if run.author else None,
                user=run.author.user if run.author else None,
                self_declared=run.author.self_declared if run.author else False,
                time=run.time,
            )
            for run in runs
        ],
    )


def _view(record: VersionRecord) -> VersionView:
    return VersionView(
        id=record.id,
        room=record.room_id,
        created_at=record.created_at,
        label=record.label,
        automatic=record.automatic,
        authors=list(record.authors),
        size_bytes=record.size_bytes,
    )


def _parsed_id(raw: str) -> int | None:
    """A version id written in ASCII digits within what the stores hold (64-bit), else None:
    `int()` of `"²"` or of 5,000 digits raises, and SQLite and asyncpg fail on ids past 2**63."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_VERSION_ID:
        return int(raw)
    return None


def _version_id(request: Request) -> int:
    """The path's version id, or 404."""
    raw: str = request.path_params["version"]
    version_id = _parsed_id(raw)
    if version_id is None:
        raise ApiError(404, "version_not_found", f"no version {raw[:40]!r}")
    return version_id


def _not_found(error: VersionMissing) -> ApiError:
    return ApiError(404, "version_not_found", str(error))


async def save_version(request: Request) -> Response:
    room_id = await room_id_for(request, Role.EDITOR)
    raw = await json_body(request)
    try:
        body = SaveVersion.model_validate_json(raw) if raw.strip() else SaveVersion()
    except ValidationError as error:
        raise ApiError.invalid_body(error) from error
    try:
        saved = await services(request).history.save(
            room_id, label=body.label, opener=client_address(request)
        )
    except TooManyVersions as error:
        raise ApiError(409, "too_many_versions", str(error)) from error
    logger.info("room %s: version %d saved over REST", room_id, saved.id)
    return json_answer(_view(saved), 201)


async def list_versions(request: Request) -> Response:
    """A page of the room's versions, newest first: `?limit=` and `?cursor=` (`next_cursor`)."""
    room_id = await room_id_for(request, Role.VIEWER)
    limit = page_limit(request)
    cursor = request.query_params.get("cursor")
    before = None if cursor is None else _parsed_id(cursor)
    if cursor is not None and before is None:
        raise ApiError(422, "invalid_cursor", "cursor must be a version id")
    found = await services(request).history.page(room_id, limit, before)
    next_cursor = found[-1].id if len(found) == limit else None
    return json_answer(VersionList(versions=[_view(v) for v in found], next_cursor=next_cursor))


async def get_version(request: Request) -> Response:
    room_id = await room_id_for(request, Role.VIEWER)
    try:
        found = await services(request).history.get(room_id, _version_id(request))
    except VersionMissing as error:
        raise _not_found(error) from error
    return json_answer(_view(found))


async def get_version_text(request: Request) -> Response:
    room_id = await room_id_for(request, Role.VIEWER)
    name = text_name(request)
    history = services(request).history
    try:
        text = await history.text(room_id, _version_id(request), name, client_address(request))
    except VersionMissing as error:
        raise _not_found(error) from error
    return PlainTextResponse(text, headers=NO_SNIFF)


async def get_version_update(request: Request) -> Response:
    """The document then as one Yjs update (v1), as `GET …/update` gives it now."""
    room_id = await room_id_for(request, Role.VIEWER)
    try:
        state = await services(request).history.state(room_id, _version_id(request))
    except VersionMissing as error:
        raise _not_found(error) from error
    return Response(state, media_type="application/octet-stream", headers=NO_SNIFF)


async def diff_versions(request: Request) -> Response:
    """A unified diff of a text from version `old` to version `new` (either may be `current`)."""
    room_id = await room_id_for(request, Role.VIEWER)
    name = text_name(request)
    ends = [_version_or_current(request.path_params[part]) for part in ("old", "new")]
    try:
        diff = await services(request).history.diff(
            room_id, ends[0], ends[1], name, client_address(request)
        )
    except VersionMissing as error:
        raise _not_found(error) from error
    except TextTooLarge as error:
        raise ApiError(413, "diff_too_large", str(error)) from error
    return PlainTextResponse(diff, headers=NO_SNIFF)


def _version_or_current(raw: str) -> int | str:
    version_id = CURRENT if raw == CURRENT else _parsed_id(raw)
    if version_id is None:
        raise ApiError(
            404, "version_not_found", f"{raw[:40]!r} is neither a version id nor current"
        )
    return version_id


async def restore_version(request: Request) -> Response:
    """Make the room's text (`?name=`) and language what they were in the version: an ordinary
    edit every client follows, with the state before it saved as a version."""
    room_id = await room_id_for(request, Role.EDITOR)
    name = text_name(request)
    version_id = _version_id(request)
    try:
        before, after = await services(request).history.restore(
            room_id, version_id, [name], opener=client_address(request)
        )
    except VersionMissing as error:
        raise _not_found(error) from error
    logger.info("room %s: version %d restored over REST", room_id, version_id)
    return json_answer(Restored(before=_view(before), after=_view(after)))


async def blame_now(request: Request) -> Response:
    """Who wrote each line of the room's text (`?name=`) as it is now."""
    return await _blame(request, CURRENT)


async def blame_version(request: Request) -> Response:
    """Who wrote each line of the text (`?name=`) in a version."""
    return await _blame(request, _version_id(request))


async def _blame(request: Request, version: int | str) -> Response:
    room_id = await room_id_for(request, Role.VIEWER)
    name = text_name(request)
    history = services(request).history
    try:
        runs, lines = await history.blame(room_id, version, name, client_address(request))
    except VersionMissing as error:
        raise _not_found(error) from error
    except TextTooLarge as error:
        raise ApiError(413, "text_too_large", str(error)) from error
    number = version if isinstance(version, int) else None
    return json_answer(_blame_view(room_id, number, runs, lines))


async def delete_version(request: Request) -> Response:
    room_id = await room_id_for(request, Role.ADMIN)
    try:
        await services(request).history.delete(room_id, _version_id(request))
    except VersionMissing as error:
        raise _not_found(error) from error
    return Response(status_code=204)


routes = [
    Route(VERSIONS_PATH, save_version, methods=["POST"]),
    Route(VERSIONS_PATH, list_versions, methods=["GET"]),
    Route(VERSION_PATH, get_version, methods=["GET"]),
    Route(VERSION_PATH, delete_version, methods=["DELETE"]),
    Route(VERSION_PATH + "/text", get_version_text, methods=["GET"]),
    Route(VERSION_PATH + "/update", get_version_update, methods=["GET"]),
    Route(VERSION_PATH + "/restore", restore_version, methods=["POST"]),
    Route(VERSIONS_PATH + "/{old}/diff/{new}", diff_versions, methods=["GET"]),
    Route(VERSION_PATH + "/blame", blame_version, methods=["GET"]),
    Route(ROOM_PATH + "/blame", blame_now, methods=["GET"]),
]
