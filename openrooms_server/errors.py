"""Every error the API answers, as one JSON shape with a stable code.

Every 4xx and 5xx body is ``{"error": {"code": "...", "message": "...", "details": ...}}``.
``code`` is stable (clients branch on it); ``message`` is for people; ``details`` is an
object or null (the problems of an invalid workflow with their paths, the status of a busy
room). A 5xx never carries a traceback, SQL or a URL: its message is generic and its details
hold a ``correlation_id``, logged with the exception on the server (logger
``openrooms_server``).

OpenRooms' typed errors map to codes in one table, :data:`ERROR_TABLE`, searched in order
(the first class the error is an instance of wins, so subclasses come first).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from openrooms.errors import (
    BackendUnavailableError,
    CorruptDataError,
    DatabaseNotFoundError,
    EvaluationError,
    ExpressionError,
    InputError,
    NodeTypeNotFoundError,
    OpenRoomsError,
    Problem,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    RoomStatusError,
    SchemaValidationError,
    StaleRoomError,
    ToolNotFoundError,
    UnsafeTemplateError,
    UnstorableValueError,
    VariableSyntaxError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowValidationError,
)

__all__ = [
    "CODES",
    "ERROR_TABLE",
    "ApiError",
    "InsecureBindError",
    "error_response",
    "handle_error",
    "problems",
]

logger = logging.getLogger("openrooms_server")

CODES: Final[Mapping[str, str]] = {
    "invalid_json": "400: the body is not JSON (or not UTF-8, or has duplicate keys, NaN or "
    "Infinity, an integer of over 1,000 digits), or nests deeper than 100 levels",
    "invalid_request": "400: the request is malformed (a Content-Length that is not a number)",
    "unauthorized": "401: no API key, or not one the server knows (Authorization: Bearer KEY)",
    "csrf_failed": "403: a request authenticated by the dashboard's session cookie lacks its "
    "CSRF token (X-OpenRooms-CSRF), or a login was posted from another site",
    "not_found": "404: no such room, workflow or route",
    "method_not_allowed": "405: the route does not take this method",
    "room_busy": "409: the room is running or queued (details.status), or a live runner "
    "holds its lease (details.lease_expires_at, ms)",
    "invalid_state": "409: the room's status does not allow this (details.status)",
    "workflow_conflict": "409: other content is registered under this workflow id and version",
    "room_exists": "409: a room with this id exists",
    "stale_room": "409: the room changed while the request was answered; try again",
    "idempotency_conflict": "409: this Idempotency-Key was used with another request",
    "payload_too_large": "413: the body is larger than the server takes (details.max_bytes)",
    "unsupported_media_type": "415: the body's Content-Type is not one the route reads",
    "invalid_workflow": "422: a workflow definition is invalid (details.problems, with paths)",
    "invalid_input": "422: a parameter or a body field is wrong (details.problems, with paths)",
    "rate_limited": "429: too many requests for this key or room (Retry-After, seconds)",
    "internal_error": "500: a bug or a misconfiguration (details.correlation_id)",
    "corrupt_data": "500: stored data does not decode (details.correlation_id)",
    "backend_unavailable": "503: a store or the job queue cannot be reached (retry later)",
}
"""Every code this module answers, with its status and meaning (docs/server.md lists them)."""


class InsecureBindError(OpenRoomsError, ValueError):
    """The server was asked to listen on a non-loopback address without API keys."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host

    def __str__(self) -> str:
        return (
            f"refusing to serve on {self.host!r} without API keys: anyone who can reach it "
            "could run rooms. Set OPENROOMS_API_KEYS (comma-separated keys), serve on "
            "127.0.0.1, or pass --insecure if something in front of it authenticates"
        )


class ApiError(Exception):
    """An error answered as it is: *status*, *code* (a key of :data:`CODES`), *message*."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(status, code, message, details)
        assert code in CODES, code
        self.status, self.code, self.message, self.details = status, code, message, details

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def problems(found: Sequence[Problem]) -> list[dict[str, str]]:
    """Problems as JSON: ``[{"path", "message", "hint"}]``."""
    return [{"path": p.path, "message": p.message, "hint": p.hint} for p in found]


def _details(exc: OpenRoomsError) -> Any:
    if isinstance(exc, WorkflowValidationError | SchemaValidationError):
        return {"problems": problems(exc.problems)}
    if isinstance(exc, RoomStatusError):
        return {"status": exc.status}
    if isinstance(exc, RoomLeasedError):
        return {"lease_expires_at": exc.expires_at_ms}
    if isinstance(exc, InputError):
        return {"problems": [{"path": exc.where, "message": exc.message, "hint": exc.hint}]}
    if isinstance(exc, UnstorableValueError):
        return {"problems": [{"path": exc.path, "message": exc.problem, "hint": ""}]}
    return None


def _message(exc: OpenRoomsError) -> str:
    """*exc*'s message for a client: without where the store keeps its data."""
    if isinstance(exc, RoomNotFoundError):
        return str(RoomNotFoundError(exc.room_id))
    return str(exc)


