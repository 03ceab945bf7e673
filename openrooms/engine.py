"""The pure core: given a workflow, a room's state and what happened, the events and new state.

Nothing here touches a store, the network or the clock: the runner passes ``now``
(ms) in. Every function returns a :class:`Step` whose ``state`` is exactly
``fold(old_state, step.events)`` — events are emitted and folded in one place, so
the log is the truth by construction and :func:`replay` rebuilds any room.

What a state means for the runner (:func:`next_action`):

- ``running`` and no ``wake_at``: execute ``current_node`` (attempt ``attempt``);
- ``running`` with ``wake_at``: a retry is due then; call :func:`wake`;
- ``waiting``: wait for :func:`receive_input`, or :func:`wake` once ``wake_at`` passes;
- ``created`` / ``queued``: call :func:`start`; terminal statuses: nothing more to do.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Final, Literal, cast

import attrs

from openrooms.errors import (
    CorruptLogError,
    EvaluationError,
    RoomStatusError,
    TransitionNotAllowedError,
    UnstorableValueError,
)
from openrooms.events import ErrorInfo, Event, EventBatch, EventType, Hop, Level
from openrooms.expressions import is_truthy
from openrooms.nodes.base import FAILURE_LABELS, LogRecord, Outcome
from openrooms.plan import NodePlan, PreparedEnd, PreparedWait
from openrooms.room import RoomState, RoomStatus, state_fields
from openrooms.storable import check_storable
from openrooms.types import RoomId
from openrooms.workflow import Workflow

__all__ = [
    "Action",
    "FIELDS",
    "RoomView",
    "Step",
    "advance",
    "apply",
    "can_advance",
    "cancel",
    "create_room",
    "decide",
    "fail",
    "fold",
    "next_action",
    "queue",
    "receive_input",
    "record",
    "replay",
    "resumed",
    "start",
    "wake",
]

Action = Literal["start", "run", "sleep", "wait", "done"]

FIELDS: Final = tuple(a.name for a in attrs.fields(RoomState))
_E = EventType
# enum members as module constants: in Python 3.11 a lookup on an Enum class (EnumType has a
# __getattr__) costs ten times a global's, and the fold and every step make many
_RUNNING: Final = RoomStatus.RUNNING
_STARTED: Final = _E.NODE_STARTED
_COMPLETED: Final = _E.NODE_COMPLETED
_TRANSITION: Final = _E.TRANSITION
_RETRY_SCHEDULED: Final = _E.RETRY_SCHEDULED
_LLM_CALLED: Final = _E.LLM_CALLED
_TOOL_CALLED: Final = _E.TOOL_CALLED
_INFO: Final = Level.INFO
_DEBUG: Final = Level.DEBUG


@attrs.frozen(slots=True)
class Step:
    """The result of one engine call: the new state and the events that produced it."""

    state: RoomState
    events: Sequence[Event]
    """A tuple, or an :class:`~openrooms.events.EventBatch` (:func:`advance`)."""

    @property
    def action(self) -> Action:
        """What the runner should do next; see :func:`next_action`."""
        return next_action(self.state)


def next_action(state: RoomState) -> Action:
    """What a runner does with *state*: start, run the current node, sleep, wait, or nothing."""
    status = state.status
    if status is _RUNNING:
        return "run" if state.wake_at is None else "sleep"
    if status is RoomStatus.WAITING:
        return "wait"
    if status is RoomStatus.CREATED or status is RoomStatus.QUEUED:
        return "start"
    return "done"


# --- the fold -------------------------------------------------------------------------------


def _own(d: dict[str, Any], owned: set[str], key: str) -> Any:
    """The container *d[key]*, copied once first unless *d* already owns it (copy on write:
    the dicts of a frozen RoomState are shared until the first change)."""
    if key in owned:
        return d[key]
    owned.add(key)
    copy = d[key] = dict(d[key])
    return copy


def _apply_into(d: dict[str, Any], e: Event, owned: set[str]) -> None:
    """Fold event *e* into the field dict *d* of a RoomState (the single state-update rule).

    The containers named in *owned* (``variables``, ``visits``, ``memory``, ``usage``) belong
    to *d* and are changed in place; the others are copied first (see :func:`_own`).
    """
    t = e.type
    data = e.data
    if t is _STARTED:
        node = e.node
        assert node is not None
        visits = d["visits"] if "visits" in owned else _own(d, owned, "visits")
        visits[node] = data["visit"]
        d["current_node"] = node
        d["attempt"] = data["attempt"]
        d["steps"] += 1
        d["wake_at"] = None
        d["status"] = _RUNNING
        d["node_seq"] = e.seq
    elif t is _COMPLETED:
        assign = data.get("assign")
        target = data.get("output_to")
        if assign or target:
            variables = d["variables"] if "variables" in owned else _own(d, owned, "variables")
            if assign:
                variables.update(assign)
            if target:
                variables[target] = data.get("output")
    elif t is _TRANSITION:
        d["current_node"] = data["to"]
    elif t is _RETRY_SCHEDULED:
        d["wake_at"] = data["due_at"]
    elif t is _TOOL_CALLED or t is _LLM_CALLED:
        _add_usage(_own(d, owned, "usage"), t, data.get("usage"))
    elif t is _E.BUDGET_EXCEEDED:
        usage = _own(d, owned, "usage")
        usage["exceeded"] = [*usage.get("exceeded", ()), data["budget"]]
    elif t is _E.MEMORY_SET:
        memory = _own(d, owned, "memory")
        if data.get("deleted"):
            memory.pop(data["key"], None)
        else:
            memory[data["key"]] = data["value"]
    elif t is _E.ROOM_WAITING:
        d["status"] = RoomStatus.WAITING
        d["wake_at"] = data.get("timeout_at")
    elif t is _E.INPUT_RECEIVED:
        d["status"] = RoomStatus.RUNNING
        d["wake_at"] = None
    elif t is _E.ROOM_STARTED:
        d["status"] = RoomStatus.RUNNING
    elif t is _E.ROOM_QUEUED:
        d["status"] = RoomStatus.QUEUED
    elif t is _E.ROOM_COMPLETED or t is _E.ROOM_FAILED or t is _E.ROOM_CANCELLED:
        d["status"] = _TERMINAL_STATUS[t]
        d["wake_at"] = None
        d["reason"] = data.get("reason")
    elif t is _E.ROOM_CREATED:
        d.update(
            room_id=e.room_id,
            name=data["name"],
            workflow_id=data["workflow_id"],
            workflow_version=data["workflow_version"],
            status=RoomStatus.CREATED,
            current_node=data["initial"],
            variables=dict(data["variables"]),
            attempt=0,
            visits={},
            steps=0,
            wake_at=None,
            reason=None,
            created_at=e.timestamp,
            memory=dict(data.get("memory") or {}),
            usage={},
            node_seq=0,
        )
        owned.update(("variables", "visits", "memory", "usage"))
    d["version"] = e.seq
    d["updated_at"] = e.timestamp


def _add_usage(out: dict[str, Any], t: EventType, usage: Any) -> None:
    """Add one model or tool call to the running totals *out*."""
    counter = "model_calls" if t is _LLM_CALLED else "tool_calls"
    out[counter] = out.get(counter, 0) + 1
    if usage is not None and isinstance(usage, Mapping):  # a tool call's is None
        for key in ("prompt_tokens", "completion_tokens"):
            out[key] = out.get(key, 0) + int(usage.get(key) or 0)
        cost = usage.get("cost_usd")
        if cost is not None:
            out["cost_usd"] = round(out.get("cost_usd", 0.0) + float(cost), 10)


_TERMINAL_STATUS: Final = {
    _E.ROOM_COMPLETED: RoomStatus.COMPLETED,
    _E.ROOM_FAILED: RoomStatus.FAILED,
    _E.ROOM_CANCELLED: RoomStatus.CANCELLED,
}


_fields: Final = state_fields


def apply(state: RoomState | None, events: Iterable[Event]) -> RoomState:
    """Fold *events* into *state* (None before ``ROOM_CREATED``).

    Raises:
        CorruptLogError: the events do not start with ``ROOM_CREATED`` when *state* is None,
            a sequence number is not the next one, or there are no events at all.
    """
    d: dict[str, Any] = _fields(state) if state is not None else {}
    owned: set[str] = set()
    for e in events:
        expected = d.get("version", 0) + 1
        if e.seq != expected:
            raise CorruptLogError(
                e.room_id,
                f"has event seq {e.seq} after {expected - 1}: a gap or a duplicate",
            )
        if not d and e.type is not _E.ROOM_CREATED:
            raise CorruptLogError(e.room_id, f"starts with {e.type}, not ROOM_CREATED")
        _apply_into(d, e, owned)
    if not d:
        raise CorruptLogError("", "there are no events to fold")
    return RoomState(**d)


def fold(events: Iterable[Event]) -> RoomState:
    """Rebuild a room's state from its whole log, from ``ROOM_CREATED`` on.

    Raises:
        CorruptLogError: see :func:`apply`.
    """
    return apply(None, events)


replay = fold
"""Alias of :func:`fold`: folding a room's log reproduces its stored state exactly."""


