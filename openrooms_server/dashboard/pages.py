"""The dashboard's pages and form posts: one endpoint function per page, each a thin layer
over :class:`~openrooms.runtime.Runtime` (store calls through its store IO, as the API's).

Forms post ``application/x-www-form-urlencoded``
and are answered with 303 to the room, or the page again with 422 (409 when the room's
status forbids it) and the messages next to their fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from openrooms.errors import (
    OpenRoomsError,
    PatternTimeoutError,
    RoomNotFoundError,
    RoomStatusError,
    SchemaValidationError,
    WorkflowNotFoundError,
    WorkflowValidationError,
)
from openrooms.events import Event, EventType, Level
from openrooms.graph import Layout, layout_definition, layout_workflow
from openrooms.inputs import check_inputs
from openrooms.plan import PreparedWait
from openrooms.room import RoomState, RoomStatus
from openrooms.workflow import Workflow
from openrooms_server.dashboard import forms
from openrooms_server.dashboard.http import (
    json_text,
    not_found,
    read,
    read_form,
    render,
    runtime,
    see,
    when,
    whole_number,
    write,
)
from openrooms_server.dashboard.listing import decode_cursor, rooms_page, status_counts
from openrooms_server.dashboard.login import login, login_page, logout
from openrooms_server.errors import ApiError

__all__ = ["dashboard_routes", "event_view"]

ROOMS_PER_PAGE: Final = 50
MAX_ROOMS_PER_PAGE: Final = 500
EVENTS_PER_PAGE: Final = 200
MAX_QUERY: Final = 200
_HERE: Final = Path(__file__).parent

# --- rooms list -------------------------------------------------------------------------------


async def rooms(request: Request) -> Response:
    """``GET /``: rooms, newest first, with filters per status, search and pages."""
    rt = runtime(request)
    status_text = request.query_params.get("status", "all") or "all"
    status = None
    error = ""
    if status_text != "all":
        try:
            status = RoomStatus(status_text)
        except ValueError:
            error = f"there is no status {status_text[:40]!r}; showing all rooms"
            status_text = "all"
    query = request.query_params.get("q", "").strip()[:MAX_QUERY] or None
    cursor = request.query_params.get("cursor")
    before = decode_cursor(cursor) if cursor else None
    if cursor and before is None:
        error = "that page cursor is not one this server gave; showing the first page"
    limit = whole_number(request.query_params.get("limit"), MAX_ROOMS_PER_PAGE) or ROOMS_PER_PAGE
    page = await read(rt, rooms_page, rt, status=status, query=query, before=before, limit=limit)
    counts = await read(rt, status_counts, rt, query=query)
    base: dict[str, str] = {"q": query} if query else {}
    if limit != ROOMS_PER_PAGE:
        base["limit"] = str(limit)
    filters = [("all", sum(counts.values()), "/?" + urlencode(base))]
    filters += [(s, n, "/?" + urlencode({**base, "status": s})) for s, n in counts.items()]
    next_url = None
    if page.next_cursor:
        args = {**base, **({"status": status_text} if status else {}), "cursor": page.next_cursor}
        next_url = "/?" + urlencode(args)
    return render(
        request,
        "rooms.html",
        title="Rooms",
        nav="rooms",
        rooms=[_room_row(s) for s in page.rooms],
        filters=filters,
        status=status_text,
        query=query or "",
        next_url=next_url,
        first_url=("/?" + urlencode({**base, **({"status": status_text} if status else {})}))
        if cursor
        else None,
        error=error,
    )


def _room_row(s: RoomState) -> dict[str, Any]:
    return {
        "id": s.room_id,
        "name": s.name,
        "workflow": s.workflow_id,
        "version": s.workflow_version,
        "status": s.status.value,
        "node": s.current_node or "",
        "updated": when(s.updated_at),
        "updated_ms": s.updated_at,
    }


# --- a room -----------------------------------------------------------------------------------

_PAYLOAD_TYPES: Final = frozenset({EventType.LLM_CALLED, EventType.TOOL_CALLED})
_REPLY_KEYS: Final = ("response", "result")


def event_view(e: Event) -> dict[str, Any]:
    """What the log shows of an event (the same fields the page's script builds)."""
    data = dict(e.data)
    payload = None
    if e.type in _PAYLOAD_TYPES:
        reply = next((data[k] for k in _REPLY_KEYS if k in data), None)
        request_part = {k: v for k, v in data.items() if k not in _REPLY_KEYS}
        payload = {"request": json_text(request_part), "reply": json_text(reply)}
    return {
        "seq": e.seq,
        "type": e.type.value,
        "level": e.level.value.lower(),
        "node": e.node or "",
        "time": when(e.timestamp),
        "duration": _duration(e.duration_ms),
        "message": _summary(e),
        "error": e.error,
        "payload": payload,
    }


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def _summary(e: Event) -> str:
    """One line about *e*."""
    d = e.data
    if e.error is not None:
        return f"{e.error.type}: {e.error.message}"
    if e.type is EventType.TRANSITION:
        return f"{d.get('from', e.node or '')} \u2192 {d.get('to', '')}"
    if e.type is EventType.TOOL_CALLED:
        return f"tool {d.get('tool', '')}"
    if e.type is EventType.LLM_CALLED:
        return f"model {d.get('model', '')}"
    for key in ("reason", "prompt", "message"):
        if isinstance(d.get(key), str):
            return str(d[key])
    if not d:
        return ""
    text = json.dumps(d, ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:199] + "\u2026"


def _wait_schema(wf: Workflow | None, state: RoomState) -> tuple[bool, Any]:
    """Whether the room waits at a ``wait`` node now, and that node's input schema."""
    if wf is None or state.status is not RoomStatus.WAITING or state.current_node is None:
        return False, None
    plan = wf.plan.nodes.get(state.current_node)
    prepared = plan.prepared if plan is not None else None
    if not isinstance(prepared, PreparedWait):
        return False, None
    return True, prepared.schema


def _prompt(events: list[Event]) -> str:
    for e in reversed(events):
        if e.type is EventType.ROOM_WAITING and isinstance(e.data.get("prompt"), str):
            return str(e.data["prompt"])
    return ""


async def _room_context(
    request: Request, state: RoomState, level: str | None, types: list[str], after: int = 0
) -> dict[str, Any]:
    rt = runtime(request)
    try:
        wf: Workflow | None = await read(rt, rt.workflow_for, state)
    except (OpenRoomsError, LookupError):
        wf = None
    graph: Layout | None = None
    if wf is not None:
        graph = layout_workflow(wf)
    else:
        try:
            stored = await read(
                rt, rt.states.get_workflow, state.workflow_id, state.workflow_version
            )
            graph = layout_definition(stored.definition)
        except (OpenRoomsError, LookupError):
            graph = None
    events = await read(
        rt,
        rt.events,
        state.room_id,
        after=after,
        limit=EVENTS_PER_PAGE,
        min_level=level,
        types=types or None,
    )
    log_next = events[-1].seq if len(events) == EVENTS_PER_PAGE else None
    filters = {k: v for k, v in (("level", level), ("type", types[0] if types else "")) if v}
    waiting, schema = _wait_schema(wf, state)
    prompt = ""
    if waiting:
        tail = await read(
            rt, rt.events, state.room_id, after=max(0, state.version - 20), types=["ROOM_WAITING"]
        )
        prompt = _prompt(tail)
    failed = {state.current_node} if state.status is RoomStatus.FAILED else set()
    usage = state.usage
    return {
        "room": state,
        "status": state.status.value,
        "node": state.current_node or "",
        "variables": [(k, json_text(v)) for k, v in state.variables.items()],
        "memory": [(k, json_text(v)) for k, v in state.memory.items()],
        "usage": [
            ("Model calls", str(usage.get("model_calls", 0))),
            ("Tool calls", str(usage.get("tool_calls", 0))),
            ("Prompt tokens", str(usage.get("prompt_tokens", 0))),
            ("Completion tokens", str(usage.get("completion_tokens", 0))),
            ("Cost (USD)", f"{float(usage.get('cost_usd', 0) or 0):.4f}"),
        ],
        "created": when(state.created_at),
        "updated": when(state.updated_at),
        "graph": graph,
        "visited": {n for n, c in state.visits.items() if c},
        "failed": failed,
        "events": [event_view(e) for e in events],
        "log_next": log_next,
        "log_after": after,
        "log_url": lambda after: (
            f"/rooms/{state.room_id}?" + urlencode({"after": after, **filters})
        ),
        "last_seq": state.version,
        "levels": [lv.value for lv in Level],
        "types": [t.value for t in EventType],
        "level": level or "",
        "type_filter": types[0] if types else "",
        "waiting": waiting,
        "prompt": prompt,
        "wait_form": forms.Form(tuple(forms.fields_for_schema(schema))) if waiting else None,
        "cancel_error": "",
        "resume_error": "",
        "terminal": state.status.is_terminal,
    }


def _log_filters(request: Request) -> tuple[str | None, list[str]]:
    level = request.query_params.get("level", "").upper() or None
    if level is not None and level not in {lv.value for lv in Level}:
        level = None
    wanted = request.query_params.get("type", "").upper()
    types = [wanted] if wanted in {t.value for t in EventType} else []
    return level, types


async def _get_state(request: Request) -> RoomState | None:
    rt = runtime(request)
    try:
        return await read(rt, rt.get_room, request.path_params["id"])
    except RoomNotFoundError:
        return None


async def room(request: Request) -> Response:
    """``GET /rooms/{id}``: a room, its graph, its log (the first page) and its actions."""
    state = await _get_state(request)
    if state is None:
        return not_found(request, f"room {request.path_params['id']!r}")
    level, types = _log_filters(request)
    after = whole_number(request.query_params.get("after")) or 0
    context = await _room_context(request, state, level, types, after)
    return render(request, "room.html", title=f"Room {state.room_id}", nav="rooms", **context)


async def _room_again(
    request: Request, state: RoomState, status: int, **changes: Any
) -> HTMLResponse:
    context = await _room_context(request, state, None, [])
    context.update(changes)
    return render(
        request, "room.html", status, title=f"Room {state.room_id}", nav="rooms", **context
    )


async def room_input(request: Request) -> Response:
    """``POST /rooms/{id}/input``: the wait form; converted and checked by the wait node's
    schema, then delivered as ``POST /api/rooms/{id}/input`` delivers it."""
    from openrooms_server.routes import deliver_input

    posted = await read_form(request)
    state = await _get_state(request)
    if state is None:
        return not_found(request, f"room {request.path_params['id']!r}")
    rt = runtime(request)
    try:
        wf: Workflow | None = await read(rt, rt.workflow_for, state)
    except (OpenRoomsError, LookupError):
        wf = None
    waiting, schema = _wait_schema(wf, state)
    if not waiting:
        return await _room_again(
            request,
            state,
            409,
            wait_form=forms.Form((), f"room {state.room_id} is {state.status.value}, not waiting"),
        )
    fields = forms.fields_for_schema(schema)
    value, filled = forms.convert(fields, posted)
    if any(f.error for f in filled):
        form = forms.Form(tuple(filled), "some fields need fixing")
        return await _room_again(request, state, 422, wait_form=form)
    try:
        await deliver_input(request, state.room_id, value)
    except SchemaValidationError as exc:
        placed, rest = forms.place_problems(filled, exc.problems, _input_prefix(exc))
        form = forms.Form(tuple(placed), rest or "some fields need fixing")
        return await _room_again(request, state, 422, wait_form=form)
    except (RoomStatusError, ApiError) as exc:
        form = forms.Form(tuple(filled), _message(exc))
        return await _room_again(request, state, 409, wait_form=form)
    return see(f"/rooms/{state.room_id}")


def _input_prefix(exc: SchemaValidationError) -> str:
    """The path the problems of input are under (the engine says ``input for wait node
    'x'``, the schema's paths start with that)."""
    paths = [p.path for p in exc.problems]
    return paths[0].split(".", 1)[0] if paths and "." in paths[0] else (paths[0] if paths else "")


def _message(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.message
    return str(exc)


async def room_cancel(request: Request) -> Response:
    """``POST /rooms/{id}/cancel``: cancel the room (a runner stops at its next commit)."""
    posted = await read_form(request)
    state = await _get_state(request)
    if state is None:
        return not_found(request, f"room {request.path_params['id']!r}")
    rt = runtime(request)
    reason = posted.get("reason", "").strip() or "cancelled from the dashboard"
    try:
        await write(rt, rt.cancel, state.room_id, reason=reason)
    except (RoomStatusError, SchemaValidationError) as exc:
        return await _room_again(request, state, 409, cancel_error=str(exc))
    return see(f"/rooms/{state.room_id}")


async def room_resume(request: Request) -> Response:
    """``POST /rooms/{id}/resume``: go on with a room nobody is running."""
    from openrooms_server.routes import resume

    await read_form(request)
    state = await _get_state(request)
    if state is None:
        return not_found(request, f"room {request.path_params['id']!r}")
    try:
        await resume(request, state)
    except (RoomStatusError, ApiError) as exc:
        return await _room_again(request, state, 409, resume_error=_message(exc))
    return see(f"/rooms/{state.room_id}")


# --- create a room ----------------------------------------------------------------------------


def _create_fields(wf: Workflow) -> list[forms.Field]:
    if wf.inputs is not None and forms.is_object_schema(forms_schema := dict(wf.inputs)):
        return forms.fields_for_schema(forms_schema, wf.variables)
    if wf.inputs is not None:
        return []  # declares no property: it takes no variables
    return forms.fields_for_variables(wf.variables)


async def _workflow_or_none(request: Request) -> tuple[Workflow | None, str]:
    rt = runtime(request)
    workflow_id = request.query_params.get("workflow", "")
    version = whole_number(request.query_params.get("version")) or None
    if not workflow_id:
        return None, ""
    try:
        return await read(rt, rt.get_workflow, workflow_id, version), ""
    except (WorkflowNotFoundError, WorkflowValidationError, LookupError) as exc:
        return None, str(exc)


async def new_room(request: Request) -> Response:
    """``GET /new?workflow=ID``: the form creating a room of a registered workflow."""
    wf, problem = await _workflow_or_none(request)
    if wf is None:
        rt = runtime(request)
        listed = await read(rt, rt.describe_workflows)
        status = 404 if request.query_params.get("workflow") else 200
        return render(
            request,
            "new.html",
            status,
            title="New room",
            nav="workflows",
            wf=None,
            workflows=listed,
            problem=problem,
            form=None,
        )
    form = forms.Form(tuple(_create_fields(wf)))
    return render(
        request,
        "new.html",
        title="New room",
        nav="workflows",
        wf=wf,
        workflows=[],
        problem="",
        form=form,
    )


async def create_room(request: Request) -> Response:
    """``POST /new?workflow=ID``: create the room with the form's variables and run it."""
    from openrooms_server.routes import start_created

    posted = await read_form(request)
    wf, problem = await _workflow_or_none(request)
    if wf is None:
        return render(
            request,
            "error.html",
            404,
            title="Not found",
            message=problem or "say which workflow: /new?workflow=ID",
        )
    rt = runtime(request)
    fields = _create_fields(wf)
    value, filled = forms.convert(fields, posted)

    def again(status: int, error: str, fields: list[forms.Field]) -> HTMLResponse:
        return render(
            request,
            "new.html",
            status,
            title="New room",
            nav="workflows",
            wf=wf,
            workflows=[],
            problem="",
            form=forms.Form(tuple(fields), error),
        )

    if any(f.error for f in filled):
        return again(422, "some fields need fixing", filled)
    assert isinstance(value, dict)
    try:
        check_inputs(wf, value)
        state = await write(rt, rt.create_room, wf, value)
    except (SchemaValidationError, PatternTimeoutError) as exc:
        placed, rest = forms.place_problems(filled, exc.problems, "variables")
        return again(422, rest or "some fields need fixing", placed)
    try:
        await start_created(request, state)
    except ApiError as exc:
        return again(503, exc.message, filled)
    return see(f"/rooms/{state.room_id}")


# --- workflows and tools ----------------------------------------------------------------------


async def workflows(request: Request) -> Response:
    """``GET /workflows``: every registered workflow (its latest version)."""
    rt = runtime(request)
    listed = await read(rt, rt.describe_workflows)
    for w in listed:
        w["registered"] = when(w.get("registered_at"))
    return render(request, "workflows.html", title="Workflows", nav="workflows", workflows=listed)


async def workflow(request: Request) -> Response:
    """``GET /workflows/{id}?version=N``: a version (the latest by default): its graph, its
    definition and the versions registered."""
    rt = runtime(request)
    workflow_id: str = request.path_params["id"]
    version = whole_number(request.query_params.get("version")) or None
    try:
        latest = await read(rt, rt.states.get_workflow, workflow_id, None)
        stored = (
            latest
            if version is None
            else await read(rt, rt.states.get_workflow, workflow_id, version)
        )
    except (WorkflowNotFoundError, LookupError):
        what = f"workflow {workflow_id!r}" + (f" version {version}" if version else "")
        return not_found(request, what)

    def versions() -> list[int]:
        found = []
        for v in range(latest.version, max(0, latest.version - 100), -1):
            try:
                found.append(rt.states.get_workflow(workflow_id, v).version)
            except WorkflowNotFoundError:
                continue
        return found

    return render(
        request,
        "workflow.html",
        title=f"Workflow {workflow_id}",
        nav="workflows",
        wf=stored,
        description=str(stored.definition.get("description") or ""),
        versions=await read(rt, versions),
        graph=layout_definition(stored.definition),
        visited=set(),
        failed=set(),
        node="",
        definition=json_text(stored.definition),
        registered=when(stored.created_at),
    )


async def tools(request: Request) -> Response:
    """``GET /tools``: the tools ``tool`` nodes and agents can call, with their arguments."""
    listed = runtime(request).describe_tools()
    rows = [
        {
            "name": str(t.get("name", "")),
            "description": str(t.get("description", "")),
            "schema": json_text(t.get("parameters", {})),
        }
        for t in listed
    ]
    return render(request, "tools.html", title="Tools", nav="tools", tools=rows)


# --- routes -----------------------------------------------------------------------------------


def dashboard_routes() -> list[Route | Mount]:
    """The dashboard's routes, mounted at ``/`` beside ``/api``."""
    return [
        Route("/", rooms, methods=["GET"]),
        Route("/rooms/{id}", room, methods=["GET"]),
        Route("/rooms/{id}/input", room_input, methods=["POST"]),
        Route("/rooms/{id}/cancel", room_cancel, methods=["POST"]),
        Route("/rooms/{id}/resume", room_resume, methods=["POST"]),
        Route("/new", new_room, methods=["GET"]),
        Route("/new", create_room, methods=["POST"]),
        Route("/workflows", workflows, methods=["GET"]),
        Route("/workflows/{id}", workflow, methods=["GET"]),
        Route("/tools", tools, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
        Route("/{path:path}", missing_page, methods=["GET"]),  # last: after /api and the rest
    ]


async def missing_page(request: Request) -> Response:
    """Any other ``GET``: a 404 page (``/api/...`` answers its own 404 in JSON)."""
    return not_found(request, f"page {request.url.path!r}")
