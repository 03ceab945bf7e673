"""Re-running a room offline from its log, to check that it is deterministic.

:func:`rerun` executes a room's workflow again, from the same variables, in memory.
Every model and tool call is answered from what the original run recorded (no
provider, no network, no side effect); input is delivered where the original got
it; retry backoffs pass on a simulated clock. Then the new log is compared with
the original, event by event, ignoring times and durations. A difference means the
workflow, a node type or a tool is not deterministic, or the workflow changed — the
report says at which event.

``openrooms rerun ROOM`` prints the report (exit 0: identical, 1: diverged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from openrooms import engine
from openrooms.backends.memory import MemoryStore
from openrooms.errors import CompletionError, RoomStatusError, ToolError
from openrooms.events import Event, EventType
from openrooms.journal import JOURNALED
from openrooms.llm.base import ChatRequest, ChatResponse
from openrooms.room import RoomStatus
from openrooms.tools.base import Tool, ToolContext
from openrooms.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from openrooms.runtime import Runtime
    from openrooms.workflow import Workflow

__all__ = ["RerunReport", "rerun"]

# "request" (an LLM_CALLED's summary of what it sent) follows from the conversation, which
# MESSAGES_ADDED compares; rooms logged before it was recorded rerun without a divergence
_IGNORED = frozenset({"latency_ms", "timeout_at", "due_at", "request"})
_SKIPPED = frozenset({EventType.ROOM_RESUMED})


@attrs.frozen(slots=True)
class RerunReport:
    """How a re-run compared with the original.

    Attributes:
        room_id: the room.
        identical: whether every event matched.
        events: how many events were compared.
        diverged_at: the original's sequence number where they first differ, if any.
        expected, got: the differing events (as dicts), if any.
        status: the re-run's final status.
    """

    room_id: str
    identical: bool
    events: int
    status: str
    diverged_at: int | None = None
    expected: Mapping[str, Any] | None = None
    got: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Unrecorded:
    """A model that refuses: in a re-run every call must come from the original log."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise CompletionError(
            request.model, "not in the original run's log (the re-run diverged here)"
        )


def _refusing_tools(names: Sequence[str]) -> ToolRegistry:
    registry = ToolRegistry()

    async def refuse(ctx: ToolContext, **_: Any) -> Any:
        raise ToolError(ctx.node, "not in the original run's log (the re-run diverged here)")

    for name in names:
        registry.register(
            Tool(
                name,
                "",
                {"type": "object"},
                refuse,
                context_param="ctx",
            )
        )
    return registry


def _key(e: Event) -> tuple[Any, ...]:
    data = {k: v for k, v in e.data.items() if k not in _IGNORED}
    err = None if e.error is None else (e.error.type, e.error.message)
    return (e.type, e.node, data, err)


def _describe(e: Event) -> dict[str, Any]:
    return {"seq": e.seq, "type": e.type.value, "node": e.node, "data": dict(e.data)}


def rerun(rt: Runtime, room_id: str) -> RerunReport:
    """Re-run *room_id* in memory from its log and compare; see the module docstring.

    Raises:
        RoomNotFoundError: no such room.
        RoomStatusError: the room has not finished and is not waiting (running, created):
            its log stops mid-run, so a re-run would go past it and seem to diverge.
    """
    from openrooms.llm.registry import ModelRegistry
    from openrooms.runtime import Runtime as _Runtime
    from openrooms.testing import ManualClock

    state = rt.get_room(room_id)
    if not state.status.is_terminal and state.status is not RoomStatus.WAITING:
        raise RoomStatusError(
            state.room_id,
            state.status.value,
            "re-run it",
            "its log stops mid-run; resume it (or cancel it) first",
        )
    original = rt.log.read(state.room_id)
    wf = rt.workflow_for(engine.fold(original))
    recorded = _Recorded(rt)
    recorded.index(original)
    inputs = [e.data.get("input") for e in original if e.type is EventType.INPUT_RECEIVED]

    store = MemoryStore()
    clock = ManualClock(original[0].timestamp)
    models = ModelRegistry()
    for prefix in {a.model.split("/", 1)[0] for a in wf.agents.values()}:
        models.register_provider(prefix, _Unrecorded())
    tools = _refusing_tools(rt.tools.names())
    shadow = _Runtime(
        store, store, tools=tools, clock=clock, models=models, registries=rt.registries
    )
    shadow.recorded_calls = recorded
    shadow.sleep = _fast_forward(clock)
    shadow.register_workflow(wf)
    for child in _children(rt, wf):  # sub-workflows its nodes start, at their pinned versions
        shadow.register_workflow(child)
    first = engine.apply(None, original[:1])
    store.commit(first, original[:1], expected_version=None)
    replayed = shadow.run(room_id)
    while replayed.status is RoomStatus.WAITING and inputs:
        replayed = shadow.send_input(room_id, inputs.pop(0))

    new = _in_branch_order([e for e in store.read(first.room_id) if e.type not in _SKIPPED])
    old = _in_branch_order([e for e in original if e.type not in _SKIPPED])
    for a, b in zip(old, new, strict=False):
        if _key(a) != _key(b):
            return RerunReport(
                room_id, False, len(old), replayed.status.value, a.seq, _describe(a), _describe(b)
            )
    if len(old) != len(new):
        longer = old if len(old) > len(new) else new
        extra = longer[min(len(old), len(new))]
        return RerunReport(
            room_id,
            False,
            len(old),
            replayed.status.value,
            extra.seq,
            _describe(extra) if longer is old else None,
            _describe(extra) if longer is new else None,
        )
    return RerunReport(room_id, True, len(old), replayed.status.value)