# --- emitting -------------------------------------------------------------------------------


class _Emitter:
    """Numbers events after *state*'s last one and folds each into the new state as it goes."""

    __slots__ = ("d", "events", "now", "owned", "room_id")

    def __init__(self, state: RoomState | None, now: int, room_id: RoomId | None = None) -> None:
        self.d: dict[str, Any] = _fields(state) if state is not None else {"version": 0}
        self.owned: set[str] = set()
        self.events: list[Event | Hop] = []  # Hops only in advance (see EventBatch)
        self.now = now
        # a new room (no state yet) is given its id
        self.room_id: RoomId = state.room_id if state is not None else cast(RoomId, room_id)

    def emit(
        self,
        type: EventType,
        level: Level,
        node: str | None,
        data: Mapping[str, Any],
        error: ErrorInfo | None = None,
        duration_ms: float | None = None,
    ) -> None:
        e = _Event(
            self.room_id,
            self.d["version"] + 1,
            type,
            level,
            self.now,
            node,
            data,
            error,
            duration_ms,
        )
        _apply_into(self.d, e, self.owned)
        self.events.append(e)

    def fail(self, node: str | None, reason: str, error: ErrorInfo | None = None) -> None:
        self.emit(_E.ROOM_FAILED, Level.ERROR, node, {"reason": reason}, error)

    def step(self) -> Step:
        # only advance adds Hops, and it returns its events as an EventBatch
        return Step(RoomState(**self.d), cast("tuple[Event, ...]", tuple(self.events)))


