"""HTTP errors as JSON bodies: {"error": code, "detail": ...}, for every failure of the API."""

from __future__ import annotations

import logging
import math

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collab_server.rooms.openings import RoomsBusy
from collab_server.rooms.quarantine import RoomQuarantined
from collab_server.rooms.room import RoomDeleted
from persistence import RoomMissing, StoreError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error answer: status, a short machine-readable code, and a detail for humans."""

    def __init__(
        self, status: int, code: str, detail: object, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers

    @classmethod
    def invalid_body(cls, error: ValidationError) -> ApiError:
        details = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
        if any(item["type"] == "json_invalid" for item in details):
            return cls(400, "invalid_json", details)
        return cls(422, "invalid_body", details)


def _error(
    status: int, code: str, detail: object, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    if error.status in (401, 403):
        logger.info("%s %s: %d %s", request.method, request.url.path, error.status, error.detail)
    return _error(error.status, error.code, error.detail, error.headers)


async def http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return _error(error.status_code, code, error.detail)


async def room_deleted(request: Request, error: Exception) -> Response:
    return _error(404, "room_not_found", "the room was deleted")


async def room_missing(request: Request, error: Exception) -> Response:
    return _error(404, "room_not_found", str(error))


async def room_quarantined(request: Request, error: Exception) -> Response:
    assert isinstance(error, RoomQuarantined)
    return _error(
        423,
        "room_quarantined",
        f"the room's stored history cannot be replayed ({error.record.reason}); "
        "an admin can recover it with POST /api/rooms/{room}/recover",
    )


async def rooms_busy(request: Request, error: Exception) -> Response:
    assert isinstance(error, RoomsBusy)
    status, code = (429, "too_many_rooms") if error.per_client else (503, "rooms_full")
    return _error(status, code, error.reason, {"Retry-After": str(math.ceil(error.retry_after))})


async def store_error(request: Request, error: Exception) -> Response:
    logger.warning("%s %s: store unavailable: %s", request.method, request.url.path, error)
    return _error(503, "store_unavailable", "storage is unavailable, retry later")


async def internal_error(request: Request, error: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error(500, "internal_error", "internal server error")


exception_handlers = {
    ApiError: api_error,
    HTTPException: http_error,
    RoomDeleted: room_deleted,
    RoomMissing: room_missing,  # deleted while the request was under way
    RoomQuarantined: room_quarantined,
    RoomsBusy: rooms_busy,
    StoreError: store_error,
    Exception: internal_error,
}