def _in_branch_order(events: list[Event]) -> list[Event]:
    """*events* with the calls of concurrent branches grouped by branch.

    A ``parallel`` or ``map`` node runs its branches concurrently, so their journaled events
    (calls, ``BRANCH_COMPLETED``) interleave in the order the calls happened to finish: a
    matter of timing, not of the workflow. Each run of journaled events of one node is
    sorted by branch, stably: every branch's events keep their order, and a node without
    branches keeps its log as it is."""
    out: list[Event] = []
    run: list[Event] = []
    for e in events:
        if e.type in JOURNALED and (not run or run[0].node == e.node):
            run.append(e)
            continue
        out += sorted(run, key=_branch) if len(run) > 1 else run
        run = [e] if e.type in JOURNALED else []
        if not run:
            out.append(e)
    out += sorted(run, key=_branch) if len(run) > 1 else run
    return out


def _branch(e: Event) -> str:
    """The branch a journaled event belongs to ('' outside any): a call made in a branch
    is tagged with its path (``scope``: ``a``, or ``a/x`` nested), and the branch's
    ``BRANCH_COMPLETED``, committed by the node around it, names the branch."""
    scope = e.data.get("scope")
    scope = scope if isinstance(scope, str) else ""
    if e.type is EventType.BRANCH_COMPLETED:
        branch = str(e.data.get("branch", ""))
        return f"{scope}/{branch}" if scope else branch
    return scope


def _children(
    rt: Runtime, wf: Workflow, seen: set[tuple[str, int]] | None = None
) -> list[Workflow]:
    """Every workflow *wf*'s ``subworkflow`` nodes (inline ones included) may start."""
    seen = set() if seen is None else seen
    found: list[Workflow] = []

    def visit(spec: Mapping[str, Any]) -> None:
        kind = spec.get("type")
        config = spec.get("config", spec)
        if kind == "subworkflow" and isinstance(config.get("workflow"), str):
            child = rt.get_workflow(config["workflow"], config.get("version"))
            if (child.id, child.version) not in seen:
                seen.add((child.id, child.version))
                found.append(child)
                found.extend(_children(rt, child, seen))
        for branch in (config.get("branches") or {}).values():
            if isinstance(branch, Mapping):
                visit(branch)
        if isinstance(config.get("node"), Mapping):
            visit(config["node"])

    for node in wf.nodes.values():
        visit({"type": node.type, "config": node.config})
    return found


class _Recorded:
    """Each attempt's recorded calls by idempotency key, for the room and (read when first
    asked for) the child rooms its ``subworkflow`` nodes started."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._calls: dict[str, list[Event]] = {}
        self._read: set[str] = set()

    def index(self, events: Sequence[Event]) -> None:
        state = None
        for e in events:
            if state is not None and e.type in JOURNALED:
                self._calls.setdefault(state.idempotency_key, []).append(e)
            state = engine.apply(state, [e])
        if events:
            self._read.add(events[0].room_id)

    def get(self, key: str, default: Sequence[Event] = ()) -> Sequence[Event]:
        room_id = key.split(":", 1)[0]
        if room_id not in self._read:
            self._read.add(room_id)
            from openrooms.types import RoomId

            self.index(self._rt.log.read(RoomId(room_id)))
        return self._calls.get(key, default)


def _fast_forward(clock: Any) -> Any:
    async def sleep(seconds: float) -> None:
        clock.advance(max(0, round(seconds * 1000)))
        await asyncio.sleep(0)

    return sleep