class RoomView(Mapping[str, Any]):
    """``room`` in expressions: a read-only view of id, name, workflow, version, attempt, steps.

    Built over the engine's field dict or a :class:`RoomState`, without copying either.
    """

    __slots__ = ("_get",)

    def __init__(self, source: Mapping[str, Any] | RoomState) -> None:
        self._get: Callable[[str], Any] = (
            source.__getitem__ if isinstance(source, dict) else partial(getattr, source)
        )

    def __getitem__(self, key: str) -> Any:
        return self._get(_ROOM_KEYS[key])

    def __iter__(self) -> Iterator[str]:
        return iter(_ROOM_KEYS)

    def __len__(self) -> int:
        return len(_ROOM_KEYS)


def _room_now(d: dict[str, Any]) -> dict[str, Any]:
    """``room`` as a dict of its values now: for guards read before the room changes again
    (an expression reads a dict's keys on its fastest path)."""
    return {
        "id": d["room_id"],
        "name": d["name"],
        "workflow": d["workflow_id"],
        "version": d["workflow_version"],
        "attempt": d["attempt"],
        "steps": d["steps"],
    }


_ROOM_KEYS: Final = {
    "id": "room_id",
    "name": "name",
    "workflow": "workflow_id",
    "version": "workflow_version",
    "attempt": "attempt",
    "steps": "steps",
}


def _out_of_steps(em: _Emitter, wf: Workflow, node_id: str) -> bool:
    """Fail the room when it has started ``max_steps`` node attempts (retries count)."""
    if em.d["steps"] < wf.max_steps:
        return False
    em.fail(
        node_id,
        f"step limit of {wf.max_steps} reached before node {node_id!r}; raise "
        f"the workflow's max_steps or check it for a loop that never ends",
    )
    return True


def _enter(em: _Emitter, wf: Workflow, node_id: str) -> None:
    """Start a visit of *node_id*: NODE_STARTED, and for wait/end nodes what follows at once."""
    d = em.d
    if d["steps"] >= wf.max_steps and _out_of_steps(em, wf, node_id):  # no call if under
        return
    budget = wf.budget
    if budget is not None and node_id != budget.on_exceeded:
        breach = budget.breach(d["usage"], em.now - d["created_at"])
        if breach is not None:
            _exceeded(em, wf, node_id, breach)
            return
    # NODE_STARTED, folded here by the rule of _apply_into (the hot path of every step)
    visits = d["visits"] if "visits" in em.owned else _own(d, em.owned, "visits")
    visit = visits.get(node_id, 0) + 1
    seq = d["version"] + 1
    now = em.now
    em.events.append(
        _Event(em.room_id, seq, _STARTED, _INFO, now, node_id, {"attempt": 1, "visit": visit})
    )
    visits[node_id] = visit
    d["current_node"] = node_id
    d["attempt"] = 1
    d["steps"] += 1
    d["wake_at"] = None
    d["status"] = _RUNNING
    d["node_seq"] = d["version"] = seq
    d["updated_at"] = now
    np = wf.plan.nodes[node_id]
    prepared = np.prepared
    if isinstance(prepared, PreparedWait):
        data: dict[str, Any] = {}
        if prepared.prompt is not None:
            try:
                data["prompt"] = prepared.prompt.render_text(
                    {"vars": d["variables"], "memory": d["memory"], "room": RoomView(d)}
                )
            except EvaluationError as exc:
                em.fail(node_id, f"nodes.{node_id}.prompt: {exc}", ErrorInfo.from_exception(exc))
                return
        if prepared.schema is not None:
            data["schema"] = prepared.schema
        if np.node.timeout_s is not None:
            data["timeout_at"] = em.now + round(np.node.timeout_s * 1000)
        em.emit(_E.ROOM_WAITING, Level.INFO, node_id, data)
    elif isinstance(prepared, PreparedEnd):
        reason = None
        if prepared.reason is not None:
            try:
                reason = prepared.reason.render_text(
                    {"vars": d["variables"], "memory": d["memory"], "room": RoomView(d)}
                )
            except EvaluationError as exc:
                em.fail(node_id, f"nodes.{node_id}.reason: {exc}", ErrorInfo.from_exception(exc))
                return
        if prepared.failed:
            em.fail(node_id, str(reason) if reason is not None else f"ended at {node_id!r}")
        else:
            em.emit(
                _E.ROOM_COMPLETED,
                Level.INFO,
                node_id,
                {"reason": reason} if reason is not None else {},
            )


