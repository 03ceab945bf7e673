"""The ``/api`` routes: one endpoint function per operation, each a thin layer over
:class:`~openrooms.runtime.Runtime`.

Shapes are those of the CLI's ``--json``: a room is :func:`openrooms.serde.room_to_dict`
(``openrooms show ROOM --json``), an event :func:`openrooms.serde.event_to_dict` (a line of
``openrooms logs ROOM --json``), a workflow summary and a tool what ``openrooms workflows
--json`` and ``openrooms tools --json`` print.

**Store calls never block the event loop.** Every one goes through the runtime's store IO
(:attr:`Runtime.store_io <openrooms.runtime.Runtime.store_io>`), the same path the runner's
own calls take, rather than Starlette's thread pool:

- reads (:func:`_read`) use ``store_io.call``: inline for a store that never blocks
  (memory), tried without waiting for SQLite (a read costs less than a thread hop) and
  handed to the IO thread only when it would wait, always on the IO thread for a network
  store (Postgres, Redis);
- writes (:func:`_write`) use ``store_io.off_loop``: always on the runtime's IO thread. A
  write here is several store calls (a lease, a commit, its release); a try-without-waiting
  that gave up halfway would leave a lease behind, and the one IO thread keeps them in order
  with the runner's own calls.

The job queue (Redis, not a store) is called on Starlette's thread pool
(``run_in_threadpool``), as is CPU-heavy work (building a large workflow definition).
Bad input is refused before anything is written: a request that gets a 4xx leaves the
rooms, their logs and the workflows as they were.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openrooms import loading, serde
from openrooms.backends.base import StoredWorkflow
from openrooms.errors import (
    BackendUnavailableError,
    CorruptRoomError,
    InputError,
    Problem,
    RoomStatusError,
    WorkflowNotFoundError,
    WorkflowValidationError,
)
from openrooms.events import EventType, Level
from openrooms.graph import render_graph
from openrooms.inputs import check_inputs
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import Workflow
from openrooms_server.app import Executor
from openrooms_server.errors import ApiError, problems

__all__ = ["api_routes", "deliver_input", "resume", "start_created"]

logger = logging.getLogger("openrooms_server")

T = TypeVar("T")

MAX_PAGE: Final = 1000
"""The largest ``limit`` a list route takes."""
MAX_VERSION: Final = 2**31 - 1
"""The largest workflow version a route takes (a store keeps versions as 64-bit integers)."""
MAX_SEQ: Final = 2**63 - 1
"""The largest sequence number ``after`` takes."""
IDEMPOTENCY_KEYS: Final = 10_000
"""How many ``Idempotency-Key`` answers the server remembers (the oldest are forgotten)."""
YAML_TYPES: Final = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
WORKFLOW_VERSIONS_SHOWN: Final = 100


# --- plumbing ---------------------------------------------------------------------------------


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


async def _read(rt: Runtime, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """A read, through the runtime's store IO (see the module docstring)."""
    return await rt.store_io.call(fn, *args, **kwargs)