ERROR_TABLE: Final[tuple[tuple[type[OpenRoomsError], int, str], ...]] = (
    (WorkflowValidationError, 422, "invalid_workflow"),
    (NodeTypeNotFoundError, 422, "invalid_workflow"),
    (ToolNotFoundError, 422, "invalid_workflow"),
    (UnsafeTemplateError, 422, "invalid_workflow"),
    (ExpressionError, 422, "invalid_workflow"),
    (SchemaValidationError, 422, "invalid_input"),
    (VariableSyntaxError, 422, "invalid_input"),
    (UnstorableValueError, 422, "invalid_input"),
    (EvaluationError, 422, "invalid_input"),
    (InputError, 422, "invalid_input"),
    (RoomNotFoundError, 404, "not_found"),
    (WorkflowNotFoundError, 404, "not_found"),
    (WorkflowConflictError, 409, "workflow_conflict"),
    (RoomExistsError, 409, "room_exists"),
    (RoomStatusError, 409, "invalid_state"),
    (RoomLeasedError, 409, "room_busy"),
    (StaleRoomError, 409, "stale_room"),  # LeaseLostError too: the room moved on meanwhile
    (DatabaseNotFoundError, 503, "backend_unavailable"),
    (BackendUnavailableError, 503, "backend_unavailable"),
    (CorruptDataError, 500, "corrupt_data"),
)
"""OpenRooms' typed errors -> (HTTP status, code); the first matching class wins. Any other
error (an :class:`OpenRoomsError` not listed, or a bug) is a 500 ``internal_error``."""

_GENERIC: Final[Mapping[str, str]] = {
    "internal_error": "the server failed to answer this request",
    "corrupt_data": "stored data does not decode; an operator can run `openrooms db check`",
    "backend_unavailable": "a backend (the database or the job queue) is unavailable; "
    "try again later",
}


MAX_MESSAGE: Final = 1_000
"""The longest ``message`` an error carries: one that quotes a huge value the client sent
(a 900 kB workflow id) is clipped, so an answer never echoes a body back."""


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    """*message*, cut to *limit* characters (ending in ``...``) when longer."""
    return message if len(message) <= limit else message[: limit - 3] + "..."


def error_response(
    status: int, code: str, message: str, details: Any = None, *, headers: Mapping[str, str] = {}
) -> JSONResponse:
    """The error body every 4xx/5xx carries (its message clipped: :func:`clip`)."""
    body = {"error": {"code": code, "message": clip(message), "details": details}}
    return JSONResponse(body, status_code=status, headers=dict(headers))


def _correlation_id(request: Request) -> str:
    """The request's correlation id: one a middleware set (``request.state.correlation_id``)
    or the ``X-Request-ID`` header, else a new one."""
    given = getattr(request.state, "correlation_id", None)
    if isinstance(given, str) and given:
        return given
    header = request.headers.get("x-request-id", "")
    if header and len(header) <= 128 and header.isprintable():
        return header
    return uuid.uuid4().hex


def to_status(exc: BaseException) -> tuple[int, str]:
    """The status and code *exc* is answered with."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code
    for cls, status, code in ERROR_TABLE:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


_HTTP_CODES: Final[Mapping[int, str]] = {
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: any exception -> the error shape (see module docstring)."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, HTTPException):
        found = _HTTP_CODES.get(exc.status_code)
        if found is not None:
            message = "no such route" if exc.status_code == 404 else str(exc.detail)
            return error_response(exc.status_code, found, message, headers=exc.headers or {})
        exc = RuntimeError(f"HTTPException {exc.status_code}: {exc.detail}")
    status, code = to_status(exc)
    if status < 500:
        assert isinstance(exc, OpenRoomsError)
        return error_response(status, code, _message(exc), _details(exc))
    cid = _correlation_id(request)
    logger.error(
        "%s %s failed (%s, correlation id %s)",
        request.method,
        request.url.path,
        code,
        cid,
        exc_info=exc,
    )
    return error_response(
        status,
        code,
        f"{_GENERIC[code]} (correlation id {cid})",
        {"correlation_id": cid},
        headers={"X-Correlation-ID": cid},
    )