def _exceeded(em: _Emitter, wf: Workflow, node_id: str, breach: tuple[str, float, float]) -> None:
    """A budget ran out at *node_id*: log it, then wait at ``on_exceeded`` or fail the room."""
    name, limit, used = breach
    em.emit(_E.BUDGET_EXCEEDED, Level.WARN, node_id, {"budget": name, "limit": limit, "used": used})
    assert wf.budget is not None
    target = wf.budget.on_exceeded
    if target is None:
        em.fail(
            node_id, f"budget exceeded: {name} {used:g} > {limit:g} (workflow budget.max_{name})"
        )
        return
    em.emit(
        _E.TRANSITION,
        Level.DEBUG,
        node_id,
        {"from": node_id, "to": target, "on": "budget_exceeded", "index": -1},
    )
    _enter(em, wf, target)


def _spread(room_id: str, node: str, visit: int, attempt: int) -> float:
    """A deterministic number in [-1, 1] per attempt, for retry jitter."""
    return zlib.crc32(f"{room_id}:{node}:{visit}:{attempt}".encode()) / 0x7FFFFFFF - 1.0


def _finish(
    em: _Emitter,
    wf: Workflow,
    np: NodePlan,
    outcome: Outcome,
    input: Any = None,
    duration_ms: float | None = None,
    scope: dict[str, Any] | None = None,
) -> None:
    """Record how the current node ended, then retry it, route on, or fail the room.

    *scope* is the guards' scope to use when the outcome has no output and no error (a
    chain of pure nodes keeps one over its working state); else one is made if needed.
    """
    d = em.d
    if outcome.duration_ms is not None:
        duration_ms = outcome.duration_ms
    node = np.node
    node_id = node.id
    for r in outcome.records:
        t = r.type
        if t is not _TOOL_CALLED:
            em.emit(t, r.level, node_id, r.data, r.error, r.duration_ms)
            continue
        # TOOL_CALLED, folded here by the rule of _apply_into (the hot path of a tool step)
        seq = d["version"] + 1
        logged = r.data
        em.events.append(
            _Event(em.room_id, seq, t, r.level, em.now, node_id, logged, r.error, r.duration_ms)
        )
        _add_usage(_own(d, em.owned, "usage"), t, logged.get("usage"))
        d["version"] = seq
        d["updated_at"] = em.now
    label = outcome.label
    error_scope = None
    if label in FAILURE_LABELS:
        attempt = d["attempt"]
        retry = node.retry
        error = outcome.error
        will_retry = (
            retry is not None
            and outcome.retryable
            and attempt < retry.max_attempts
            and retry.retries(label, error.type if error is not None else None)
        )
        em.emit(
            _E.NODE_FAILED,
            Level.WARN if will_retry else Level.ERROR,
            node_id,
            {"outcome": label, "attempt": attempt},
            error,
            duration_ms,
        )
        if will_retry:
            assert retry is not None
            visit = d["visits"].get(node_id, 0)
            delay_ms = round(
                retry.delay_s(attempt, _spread(d["room_id"], node_id, visit, attempt)) * 1000
            )
            if outcome.retry_after_s is not None:  # the provider said when (Retry-After)
                delay_ms = max(delay_ms, round(outcome.retry_after_s * 1000))
            em.emit(
                _E.RETRY_SCHEDULED,
                Level.WARN,
                node_id,
                {"attempt": attempt + 1, "delay_ms": delay_ms, "due_at": em.now + delay_ms},
            )
            return
        labels: tuple[str, ...] = (label, "error") if label == "timeout" else (label,)
        if error is not None:
            error_scope = {"type": error.type, "message": error.message}
    else:
        # NODE_COMPLETED, folded here by the rule of _apply_into (the hot path of every step)
        data: dict[str, Any] = {"outcome": label}
        output = outcome.output
        if output is not None:
            data["output"] = output
        assign = outcome.assign
        target = node.output
        if assign or target:
            owned = em.owned
            variables = d["variables"] if "variables" in owned else _own(d, owned, "variables")
            if assign:
                data["assign"] = assign = dict(assign)
                variables.update(assign)
            if target:
                data["output_to"] = target
                variables[target] = output
        seq = d["version"] + 1
        em.events.append(
            _Event(em.room_id, seq, _COMPLETED, _INFO, em.now, node_id, data, None, duration_ms)
        )
        d["version"] = seq
        d["updated_at"] = em.now
        labels = (label,)
    if outcome.output is not None or input is not None or error_scope is not None:
        scope = None
    for lab in labels:
        for route in np.routes.get(lab, ()):
            if route.guard is not None:
                if scope is None:
                    scope = {
                        "vars": d["variables"],
                        "memory": d["memory"],
                        "output": outcome.output,
                        "input": input,
                        "error": error_scope,
                        "room": _room_now(d),
                    }
                try:
                    if not is_truthy(route.guard.evaluate(scope)):
                        continue
                except EvaluationError as exc:
                    em.fail(
                        node_id,
                        f"transitions[{route.index}].when: {exc}",
                        ErrorInfo.from_exception(exc, with_traceback=False),
                    )
                    return
            # TRANSITION, folded here by the rule of _apply_into
            target = route.target
            seq = d["version"] + 1
            transition = {"from": node_id, "to": target, "on": lab, "index": route.index}
            em.events.append(
                _Event(em.room_id, seq, _TRANSITION, _DEBUG, em.now, node_id, transition)
            )
            d["current_node"] = target
            d["version"] = seq
            d["updated_at"] = em.now
            _enter(em, wf, target)
            return
    refused = TransitionNotAllowedError(d["room_id"], node_id, label)
    detail = f" ({outcome.error.type}: {outcome.error.message})" if outcome.error else ""
    em.fail(node_id, f"{refused}{detail}", ErrorInfo(type(refused).__name__, str(refused)))