async def _write(rt: Runtime, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """A write, on the runtime's IO thread (see the module docstring)."""
    return await rt.store_io.off_loop(fn, *args, **kwargs)


def _invalid(path: str, message: str, hint: str = "") -> ApiError:
    return ApiError(
        422,
        "invalid_input",
        f"{path}: {message}",
        {"problems": problems([Problem(path, message, hint)])},
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _text(request: Request) -> str:
    raw = await request.body()
    try:
        return loading.decode(raw, source="the request body")
    except InputError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None


def _parse_json(text: str) -> Any:
    try:
        return loading.parse_json(text, source="the request body")
    except InputError as exc:
        details = {"problems": [{"path": exc.where, "message": exc.message, "hint": exc.hint}]}
        raise ApiError(400, "invalid_json", str(exc), details) from None


async def _json_object(
    request: Request, allowed: frozenset[str], *, optional: bool = False
) -> dict[str, Any]:
    """The body as a JSON object with only *allowed* keys (empty and *optional*: ``{}``).

    Raises:
        ApiError: 415 not ``application/json``; 400 not JSON; 422 not an object, or a key
            that is not allowed.
    """
    raw = await request.body()
    if not raw.strip():
        if optional:
            return {}
        raise _invalid("body", "a JSON object is required")
    media = _media_type(request)
    if not _is_json(media):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"this route reads application/json, not {media or 'a body without a Content-Type'}",
        )
    body = _parse_json(await _text(request))
    if not isinstance(body, dict):
        raise _invalid("body", f"must be a JSON object, not {_kind(body)}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _invalid(
            unknown[0],
            "is not a field of this body",
            f"the fields are: {', '.join(sorted(allowed))}",
        )
    return body


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")


def _param(request: Request, name: str) -> str | None:
    """The query parameter *name*, or None; given twice, it is refused (rather than one of
    the values silently winning)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise _invalid(name, f"is given {len(values)} times; give it once")
    return values[0] if values else None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = _param(request, name)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):  # int() would also take " 1", "1_0" and "٣"
        raise _invalid(name, f"must be a whole number, not {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise _invalid(name, f"must be {low} to {high}, not {value}")
    return value


def _bool_param(request: Request, name: str) -> bool:
    text = _param(request, name)
    if text is None:
        return False
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise _invalid(name, f"must be true or false, not {text[:40]!r}")


def _room_id(request: Request) -> str:
    room_id: str = request.path_params["id"]
    return room_id


def _accepted(state: RoomState) -> JSONResponse:
    return JSONResponse({"id": state.room_id, "status": state.status.value}, status_code=202)


def _busy(state: RoomState, extra: dict[str, Any] | None = None) -> ApiError:
    return ApiError(
        409,
        "room_busy",
        f"room {state.room_id!r} is {state.status.value}: a runner has it or will; wait "
        "for its status to change (a room no runner holds any more, after a crash or a "
        "shutdown, goes on with POST .../resume)",
        {"status": state.status.value, **(extra or {})},
    )


async def _hand_on(request: Request, state: RoomState) -> None:
    """Have the executor run *state*'s room; if the job queue cannot take it, say that the
    room is saved and how to queue it again (503 ``backend_unavailable``)."""
    executor = _executor(request)
    try:
        await executor.start(state)
    except BackendUnavailableError:
        logger.warning("room %s saved (%s) but not queued", state.room_id, state.status.value)
        raise ApiError(
            503,
            "backend_unavailable",
            f"room {state.room_id!r} is saved ({state.status.value}), but the job queue is "
            f"unavailable; POST /api/rooms/{state.room_id}/resume once it is back",
            {"id": state.room_id, "status": state.status.value},
        ) from None


async def _get_room(request: Request) -> RoomState:
    rt = _rt(request)
    return await _read(rt, rt.get_room, _room_id(request))


# --- rooms ------------------------------------------------------------------------------------


async def create_room(request: Request) -> Response:
    """``POST /api/rooms``: create a room from a registered workflow or an inline one."""
    rt = _rt(request)
    run = _bool_param(request, "run")
    body = await _json_object(
        request, frozenset({"workflow", "version", "definition", "variables", "name"})
    )
    if ("workflow" in body) == ("definition" in body):
        raise _invalid("body", "give either 'workflow' (a registered id) or 'definition'")
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        raise _invalid("variables", f"must be an object, not {_kind(variables)}")
    name = body.get("name")
    if "name" in body and not isinstance(name, str):  # null too: leave it out for none
        raise _invalid("name", f"must be a string, not {_kind(name)}")
    wf: Workflow
    if "definition" in body:
        if "version" in body:
            raise _invalid("version", "goes with 'workflow'; a definition has its own")
        definition = body["definition"]
        if not isinstance(definition, dict):
            raise _invalid("definition", f"must be an object, not {_kind(definition)}")
        wf = await run_in_threadpool(Workflow.from_dict, definition, registries=rt.registries)
    else:
        workflow_id, version = body["workflow"], body.get("version")
        if not isinstance(workflow_id, str) or not workflow_id:
            raise _invalid("workflow", f"must be a workflow id, not {_kind(workflow_id)}")
        if "version" in body and (  # null too: leave it out for the latest
            not isinstance(version, int)
            or isinstance(version, bool)
            or not 1 <= version <= MAX_VERSION
        ):
            raise _invalid("version", f"must be a whole number from 1 to {MAX_VERSION}")
        wf = await _read(rt, rt.get_workflow, workflow_id, version)
    check_inputs(wf, variables)  # refused here, before the workflow or the room is written
    state = await _write(rt, rt.create_room, wf, variables, name=name)
    if run:
        state = await start_created(request, state)
    return JSONResponse(
        serde.room_to_dict(state),
        status_code=201,
        headers={"Location": f"/api/rooms/{state.room_id}"},
    )


async def run_room(request: Request) -> Response:
    """``POST /api/rooms/{id}/run``: start a created room (202); busy rooms get 409."""
    rt = _rt(request)
    await _json_object(request, frozenset(), optional=True)
    state = await _get_room(request)
    if state.status in (RoomStatus.RUNNING, RoomStatus.QUEUED) or _executor(request).busy(
        state.room_id
    ):
        raise _busy(state)
    if state.status is not RoomStatus.CREATED:
        allowed = (
            "POST its input to go on"
            if state.status is RoomStatus.WAITING
            else "it has finished; create another room"
        )
        raise RoomStatusError(state.room_id, state.status.value, "run it", allowed)
    state = await _write(rt, rt.enqueue, state.room_id)
    await _hand_on(request, state)
    return _accepted(state)


async def resume_room(request: Request) -> Response:
    """``POST /api/rooms/{id}/resume``: go on with an unfinished room nobody is running."""
    await _json_object(request, frozenset(), optional=True)
    return _accepted(await resume(request, await _get_room(request)))


async def resume(request: Request, state: RoomState) -> RoomState:
    """Go on with *state*'s room (``POST /api/rooms/{id}/resume`` and the dashboard's
    Resume button): queue it if it was only created, and hand it to the executor.

    Raises:
        RoomStatusError: it has finished.
        ApiError: 409 ``room_busy`` (a runner has it), 503 (the job queue is down).
    """
    rt = _rt(request)
    if state.status.is_terminal:
        raise RoomStatusError(state.room_id, state.status.value, "resume it", "it has finished")
    if _executor(request).busy(state.room_id):
        raise _busy(state)
    lease = await _read(rt, rt.states.find_lease, RoomId(state.room_id))
    if lease is not None and lease.expires_at > rt.now():
        raise _busy(state, {"lease_expires_at": lease.expires_at})
    if state.status is RoomStatus.CREATED:
        state = await _write(rt, rt.enqueue, state.room_id)
    await _hand_on(request, state)
    return state


async def send_input(request: Request) -> Response:
    """``POST /api/rooms/{id}/input``: answer a waiting room; it runs on (202)."""
    room_id = _room_id(request)
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 200 and key.isprintable()):
        raise _invalid("Idempotency-Key", "must be 1 to 200 printable characters")
    body = await _json_object(request, frozenset({"data"}))
    if "data" not in body:
        raise _invalid("data", "is required: the input, any JSON value")
    data = body["data"]
    if key is None:
        return await _deliver(request, room_id, data)
    fingerprint = json.dumps(data, sort_keys=True, ensure_ascii=False)
    seen: OrderedDict[tuple[str, str], tuple[str, int, bytes]] = request.app.state.idempotency
    # one request per key at a time: a repeat sent while the first is answered waits for it
    locks: dict[tuple[str, str], Any] = request.app.state.idempotency_locks
    lock = locks.setdefault((room_id, key), asyncio.Lock())
    try:
        async with lock:
            if (room_id, key) in seen:
                first, status, content = seen[(room_id, key)]
                if first != fingerprint:
                    raise ApiError(
                        409,
                        "idempotency_conflict",
                        f"Idempotency-Key {key!r} was used for other input to this room",
                    )
                return Response(
                    content,
                    status_code=status,
                    media_type="application/json",
                    headers={"Idempotent-Replayed": "true"},
                )
            response = await _deliver(request, room_id, data)
            seen[(room_id, key)] = (fingerprint, response.status_code, bytes(response.body))
            while len(seen) > IDEMPOTENCY_KEYS:
                seen.popitem(last=False)
            return response
    finally:
        if not lock.locked():
            locks.pop((room_id, key), None)


async def _deliver(request: Request, room_id: str, data: Any) -> JSONResponse:
    return _accepted(await deliver_input(request, room_id, data))


async def deliver_input(request: Request, room_id: str, data: Any) -> RoomState:
    """Answer a waiting room with *data* and hand it on (``POST /api/rooms/{id}/input`` and
    the dashboard's wait form).

    Raises:
        RoomStatusError: it is not waiting.
        SchemaValidationError: *data* breaks the wait node's schema (nothing is recorded).
        RoomNotFoundError, ApiError (503: the job queue is down).
    """
    rt = _rt(request)
    state = await _read(rt, rt.get_room, room_id)
    if state.status is not RoomStatus.WAITING:  # refused before a lease is even taken
        raise RoomStatusError(room_id, state.status.value, "give it input", "it is not waiting")
    state = await _write(rt, rt.record_input, room_id, data)
    await _hand_on(request, state)
    return state


async def start_created(request: Request, state: RoomState) -> RoomState:
    """Queue a just-created room and hand it to the executor (``POST /api/rooms?run=true``
    and the dashboard's create form).

    Raises:
        ApiError: 503 (the job queue is down; the room is saved).
    """
    rt = _rt(request)
    state = await _write(rt, rt.enqueue, state.room_id)
    await _hand_on(request, state)
    return state


async def cancel_room(request: Request) -> Response:
    """``POST /api/rooms/{id}/cancel``: cancel an unfinished room (a runner stops at its next
    commit); the room."""
    rt = _rt(request)
    body = await _json_object(request, frozenset({"reason"}), optional=True)
    reason = body.get("reason", "cancelled through the API")
    if not isinstance(reason, str):
        raise _invalid("reason", f"must be a string, not {_kind(reason)}")
    state = await _get_room(request)  # 404 before anything is written
    if state.status.is_terminal:
        raise RoomStatusError(state.room_id, state.status.value, "cancel it", "it has finished")
    state = await _write(rt, rt.cancel, state.room_id, reason=reason)
    return JSONResponse(serde.room_to_dict(state))


async def get_room(request: Request) -> Response:
    """``GET /api/rooms/{id}``: the room, as ``openrooms show ROOM --json``."""
    return JSONResponse(serde.room_to_dict(await _get_room(request)))


async def room_status(request: Request) -> Response:
    """``GET /api/rooms/{id}/status``: ``{id, status, current_node, updated_at}``."""
    s = await _get_room(request)
    return JSONResponse(
        {
            "id": s.room_id,
            "status": s.status.value,
            "current_node": s.current_node,
            "updated_at": s.updated_at,
        }
    )


async def room_logs(request: Request) -> Response:
    """``GET /api/rooms/{id}/logs``: ``{items: [event...], next}``; ``next`` is the ``after``
    of the following page when this one is full, else null (the end of the log for now)."""
    rt = _rt(request)
    after = _int_param(request, "after", 0, 0, MAX_SEQ)
    limit = _int_param(request, "limit", 100, 1, MAX_PAGE)
    level = _param(request, "level")
    if level is not None and level.upper() not in {lv.value for lv in Level}:
        raise _invalid("level", f"must be one of {', '.join(lv.value for lv in Level)}")
    types = request.query_params.getlist("type")
    known = {t.value for t in EventType}
    for t in types:
        if t.upper() not in known:
            raise _invalid("type", f"{t[:40]!r} is not an event type", ", ".join(sorted(known)))
    room_id = _room_id(request)
    await _read(rt, rt.get_room, room_id)  # 404 for a room that is not there
    events = await _read(
        rt,
        rt.events,
        room_id,
        after=after,
        limit=limit,
        min_level=level.upper() if level else None,
        types=[t.upper() for t in types] or None,
    )
    items = [serde.event_to_dict(e) for e in events]
    nxt = events[-1].seq if len(events) == limit else None
    return JSONResponse({"items": items, "next": nxt})


def _cursor_text(s: RoomState) -> str:
    return base64.urlsafe_b64encode(f"{s.created_at}:{s.room_id}".encode()).decode().rstrip("=")


def _cursor_key(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created, room_id = raw.split(":", 1)
        return int(created), room_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid("cursor", "is not a cursor this server gave") from None


def _corrupt(exc: CorruptRoomError) -> None:
    logger.warning("GET /api/rooms left out room %s: %s", exc.room_id, exc)


async def list_rooms(request: Request) -> Response:
    """``GET /api/rooms``: ``{items: [room...], next}``, newest first; pass ``next`` as
    ``cursor`` for the following page (null: no more)."""
    rt = _rt(request)
    limit = _int_param(request, "limit", 50, 1, MAX_PAGE)
    status = _param(request, "status")
    if status is not None and status not in {s.value for s in RoomStatus}:
        raise _invalid("status", f"must be one of {', '.join(s.value for s in RoomStatus)}")
    workflow_id = _param(request, "workflow")
    cursor = _param(request, "cursor")
    key = _cursor_key(cursor) if cursor else None
    # The stores list newest first by (created_at, id) and take no "before" yet: read a
    # window from the top and widen it until the page past the cursor is full.
    window = limit + 1
    while True:
        found = await _read(
            rt,
            rt.list_rooms,
            status=status,
            workflow_id=workflow_id,
            limit=window,
            on_corrupt=_corrupt,  # left out of the page, logged; `openrooms db check` lists
        )
        past = found if key is None else [s for s in found if (s.created_at, s.room_id) < key]
        if len(past) > limit or len(found) < window:
            break
        window *= 4
    page = past[:limit]
    nxt = _cursor_text(page[-1]) if len(past) > limit else None
    return JSONResponse({"items": [serde.room_to_dict(s) for s in page], "next": nxt})


# --- workflows and tools ----------------------------------------------------------------------


def _summary(stored: StoredWorkflow) -> dict[str, Any]:
    """As ``openrooms workflows --json`` prints each workflow."""
    d = stored.definition
    return {
        "id": stored.id,
        "version": stored.version,
        "description": str(d.get("description") or ""),
        "nodes": len(d.get("nodes") or ()),
        "transitions": len(d.get("transitions") or ()),
        "digest": stored.digest,
        "registered_at": stored.created_at,
    }


async def list_workflows(request: Request) -> Response:
    """``GET /api/workflows``: the latest version of each, as ``openrooms workflows --json``."""
    rt = _rt(request)
    return JSONResponse({"items": await _read(rt, rt.describe_workflows)})


async def register_workflow(request: Request) -> Response:
    """``POST /api/workflows``: register a definition (JSON, or YAML with a YAML
    Content-Type): 201, or 200 when identical content was registered; 422 lists every
    problem with its path."""
    rt = _rt(request)
    media = _media_type(request)
    text = await _text(request)
    if media in YAML_TYPES:
        wf = await run_in_threadpool(
            Workflow.from_yaml, text, source="the request body", registries=rt.registries
        )
    elif _is_json(media):
        data = _parse_json(text)
        if not isinstance(data, dict):
            raise WorkflowValidationError(
                "<body>", [Problem("", f"a workflow is an object, not {_kind(data)}")]
            )
        wf = await run_in_threadpool(Workflow.from_dict, data, registries=rt.registries)
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send a workflow as application/json or application/yaml, not {media or 'untyped'}",
        )
    try:
        before: StoredWorkflow | None = await _read(rt, rt.states.get_workflow, wf.id, wf.version)
    except WorkflowNotFoundError:
        before = None
    await _write(rt, rt.register_workflow, wf)
    stored = await _read(rt, rt.states.get_workflow, wf.id, wf.version)
    status = 200 if before is not None and before.digest == stored.digest else 201
    return JSONResponse(
        _summary(stored), status_code=status, headers={"Location": f"/api/workflows/{wf.id}"}
    )


async def get_workflow(request: Request) -> Response:
    """``GET /api/workflows/{id}?version=N``: a version (the latest by default) with its
    definition, the Mermaid graph, and the version numbers registered (the latest 100)."""
    rt = _rt(request)
    workflow_id: str = request.path_params["id"]
    version = (
        _int_param(request, "version", 1, 1, MAX_VERSION)
        if "version" in request.query_params
        else None
    )
    latest = await _read(rt, rt.states.get_workflow, workflow_id, None)
    stored = (
        latest if version is None else await _read(rt, rt.states.get_workflow, workflow_id, version)
    )

    def versions() -> list[int]:
        found = []
        for v in range(latest.version, max(0, latest.version - WORKFLOW_VERSIONS_SHOWN), -1):
            try:
                found.append(rt.states.get_workflow(workflow_id, v).version)
            except WorkflowNotFoundError:
                continue
        return found

    try:
        wf = await _read(rt, rt.get_workflow, workflow_id, stored.version)
        graph: str | None = render_graph(wf, "mermaid")
    except (WorkflowValidationError, LookupError):  # built without the plugin it needs
        graph = None
    return JSONResponse(
        {
            **_summary(stored),
            "versions": await _read(rt, versions),
            "definition": stored.definition,
            "graph": graph,
        }
    )


async def list_tools(request: Request) -> Response:
    """``GET /api/tools``: as ``openrooms tools --json``."""
    return JSONResponse({"items": _rt(request).describe_tools()})


Endpoint = Callable[[Request], Awaitable[Response]]


def check_params(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a query parameter the route does not take (as an unknown body field is
    refused): a typo such as ``?limt=5`` is 422, not silently ignored.

    Raises:
        ApiError: 422 ``invalid_input`` naming the first unknown parameter.
    """
    unknown = sorted(set(request.query_params.keys()) - allowed)
    if unknown:
        takes = f"it takes: {', '.join(sorted(allowed))}" if allowed else "it takes none"
        raise _invalid(unknown[0][:40], "is not a query parameter of this route", takes)


def query_params(path: str, method: str) -> frozenset[str]:
    """The query parameters ``/openapi.json`` documents for *method* *path*."""
    from openrooms_server.routes_openapi import OPENAPI  # it imports this module

    op = OPENAPI["paths"][path][method.lower()]
    return frozenset(p["name"] for p in op.get("parameters", ()) if p["in"] == "query")


def _documented(path: str, handlers: dict[str, Endpoint]) -> dict[str, Endpoint]:
    """*handlers*, each refusing query parameters its operation does not document."""

    def checked(handler: Endpoint, allowed: frozenset[str]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            check_params(request, allowed)
            return await handler(request)

        endpoint.__name__ = handler.__name__
        return endpoint

    return {m: checked(h, query_params("/api" + path, m)) for m, h in handlers.items()}


def by_method(path: str, handlers: dict[str, Endpoint]) -> Route:
    """One route for a path several operations share (``GET`` and ``POST /rooms``), so that
    a method it does not take gets 405 with an ``Allow`` header naming them all (with one
    route per operation, Starlette answers from the first route and names only its
    methods)."""

    handlers = _documented(path, handlers)

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    endpoint.__name__ = "_or_".join(h.__name__ for h in handlers.values())
    return Route(path, endpoint, methods=sorted(handlers))


def api_routes() -> list[Route]:
    """The routes mounted at ``/api`` (paths relative to it). Each refuses the query
    parameters its operation in ``/openapi.json`` does not document."""
    return [
        by_method("/rooms", {"GET": list_rooms, "POST": create_room}),
        by_method("/rooms/{id}", {"GET": get_room}),
        by_method("/rooms/{id}/status", {"GET": room_status}),
        by_method("/rooms/{id}/logs", {"GET": room_logs}),
        by_method("/rooms/{id}/run", {"POST": run_room}),
        by_method("/rooms/{id}/input", {"POST": send_input}),
        by_method("/rooms/{id}/cancel", {"POST": cancel_room}),
        by_method("/rooms/{id}/resume", {"POST": resume_room}),
        by_method("/workflows", {"GET": list_workflows, "POST": register_workflow}),
        by_method("/workflows/{id}", {"GET": get_workflow}),
        by_method("/tools", {"GET": list_tools}),
    ]
