"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written by hand beside the routes, and kept true by tests/server/test_openapi.py: every
route of the app is documented here and every documented route exists; the route tests
check answers against these schemas.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openrooms.events import EventType, Level
from openrooms.room import RoomStatus
from openrooms_server.errors import CODES
from openrooms_server.routes import MAX_SEQ, MAX_VERSION

MAX_STREAM_SEQ: Final = 10**18 - 1
"""The largest ``after`` (or ``Last-Event-ID``) of ``GET .../logs/stream``."""

__all__ = ["OPENAPI", "openapi_route"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers of an operation: *statuses*, and those every operation but
    ``/health`` can get (401 without a key when keys are set, 429, 500, 503)."""
    what = {
        400: "The body is not JSON (invalid_json).",
        404: "No such room or workflow.",
        409: "The room's status does not allow it (room_busy, invalid_state, ...).",
        413: "The body is over the server's cap (payload_too_large, details.max_bytes).",
        415: "The body is not application/json.",
        422: "A parameter or a body field is wrong (invalid_input, invalid_workflow).",
    }
    out = {str(s): _json(_ref("Error"), what[s]) for s in statuses}
    out["401"] = _json(_ref("Error"), "No API key, or not one the server knows (unauthorized).")
    out["429"] = {
        **_json(_ref("Error"), "Too many requests for this key or room (rate_limited)."),
        "headers": _RETRY_AFTER,
    }
    out["500"] = _json(_ref("Error"), "A server fault: internal_error or corrupt_data.")
    out["503"] = _json(_ref("Error"), "A backend is unavailable (backend_unavailable).")
    return dict(sorted(out.items()))


_ROOM_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The room's id.",
    "schema": {"type": "string", "minLength": 1},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_SEARCH: Final = _query(
    "q",
    {"type": "string", "maxLength": 1000},
    "Only rooms whose id or workflow id starts with it (case-sensitive; `%`, `_` are "
    "matched literally; empty: every room).",
)


def _body(schema: dict[str, Any], required: bool = True, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"required": required, "content": {"application/json": media}}


_HELLO: Final = {
    "id": "hello",
    "description": "Set a greeting, then end.",
    "nodes": {"greet": {"type": "set", "assign": {"greeting": "hello"}}, "done": {"type": "end"}},
    "transitions": [{"from": "greet", "to": "done"}],
}
"""A workflow definition the examples use."""


_NULLABLE_INT = {"type": ["integer", "null"]}
_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(CODES)},
                    "message": {"type": "string"},
                    "details": {"type": ["object", "null"]},
                },
            }
        },
    },
    "Room": {
        "type": "object",
        "description": "A room, as `openrooms show ROOM --json` prints it.",
        "required": [
            "id",
            "name",
            "workflow",
            "status",
            "current_node",
            "variables",
            "attempt",
            "visits",
            "steps",
            "wake_at",
            "reason",
            "created_at",
            "updated_at",
            "version",
        ],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "workflow": {
                "type": "object",
                "required": ["id", "version"],
                "properties": {"id": {"type": "string"}, "version": {"type": "integer"}},
            },
            "status": {"type": "string", "enum": [s.value for s in RoomStatus]},
            "current_node": {"type": ["string", "null"]},
            "variables": {"type": "object"},
            "attempt": {"type": "integer"},
            "visits": {"type": "object", "additionalProperties": {"type": "integer"}},
            "steps": {"type": "integer"},
            "wake_at": _NULLABLE_INT,
            "reason": {"type": ["string", "null"]},
            "created_at": {"type": "integer", "description": "ms since the epoch"},
            "updated_at": {"type": "integer", "description": "ms since the epoch"},
            "version": {"type": "integer", "description": "seq of the last event folded in"},
            "memory": {"type": ["object", "null"]},
            "usage": {"type": ["object", "null"]},
            "node_seq": {"type": "integer"},
        },
    },
    "RoomStatus": {
        "type": "object",
        "required": ["id", "status", "current_node", "updated_at"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in RoomStatus]},
            "current_node": {"type": ["string", "null"]},
            "updated_at": {"type": "integer"},
        },
    },
    "Accepted": {
        "type": "object",
        "description": "The room was handed to a runner: its id and status now.",
        "required": ["id", "status"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in RoomStatus]},
        },
    },
    "Event": {
        "type": "object",
        "description": "A log event, as a line of `openrooms logs ROOM --json`.",
        "required": ["room_id", "seq", "type", "level", "timestamp", "node", "data", "error"],
        "properties": {
            "room_id": {"type": "string"},
            "seq": {"type": "integer"},
            "type": {"type": "string", "enum": [t.value for t in EventType]},
            "level": {"type": "string", "enum": [lv.value for lv in Level]},
            "timestamp": {"type": "integer"},
            "node": {"type": ["string", "null"]},
            "data": {"type": ["object", "null"]},
            "error": {
                "type": ["object", "null"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "traceback": {"type": ["string", "null"]},
                },
            },
            "duration_ms": {"type": ["number", "null"]},
        },
    },
    "StreamEvent": {
        "type": "object",
        "description": "One server-sent event: a log line (`event` message, `id` its seq, "
        "`data` the Event as JSON text), or the last one (`event` end, `data` "
        '`{"status": ...}`, no `id`).',
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": ["message", "end"]},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "data": {"type": "string"},
            "retry": {"type": "integer"},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Event")},
            "next": {
                "type": ["integer", "null"],
                "description": "`after` for the next page; null: the end of the log for now",
            },
        },
    },
    "RoomPage": {
        "type": "object",
        "required": ["items", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Room")},
            "next": {"type": ["string", "null"], "description": "`cursor` for the next page"},
        },
    },
    "RoomCounts": {
        "type": "object",
        "required": ["counts"],
        "properties": {
            "counts": {
                "type": "object",
                "description": "Status -> number of rooms; every status is present.",
                "required": [s.value for s in RoomStatus],
                "properties": {s.value: {"type": "integer", "minimum": 0} for s in RoomStatus},
                "additionalProperties": False,
            }
        },
    },
    "WorkflowSummary": {
        "type": "object",
        "description": "As `openrooms workflows --json` prints each workflow.",
        "required": [
            "id",
            "version",
            "description",
            "nodes",
            "transitions",
            "digest",
            "registered_at",
        ],
        "properties": {
            "id": {"type": "string"},
            "version": {"type": "integer"},
            "description": {"type": "string"},
            "nodes": {"type": "integer"},
            "transitions": {"type": "integer"},
            "digest": {"type": "string"},
            "registered_at": {"type": "integer"},
        },
    },
    "WorkflowDetail": {
        "allOf": [
            _ref("WorkflowSummary"),
            {
                "type": "object",
                "required": ["versions", "definition", "graph"],
                "properties": {
                    "versions": {"type": "array", "items": {"type": "integer"}},
                    "definition": {"type": "object"},
                    "graph": {"type": ["string", "null"], "description": "Mermaid stateDiagram"},
                },
            },
        ]
    },
    "WorkflowList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("WorkflowSummary")}},
    },
    "Tool": {
        "type": "object",
        "required": ["name", "description", "parameters"],
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "parameters": {"type": "object", "description": "JSON schema of the arguments"},
        },
    },
    "ToolList": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("Tool")}},
    },
    "CreateRoom": {
        "type": "object",
        "description": "Either `workflow` (+ `version`) or `definition`.",
        "additionalProperties": False,
        "properties": {
            "workflow": {"type": "string", "description": "A registered workflow's id."},
            "version": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_VERSION,
                "description": "Default: the latest.",
            },
            "definition": {"type": "object", "description": "An inline workflow definition."},
            "variables": {"type": "object"},
            "name": {"type": "string"},
        },
        "oneOf": [{"required": ["workflow"]}, {"required": ["definition"]}],
    },
    "Input": {
        "type": "object",
        "additionalProperties": False,
        "required": ["data"],
        "properties": {"data": {"description": "The input: any JSON value."}},
    },
    "Cancel": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"reason": {"type": "string"}},
    },
    "Empty": {"type": "object", "additionalProperties": False, "maxProperties": 0},
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "OpenRooms API",
        "version": "0.1.0",
        "description": "Rooms, their logs, workflows and tools. Errors: "
        + "; ".join(f"`{c}` {m}" for c, m in CODES.items()),
    },
    "paths": {
        "/api/rooms": {
            "get": {
                "operationId": "listRooms",
                "summary": "List rooms, newest first.",
                "parameters": [
                    _query(
                        "status",
                        {"type": "string", "enum": [s.value for s in RoomStatus]},
                        "Only rooms with this status.",
                    ),
                    _query("workflow", {"type": "string"}, "Only rooms of this workflow id."),
                    _SEARCH,
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                        "Page size.",
                    ),
                    _query("cursor", {"type": "string"}, "`next` of the previous page."),
                ],
                "responses": {"200": _json(_ref("RoomPage"), "A page of rooms."), **_errors(422)},
            },
            "post": {
                "operationId": "createRoom",
                "summary": "Create a room; `?run=true` also starts it.",
                "parameters": [
                    _query("run", {"type": "boolean", "default": False}, "Start it too.")
                ],
                "requestBody": _body(
                    _ref("CreateRoom"), example={"definition": _HELLO, "name": "first"}
                ),
                "responses": {
                    "201": _json(_ref("Room"), "The room."),
                    **_errors(400, 404, 409, 413, 415, 422),
                },
            },
        },
        "/api/room-counts": {
            "get": {
                "operationId": "countRooms",
                "summary": "Count rooms by status, exactly.",
                "description": "Every status is a key (0 when no room has it).",
                "parameters": [
                    _query("workflow", {"type": "string"}, "Only rooms of this workflow id."),
                    _SEARCH,
                ],
                "responses": {
                    "200": _json(_ref("RoomCounts"), "Rooms per status."),
                    **_errors(422),
                },
            },
        },
        "/api/rooms/{id}": {
            "get": {
                "operationId": "getRoom",
                "summary": "A room.",
                "parameters": [_ROOM_ID],
                "responses": {"200": _json(_ref("Room"), "The room."), **_errors(404)},
            }
        },
        "/api/rooms/{id}/status": {
            "get": {
                "operationId": "getRoomStatus",
                "summary": "A room's status.",
                "parameters": [_ROOM_ID],
                "responses": {"200": _json(_ref("RoomStatus"), "Its status."), **_errors(404)},
            }
        },
        "/api/rooms/{id}/logs": {
            "get": {
                "operationId": "getRoomLogs",
                "summary": "A page of a room's log.",
                "parameters": [
                    _ROOM_ID,
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "default": 0},
                        "Events with a greater seq.",
                    ),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        "Page size.",
                    ),
                    _query(
                        "level",
                        {"type": "string", "enum": [lv.value for lv in Level]},
                        "This level or above.",
                    ),
                    {
                        **_query(
                            "type",
                            {
                                "type": "array",
                                "items": {"type": "string", "enum": [t.value for t in EventType]},
                            },
                            "Only these event types (repeatable).",
                        ),
                        "style": "form",
                        "explode": True,
                    },
                ],
                "responses": {"200": _json(_ref("EventPage"), "Events."), **_errors(404, 422)},
            }
        },
        "/api/rooms/{id}/run": {
            "post": {
                "operationId": "runRoom",
                "summary": "Start a created room. A running or queued room: 409 room_busy.",
                "parameters": [_ROOM_ID],
                "requestBody": _body(_ref("Empty"), required=False),
                "responses": {
                    "202": _json(_ref("Accepted"), "Started."),
                    **_errors(400, 404, 409, 413, 415, 422),
                },
            }
        },
        "/api/rooms/{id}/input": {
            "post": {
                "operationId": "sendInput",
                "summary": "Answer a waiting room; it runs on.",
                "parameters": [
                    _ROOM_ID,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "A repeat with this key and input gets the first answer.",
                    },
                ],
                "requestBody": _body(_ref("Input"), example={"data": {"approved": True}}),
                "responses": {
                    "202": _json(_ref("Accepted"), "Recorded; running on."),
                    **_errors(400, 404, 409, 413, 415, 422),
                },
            }
        },
        "/api/rooms/{id}/cancel": {
            "post": {
                "operationId": "cancelRoom",
                "summary": "Cancel an unfinished room.",
                "parameters": [_ROOM_ID],
                "requestBody": _body(_ref("Cancel"), required=False),
                "responses": {
                    "200": _json(_ref("Room"), "The cancelled room."),
                    **_errors(400, 404, 409, 413, 415, 422),
                },
            }
        },
        "/api/rooms/{id}/resume": {
            "post": {
                "operationId": "resumeRoom",
                "summary": "Go on with an unfinished room no live runner holds.",
                "parameters": [_ROOM_ID],
                "requestBody": _body(_ref("Empty"), required=False),
                "responses": {
                    "202": _json(_ref("Accepted"), "Resumed."),
                    **_errors(400, 404, 409, 413, 415, 422),
                },
            }
        },
        "/api/workflows": {
            "get": {
                "operationId": "listWorkflows",
                "summary": "The latest version of each workflow.",
                "responses": {"200": _json(_ref("WorkflowList"), "Workflows."), **_errors()},
            },
            "post": {
                "operationId": "registerWorkflow",
                "summary": "Register a workflow definition (JSON or YAML).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "object"}, "example": _HELLO},
                        "application/yaml": {"schema": {"type": "string"}},
                    },
                },
                "responses": {
                    "200": _json(_ref("WorkflowSummary"), "Identical content was registered."),
                    "201": _json(_ref("WorkflowSummary"), "Registered."),
                    **_errors(400, 409, 413, 415, 422),
                },
            },
        },
        "/api/workflows/{id}": {
            "get": {
                "operationId": "getWorkflow",
                "summary": "A workflow version, its versions and its graph.",
                "parameters": [
                    {**_ROOM_ID, "description": "The workflow's id."},
                    _query(
                        "version",
                        {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                        "Default: the latest.",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("WorkflowDetail"), "The workflow."),
                    **_errors(404, 422),
                },
            }
        },
        "/api/tools": {
            "get": {
                "operationId": "listTools",
                "summary": "The tools workflows can call.",
                "responses": {"200": _json(_ref("ToolList"), "Tools."), **_errors()},
            }
        },
        "/api/rooms/{id}/logs/stream": {
            "get": {
                "operationId": "streamRoomLogs",
                "summary": "The room's log as server-sent events, until the room ends.",
                "description": "One event per log line: `id:` its sequence number, `data:` "
                "the event (as in `GET /api/rooms/{id}/logs`). Resumes after the "
                "`Last-Event-ID` header (or `?after=`); comment lines keep it alive; an "
                "`end` event with the room's status closes it.",
                "parameters": [
                    _ROOM_ID,
                    _query(
                        "after",
                        {"type": "integer", "minimum": 0, "maximum": MAX_STREAM_SEQ},
                        "Start after this seq.",
                    ),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "description": "Resume after this seq (what a reconnecting "
                        "EventSource sends); wins over `after`.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The stream: each event as the schema says (as in "
                        "OpenAPI before 3.2, the schema describes one event of the stream).",
                        "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
                    },
                    **_errors(404, 422),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "getHealth",
                "summary": "Each backend checked (no key needed).",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}, "Every backend answered."),
                    "503": _json(
                        _ref("Error"),
                        "A backend is down: `status`, `checks` and "
                        "`error` (backend_unavailable, details.checks).",
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus metrics (text exposition format).",
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenAPI",
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(),
                },
            }
        },
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "A key of OPENROOMS_API_KEYS (`Authorization: Bearer KEY`); "
                "needed on every route but /health when the server has keys.",
            }
        },
    },
    "security": [{"apiKey": []}],
}
"""The document, as served."""


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def openapi_route() -> Route:
    """``GET /openapi.json``."""
    return Route("/openapi.json", openapi, methods=["GET"])