# --- the public steps -----------------------------------------------------------------------


def _require(state: RoomState, action: str, *allowed: RoomStatus) -> None:
    if state.status not in allowed:
        names = ", ".join(s.value for s in allowed)
        raise RoomStatusError(state.room_id, state.status.value, action, f"needs: {names}")


def create_room(
    wf: Workflow,
    room_id: RoomId,
    *,
    now: int,
    variables: Mapping[str, Any] | None = None,
    name: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> Step:
    """The first event of a room: ``ROOM_CREATED`` with the workflow's defaults and *variables*
    (and, for a sub-workflow's room, its *lineage*: root, parent, depth and the tree's limits).
    """
    em = _Emitter(None, now, room_id)
    data: dict[str, Any] = {
        "name": name or wf.id,
        "workflow_id": wf.id,
        "workflow_version": wf.version,
        "initial": wf.start,
        "variables": {**wf.variables, **(variables or {})},
    }
    if lineage is not None:
        data["lineage"] = dict(lineage)
    em.emit(_E.ROOM_CREATED, Level.INFO, None, data)
    return em.step()


def queue(state: RoomState, *, now: int) -> Step:
    """Mark a created room as queued for a worker.

    Raises:
        RoomStatusError: the room is not ``created``.
    """
    _require(state, "queue it", RoomStatus.CREATED)
    em = _Emitter(state, now)
    em.emit(_E.ROOM_QUEUED, Level.INFO, None, {})
    return em.step()


def start(wf: Workflow, state: RoomState, *, now: int) -> Step:
    """Start a created or queued room at its initial node.

    Raises:
        RoomStatusError: the room has already started.
    """
    _require(state, "start it", RoomStatus.CREATED, RoomStatus.QUEUED)
    em = _Emitter(state, now)
    em.emit(_E.ROOM_STARTED, Level.INFO, None, {})
    assert state.current_node is not None
    _enter(em, wf, state.current_node)
    return em.step()


def decide(
    wf: Workflow, state: RoomState, outcome: Outcome, *, now: int, duration_ms: float | None = None
) -> Step:
    """The current node's attempt ended with *outcome*: retry, route on, wait, end or fail.

    *duration_ms* (how long the attempt took) is recorded unless the outcome carries its own.

    Raises:
        RoomStatusError: the room is not running a node (terminal, waiting or sleeping).
    """
    if state.status is not _RUNNING or state.wake_at is not None:
        _require(state, "record a node outcome", RoomStatus.RUNNING)
        raise RoomStatusError(
            state.room_id, "sleeping until a retry", "record a node outcome", "call wake() first"
        )
    assert state.current_node is not None
    em = _Emitter(state, now)
    _finish(em, wf, wf.plan.nodes[state.current_node], outcome, duration_ms=duration_ms)
    return em.step()


def can_advance(wf: Workflow, state: RoomState) -> bool:
    """Whether :func:`advance` can go on from *state*: the room is running, with no retry
    pending, at a pure node (one whose executor evaluates it synchronously: ``set`` without
    memory entries, ``decision``)."""
    node = state.current_node
    return (
        state.status is _RUNNING
        and state.wake_at is None
        and node is not None
        and wf.plan.nodes[node].pure
    )


def advance(
    wf: Workflow,
    state: RoomState,
    *,
    now: int,
    limit: int,
    timer: Callable[[], float] | None = None,
    scrub: Callable[[Outcome], Outcome] | None = None,
) -> Step:
    """Run a chain of pure nodes (``set``, ``decision``) from *state* in one call.

    Each node is evaluated synchronously (its executor's ``evaluate``) over one working
    state, and its outcome decided exactly as :func:`decide` would: every node gets its
    own ``NODE_COMPLETED``, ``TRANSITION`` and the next ``NODE_STARTED``, numbered in turn,
    so the events are those of the same nodes run one by one and the state is their fold.
    The chain stops after *limit* nodes, or as soon as the room is not at a pure node to
    run: before an IO node (whose ``NODE_STARTED`` is the last event), at a wait or an
    end, at a retry's backoff, a budget breach or ``max_steps`` (checked per node).

    An outcome holding a value no store can keep becomes the node's non-retryable
    ``error`` outcome (:class:`~openrooms.errors.UnstorableValueError`), as the runner
    does for any node.

    Args:
        now: the time (ms) of every event.
        limit: at most this many nodes (at least 1).
        timer: a monotonic clock in seconds (``time.perf_counter``) to time each
            evaluation for ``NODE_COMPLETED``'s ``duration_ms``; None records no duration.
        scrub: applied to every outcome before it is recorded (the runner removes the
            environment's secret values with it).

    Returns:
        The new state and the chain's events; no events when :func:`can_advance` is false.
    """
    if not can_advance(wf, state):
        return Step(state, ())
    em = _Emitter(state, now)
    d = em.d
    # copied once for the whole chain; the fold changes them in place from here on
    variables = _own(d, em.owned, "variables")
    visits = _own(d, em.owned, "visits")
    scope: dict[str, Any] = {
        "vars": variables,
        "memory": d["memory"],
        "output": None,
        "input": None,
        "error": None,
        "room": RoomView(d),
    }
    nodes = wf.plan.nodes
    np = nodes[d["current_node"]]
    duration: float | None = None
    events = em.events
    room_id = em.room_id
    # the hot path below keeps the event counters and the node in locals, written into `d`
    # (_sync) before the general code reads it; `steps` and `attempt` stay in `d`, where
    # `room` in expressions reads them
    seq, node_seq = d["version"], d["node_seq"]
    checked_entry = wf.budget is not None
    max_steps = wf.max_steps
    for _ in range(max(1, limit)):
        if timer is not None:
            started = timer()
        try:
            result = np.evaluate(scope)
        except Exception as exc:  # as the runner does for any node: the node's error
            result = Outcome.from_exception(exc)
        if timer is not None:
            duration = (timer() - started) * 1000
        check = np.result_check  # 0: never plain (it has an output); 1: keys too; 2: values
        if (
            type(result) is dict
            and scrub is None
            and check
            and (not result or (_plain_values(result) if check == 2 else _plain(result)))
        ):
            # the hot path: a plain success given as its assignments. The events are those
            # of _complete, each folded here by the rule of _apply_into for its type (the
            # property tests check that folding the events gives the same state).
            # Its NODE_COMPLETED, TRANSITION and NODE_STARTED are recorded as one Hop, made
            # into events when the batch is read (EventBatch).
            node_id = np.node.id
            seq += 1
            assign = None
            if result:
                # a new dict of the node's own (result_check 2) is kept as it is
                assign = result if check == 2 else dict(result)
                variables.update(assign)
            route = None
            try:
                for route in np.ok_routes:
                    guard = route.guard
                    if guard is None or guard.evaluator(scope):  # is_truthy
                        break
                else:
                    route = None
            except EvaluationError as exc:
                assert route is not None
                events.append(_completed(room_id, seq, now, node_id, assign, duration))
                _sync(d, seq, node_seq, node_id, now)
                em.fail(
                    node_id,
                    f"transitions[{route.index}].when: {exc}",
                    ErrorInfo.from_exception(exc, with_traceback=False),
                )
                break
            if route is None:
                events.append(_completed(room_id, seq, now, node_id, assign, duration))
                _sync(d, seq, node_seq, node_id, now)
                refused = TransitionNotAllowedError(room_id, node_id, "ok")
                em.fail(node_id, str(refused), ErrorInfo(type(refused).__name__, str(refused)))
                break
            target = route.target
            np = nodes[target]
            steps = d["steps"]
            if checked_entry or steps >= max_steps or not np.pure:
                events.append((seq, now, node_id, assign, duration, route.index, target, None))
                seq += 1
                _sync(d, seq, node_seq, target, now)
                _enter(em, wf, target)  # the checks, a wait or an end: the general way
                seq, node_seq = d["version"], d["node_seq"]
            else:
                # and NODE_STARTED of the next pure node; the room is running with no timer
                visit = visits.get(target, 0) + 1
                events.append((seq, now, node_id, assign, duration, route.index, target, visit))
                seq += 2
                visits[target] = visit
                d["attempt"] = 1
                d["steps"] = steps + 1
                node_seq = seq
                continue
        else:
            _sync(d, seq, node_seq, np.node.id, now)
            if type(result) is dict and scrub is None and not np.node.output:
                # a success whose values need the full storable check
                checked = _storable_outcome(np.node.id, Outcome(assign=result))
                if checked.is_failure:
                    _finish(em, wf, np, checked, duration_ms=duration, scope=scope)
                else:
                    _complete(em, wf, np, checked.assign, duration, scope)
            else:
                outcome = result if isinstance(result, Outcome) else Outcome(assign=result)
                if scrub is not None:
                    outcome = scrub(outcome)
                if outcome.assign or outcome.output is not None:
                    outcome = _storable_outcome(np.node.id, outcome)
                if (
                    outcome.label in FAILURE_LABELS
                    or outcome.output is not None
                    or outcome.records
                    or np.node.output
                ):
                    _finish(em, wf, np, outcome, duration_ms=duration, scope=scope)
                else:
                    _complete(em, wf, np, outcome.assign, duration, scope, outcome.label)
            seq, node_seq = d["version"], d["node_seq"]
        if d["status"] is not RoomStatus.RUNNING or d["wake_at"] is not None:
            break
        np = nodes[d["current_node"]]
        if not np.pure:
            break
    else:
        _sync(d, seq, node_seq, np.node.id, now)
    return Step(RoomState(**d), EventBatch(room_id, events))


def _completed(
    room_id: RoomId,
    seq: int,
    now: int,
    node_id: str,
    assign: dict[str, Any] | None,
    duration: float | None,
) -> Event:
    """The hot path's ``NODE_COMPLETED`` (of :func:`advance`) when no transition follows."""
    data = {"outcome": "ok"} if assign is None else {"outcome": "ok", "assign": assign}
    return _Event(room_id, seq, _COMPLETED, _INFO, now, node_id, data, None, duration)


def _sync(d: dict[str, Any], seq: int, node_seq: int, node: str, now: int) -> None:
    """Write the hot path's counters and node of :func:`advance` into the field dict *d*."""
    if seq != d["version"]:
        d["version"] = seq
        d["updated_at"] = now
    d["node_seq"] = node_seq
    d["current_node"] = node


_MAX_PLAIN_INT: Final = 2**63


def _plain(values: Mapping[str, Any]) -> bool:
    """Whether every entry of *values* is plainly storable: an ASCII name and a value that
    is None, a bool, a 64-bit integer, a finite float or ASCII text (the usual case;
    anything else is checked in full)."""
    for key in values:
        if type(key) is not str or not key.isascii():
            return False
    return _plain_values(values)


def _plain_values(values: Mapping[str, Any]) -> bool:
    """The values' half of :func:`_plain`, alone for a dict whose keys are known to be
    variable names (an executor's ``fresh_assignments``)."""
    for value in values.values():
        kind = type(value)
        if kind is int:
            if not -_MAX_PLAIN_INT < value < _MAX_PLAIN_INT:
                return False
        elif kind is str:
            if not value.isascii():
                return False
        elif kind is float:
            if value - value != 0.0:  # inf or nan
                return False
        elif value is not None and kind is not bool:
            return False
    return True


def _complete(
    em: _Emitter,
    wf: Workflow,
    np: NodePlan,
    assign: Mapping[str, Any] | None,
    duration_ms: float | None,
    scope: dict[str, Any],
    label: str = "ok",
) -> None:
    """:func:`_finish` for the common case of a chain, made short: a success with no output
    and no records. The events are the same; each is folded here by the rule of
    :func:`_apply_into` for its type, over containers the chain owns (the property tests
    check that folding the events gives the same state)."""
    d = em.d
    events = em.events
    now = em.now
    room_id = em.room_id
    node_id = np.node.id
    seq = d["version"] + 1
    data: dict[str, Any] = {"outcome": label}
    if assign:
        data["assign"] = assign = dict(assign)
        d["variables"].update(assign)  # owned by the chain (see advance)
    events.append(_Event(room_id, seq, _COMPLETED, _INFO, now, node_id, data, None, duration_ms))
    d["version"] = seq
    d["updated_at"] = now
    for route in np.routes.get(label, ()):
        guard = route.guard
        if guard is not None:
            try:
                if not is_truthy(guard.evaluate(scope)):
                    continue
            except EvaluationError as exc:
                em.fail(
                    node_id,
                    f"transitions[{route.index}].when: {exc}",
                    ErrorInfo.from_exception(exc, with_traceback=False),
                )
                return
        target = route.target
        seq += 1
        transition = {"from": node_id, "to": target, "on": label, "index": route.index}
        events.append(_Event(room_id, seq, _TRANSITION, _DEBUG, now, node_id, transition))
        d["current_node"] = target
        d["version"] = seq
        steps = d["steps"]
        if wf.budget is not None or steps >= wf.max_steps or not wf.plan.nodes[target].pure:
            _enter(em, wf, target)  # the checks, a wait or an end: the general way
            return
        # NODE_STARTED of the next pure node; the room is running with no timer already
        seq += 1
        visits = d["visits"]
        visit = visits.get(target, 0) + 1
        started = {"attempt": 1, "visit": visit}
        events.append(_Event(room_id, seq, _STARTED, _INFO, now, target, started))
        visits[target] = visit
        d["attempt"] = 1
        d["steps"] = steps + 1
        d["node_seq"] = d["version"] = seq
        return
    refused = TransitionNotAllowedError(room_id, node_id, label)
    em.fail(node_id, str(refused), ErrorInfo(type(refused).__name__, str(refused)))


_Event: Final = Event.make


def _storable_outcome(node_id: str, outcome: Outcome) -> Outcome:
    """*outcome*, or the node's non-retryable error when a value in it cannot be stored.

    Its lists and objects are copied: a chain changes its working variables in place, and
    a value such as ``{{ vars }}`` is that very dict (kept as it is, the room's variables
    would come to hold themselves, and the event's data would change after the fact)."""
    try:
        assign = outcome.assign
        if assign:
            check_storable(assign, f"nodes.{node_id} assign", depth=1)
            if any(type(v) in (dict, list, tuple) for v in assign.values()):
                assign = {k: _detached(v) for k, v in assign.items()}
        output = outcome.output
        if output is not None:
            check_storable(output, f"nodes.{node_id} output")
            output = _detached(output)
    except UnstorableValueError as exc:
        info = ErrorInfo.from_exception(exc, with_traceback=False)
        return Outcome.failed(info, retryable=False)
    if assign is outcome.assign and output is outcome.output:
        return outcome
    return attrs.evolve(outcome, assign=assign, output=output)


def _detached(value: Any) -> Any:
    """*value* with its lists and objects copied (a storable value: JSON types, bounded
    depth), so it shares no container with the state it was computed from."""
    kind = type(value)
    if kind is dict:
        return {k: _detached(v) for k, v in value.items()}
    if kind is list:
        return [_detached(v) for v in value]
    if kind is tuple:
        return tuple(_detached(v) for v in value)
    return value


def record(wf: Workflow, state: RoomState, records: Iterable[LogRecord], *, now: int) -> Step:
    """A running node made calls (model, tool, branch, memory): log them before it ends.

    The journal (:mod:`openrooms.journal`) commits these as they happen, so a crash
    mid-node loses none and a re-execution can reuse them.

    Raises:
        RoomStatusError: the room is not running a node.
    """
    if state.status is not RoomStatus.RUNNING or state.wake_at is not None:
        _require(state, "record a node's calls", RoomStatus.RUNNING)
        raise RoomStatusError(
            state.room_id, "sleeping until a retry", "record a node's calls", "call wake() first"
        )
    em = _Emitter(state, now)
    node = state.current_node
    assert node is not None
    called = False
    for r in records:
        em.emit(r.type, r.level, node, r.data, r.error, r.duration_ms)
        called = called or r.type is _E.LLM_CALLED
    budget = wf.budget
    if called and budget is not None:
        breach = budget.breach(em.d["usage"], now - state.created_at)
        if breach is not None:
            _exceeded(em, wf, node, breach)  # the node stops; the runner sees it is not running
    return em.step()


def wake(wf: Workflow, state: RoomState, *, now: int) -> Step:
    """A due timer: start the next attempt of a retried node, or time out a wait.

    Raises:
        RoomStatusError: no timer is due (``wake_at`` is unset or later than *now*).
    """
    if state.wake_at is None or state.wake_at > now:
        raise RoomStatusError(
            state.room_id, state.status.value, "wake it", "no retry or wait timeout is due"
        )
    node_id = state.current_node
    assert node_id is not None
    em = _Emitter(state, now)
    if state.status is RoomStatus.WAITING:
        np = wf.plan.nodes[node_id]
        timeout_s = np.node.timeout_s or 0.0
        outcome = Outcome(
            label="timeout",
            error=ErrorInfo("TimeoutError", f"no input within {timeout_s:g} s"),
            retryable=False,
        )
        _finish(em, wf, np, outcome)
    else:
        _require(state, "wake it", RoomStatus.RUNNING)
        if _out_of_steps(em, wf, node_id):  # a retry is an attempt like any other
            return em.step()
        em.emit(
            _E.NODE_STARTED,
            Level.INFO,
            node_id,
            {"attempt": state.attempt + 1, "visit": state.visit},
        )
    return em.step()


def receive_input(wf: Workflow, state: RoomState, data: Any, *, now: int) -> Step:
    """Deliver input to a waiting room: it completes the wait node with *data* as its output.

    Raises:
        RoomStatusError: the room is not waiting.
        SchemaValidationError: *data* breaks the wait node's schema (nothing is recorded).
        UnstorableValueError: *data* holds a value no store can keep (inf, a lone surrogate).
    """
    _require(state, "send it input", RoomStatus.WAITING)
    assert state.current_node is not None
    np = wf.plan.nodes[state.current_node]
    prepared = np.prepared
    check_storable(data, f"input for wait node {state.current_node!r}")
    if isinstance(prepared, PreparedWait) and prepared.compiled is not None:
        prepared.compiled.validate(data, what=f"input for wait node {state.current_node!r}")
    em = _Emitter(state, now)
    em.emit(_E.INPUT_RECEIVED, Level.INFO, state.current_node, {"input": data})
    _finish(em, wf, np, Outcome(output=data), input=data)
    return em.step()


def cancel(state: RoomState, *, now: int, reason: str = "cancelled") -> Step:
    """Cancel a room that has not finished.

    Raises:
        RoomStatusError: the room has already finished.
    """
    if state.status.is_terminal:
        raise RoomStatusError(
            state.room_id, state.status.value, "cancel it", "it has already finished"
        )
    em = _Emitter(state, now)
    em.emit(_E.ROOM_CANCELLED, Level.WARN, state.current_node, {"reason": reason})
    return em.step()


def fail(state: RoomState, *, now: int, reason: str, error: ErrorInfo | None = None) -> Step:
    """Fail a room that has not finished (an executor bug, a missing workflow, a budget).

    Raises:
        RoomStatusError: the room has already finished.
    """
    if state.status.is_terminal:
        raise RoomStatusError(
            state.room_id, state.status.value, "fail it", "it has already finished"
        )
    em = _Emitter(state, now)
    em.fail(state.current_node, reason, error)
    return em.step()


def resumed(state: RoomState, *, now: int, previous_owner: str | None = None) -> Step:
    """Note in the log that a runner took over a room left mid-node (nothing else changes)."""
    em = _Emitter(state, now)
    data: dict[str, Any] = {"attempt": state.attempt, "idempotency_key": state.idempotency_key}
    if previous_owner:
        data["previous_owner"] = previous_owner
    em.emit(_E.ROOM_RESUMED, Level.WARN, state.current_node, data)
    return em.step()
