"""The one converter: every wire format (files, stored rows, API bodies, queue payloads).

``converter`` is a cattrs converter with hooks for each model; the ``*_to_dict`` /
``*_from_dict`` pairs are the JSON-ready forms the stores and the CLI write. Workflow files
get their own careful parser so a malformed file reports every problem with its path
instead of a cattrs traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import cattrs

from openrooms import loading
from openrooms._wording import did_you_mean, type_name
from openrooms.errors import CorruptRoomError, InputError, Problem, WorkflowValidationError
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.room import RoomState, RoomStatus, state_fields
from openrooms.types import RoomId
from openrooms.workflow import (
    DEFAULT_MAX_STEPS,
    AgentConfig,
    Budget,
    Node,
    RetryPolicy,
    Transition,
    Workflow,
)

if TYPE_CHECKING:
    from openrooms.plan import Validator

__all__ = [
    "converter",
    "event_from_dict",
    "event_to_dict",
    "room_to_dict",
    "state_from_dict",
    "state_to_dict",
    "workflow_from_dict",
    "workflow_from_file",
    "workflow_from_text",
    "workflow_to_dict",
]


# --- rooms and events: hand-written for speed (they are encoded on every step) ---------------


def state_to_dict(s: RoomState) -> dict[str, Any]:
    """A room state as a JSON-ready dict."""
    d = state_fields(s)
    d["status"] = s.status.value
    return d


def room_to_dict(s: RoomState) -> dict[str, Any]:
    """A room as people and API clients see it (``openrooms show --json``): the state's
    fields, with ``id`` for ``room_id`` and ``workflow: {id, version}``."""
    d = state_to_dict(s)
    d["id"] = d.pop("room_id")
    d["workflow"] = {"id": d.pop("workflow_id"), "version": d.pop("workflow_version")}
    return d


_NONE = type(None)
# (key, accepted types, what to call them); a stored row is checked before it is trusted
_STATE_FIELDS: Final = (
    ("room_id", (str,), "a string"),
    ("name", (str,), "a string"),
    ("workflow_id", (str,), "a string"),
    ("workflow_version", (int,), "a whole number"),
    ("status", (str,), "a string"),
    ("current_node", (str, _NONE), "a node id or null"),
    ("variables", (dict,), "an object"),
    ("attempt", (int,), "a whole number"),
    ("visits", (dict,), "an object"),
    ("steps", (int,), "a whole number"),
    ("wake_at", (int, _NONE), "a whole number or null"),
    ("reason", (str, _NONE), "a string or null"),
    ("created_at", (int,), "a whole number"),
    ("updated_at", (int,), "a whole number"),
    ("version", (int,), "a whole number"),
)
_STATE_OPTIONAL: Final = (
    ("memory", (dict, _NONE), "an object"),
    ("usage", (dict, _NONE), "an object"),
    ("node_seq", (int,), "a whole number"),
)
_EVENT_FIELDS: Final = (
    ("room_id", (str,), "a string"),
    ("seq", (int,), "a whole number"),
    ("type", (str,), "an event type"),
    ("level", (str,), "a level"),
    ("timestamp", (int,), "a whole number"),
)
_EVENT_OPTIONAL: Final = (
    ("node", (str, _NONE), "a node id or null"),
    ("data", (dict, _NONE), "an object"),
    ("error", (dict, _NONE), "an object or null"),
    ("duration_ms", (int, float, _NONE), "a number or null"),
)
_ERROR_FIELDS: Final = (("type", (str,), "a string"), ("message", (str,), "a string"))
_ERROR_OPTIONAL: Final = (("traceback", (str, _NONE), "a string or null"),)
_STATUSES: Final = frozenset(s.value for s in RoomStatus)
_EVENT_TYPES: Final = frozenset(t.value for t in EventType)
_LEVELS: Final = frozenset(lv.value for lv in Level)


def _field_problem(d: Mapping[str, Any], fields: Any, *, required: bool) -> str | None:
    """What is wrong with the first bad field of *d*, or None.

    Exact types, as JSON decodes them (so ``true`` is not a whole number): this runs on
    every stored state and event read back.
    """
    for key, kinds, what in fields:
        value = d.get(key, _MISSING)
        if value is _MISSING:
            if required:
                return f"missing key {key!r}"
        elif type(value) not in kinds:
            return f"{key!r} should be {what}, not {_kind(value)}"
    return None


_MISSING: Final = object()
_kind: Final = functools.partial(type_name, words="file")


def state_from_dict(d: Mapping[str, Any]) -> RoomState:
    """The inverse of :func:`state_to_dict`.

    Raises:
        CorruptRoomError: *d* is not a room state (a missing key, a wrong type, an unknown
            status); ``where`` is ``room state``, stores replace it with the table and row.
    """
    if not isinstance(d, Mapping):
        raise CorruptRoomError("?", "room state", f"expected an object, got {_kind(d)}")
    problem = _field_problem(d, _STATE_FIELDS, required=True) or _field_problem(
        d, _STATE_OPTIONAL, required=False
    )
    if problem is None and d["status"] not in _STATUSES:
        problem = f"unknown status {d['status']!r}"
    if problem is not None:
        room_id = d.get("room_id")
        raise CorruptRoomError(room_id if isinstance(room_id, str) else "?", "room state", problem)
    return RoomState(
        room_id=RoomId(d["room_id"]),
        name=d["name"],
        workflow_id=d["workflow_id"],
        workflow_version=d["workflow_version"],
        status=RoomStatus(d["status"]),
        current_node=d["current_node"],
        variables=d["variables"],
        attempt=d["attempt"],
        visits=d["visits"],
        steps=d["steps"],
        wake_at=d["wake_at"],
        reason=d["reason"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        version=d["version"],
        memory=d.get("memory") or {},
        usage=d.get("usage") or {},
        node_seq=d.get("node_seq", 0),
    )


def event_to_dict(e: Event) -> dict[str, Any]:
    """An event as a JSON-ready dict (the ``logs --json`` line format)."""
    err = e.error
    return {
        "room_id": e.room_id,
        "seq": e.seq,
        "type": e.type.value,
        "level": e.level.value,
        "timestamp": e.timestamp,
        "node": e.node,
        "data": e.data,
        "error": None
        if err is None
        else {"type": err.type, "message": err.message, "traceback": err.traceback},
        "duration_ms": e.duration_ms,
    }


def event_from_dict(d: Mapping[str, Any]) -> Event:
    """The inverse of :func:`event_to_dict`.

    Raises:
        CorruptRoomError: *d* is not an event (a missing key, a wrong type, an unknown event
            type or level); ``where`` is ``event N``, stores prefix it with the table and row.
    """
    if not isinstance(d, Mapping):
        raise CorruptRoomError("?", "event", f"expected an object, got {_kind(d)}")
    problem = _field_problem(d, _EVENT_FIELDS, required=True) or _field_problem(
        d, _EVENT_OPTIONAL, required=False
    )
    err = d.get("error")
    if problem is None:
        if d["type"] not in _EVENT_TYPES:
            problem = f"unknown event type {d['type']!r}"
        elif d["level"] not in _LEVELS:
            problem = f"unknown level {d['level']!r}"
        elif err is not None:
            problem = _field_problem(err, _ERROR_FIELDS, required=True) or _field_problem(
                err, _ERROR_OPTIONAL, required=False
            )
            problem = f"error: {problem}" if problem else None
    if problem is not None:
        room_id, seq = d.get("room_id"), d.get("seq")
        where = f"event {seq}" if isinstance(seq, int) else "event"
        raise CorruptRoomError(room_id if isinstance(room_id, str) else "?", where, problem)
    return Event(
        room_id=RoomId(d["room_id"]),
        seq=d["seq"],
        type=EventType(d["type"]),
        level=Level(d["level"]),
        timestamp=d["timestamp"],
        node=d.get("node"),
        data=d.get("data") or {},
        error=None if err is None else ErrorInfo(err["type"], err["message"], err.get("traceback")),
        duration_ms=d.get("duration_ms"),
    )


# --- workflows: the file format ---------------------------------------------------------------

_TOP: Final = (
    "id",
    "version",
    "description",
    "initial",
    "variables",
    "inputs",
    "max_steps",
    "agents",
    "budget",
    "nodes",
    "transitions",
)
_NODE_COMMON: Final = ("type", "output", "retry", "timeout_s", "description")
_RETRY: Final = ("max_attempts", "backoff_s", "multiplier", "max_delay_s", "jitter", "retry_on")
_TRANSITION: Final = ("from", "to", "on", "when")
_BUDGET: Final = (
    "max_tokens",
    "max_cost_usd",
    "max_wall_s",
    "on_exceeded",
    "max_depth",
    "max_rooms",
)

_AGENT: Final = (
    "model",
    "system_prompt",
    "tools",
    "temperature",
    "max_tokens",
    "max_turns",
    "api_base",
)


class _Reader:
    """Reads the file format into model objects, reporting what it cannot use to *validator*
    (which the workflow built from it goes on checking)."""

    def __init__(self, validator: Validator) -> None:
        self.add = validator.reject

    def keys(self, d: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in d:
            if key not in allowed:
                hint = did_you_mean(key, allowed, f"allowed: {', '.join(allowed)}")
                self.add(f"{path}.{key}" if path else str(key), "unknown key", hint)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(path, f"expected a mapping, got {_kind(value)}")
            return None
        return value

    def typed(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        kinds: tuple[type, ...],
        default: Any,
        what: str,
    ) -> Any:
        if key not in d or d[key] is None:
            return default
        value = d[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.add(f"{path}.{key}" if path else key, f"expected {what}, got {_kind(value)}")
            return default
        if float in kinds and isinstance(value, int) and not -(2**1023) < value < 2**1023:
            self.add(f"{path}.{key}" if path else key, f"expected {what}, got one too large")
            return default  # float() of it would overflow
        return value

    def retry(self, value: Any, path: str) -> RetryPolicy | None:
        d = self.mapping(value, path)
        if d is None:
            return None
        self.keys(d, _RETRY, path)
        number = (int, float)
        retry_on = d.get("retry_on", ("error", "timeout"))
        if isinstance(retry_on, str):
            retry_on = [retry_on]
        if not isinstance(retry_on, list | tuple) or not all(isinstance(x, str) for x in retry_on):
            self.add(f"{path}.retry_on", "expected a list of outcome labels or error type names")
            retry_on = ("error", "timeout")
        return RetryPolicy(
            max_attempts=self.typed(d, "max_attempts", path, (int,), 3, "a whole number"),
            backoff_s=float(self.typed(d, "backoff_s", path, number, 1.0, "a number")),
            multiplier=float(self.typed(d, "multiplier", path, number, 2.0, "a number")),
            max_delay_s=float(self.typed(d, "max_delay_s", path, number, 60.0, "a number")),
            jitter=float(self.typed(d, "jitter", path, number, 0.0, "a number")),
            retry_on=tuple(retry_on),
        )

    def node(self, node_id: str, value: Any) -> Node | None:
        path = f"nodes.{node_id}"
        d = self.mapping(value, path)
        if d is None:
            if value is None:
                self.add(path, "a node needs at least a 'type'")
            return None
        node_type = d.get("type")
        if not isinstance(node_type, str):
            self.add(
                f"{path}.type", "every node needs a 'type' (set, decision, tool, wait, end, ...)"
            )
            return None
        timeout = self.typed(d, "timeout_s", path, (int, float), None, "a number of seconds")
        output = self.typed(d, "output", path, (str,), None, "a variable name")
        return Node(
            id=str(node_id),
            type=node_type,
            config={k: v for k, v in d.items() if k not in _NODE_COMMON},
            output=output,
            retry=self.retry(d.get("retry"), f"{path}.retry"),
            timeout_s=float(timeout) if timeout is not None else None,
            description=self.typed(d, "description", path, (str,), "", "a string"),
        )

    def transition(self, i: int, value: Any) -> Transition | None:
        path = f"transitions[{i}]"
        d = self.mapping(value, path)
        if d is None:
            if value is None:
                self.add(path, "expected a mapping with 'from' and 'to'")
            return None
        keys: Mapping[Any, Any] = d
        if True in keys:  # YAML 1.1 reads the bare key `on` as the boolean true
            d = {("on" if k is True else k): v for k, v in keys.items()}
        self.keys(d, _TRANSITION, path)
        missing = [k for k in ("from", "to") if not isinstance(d.get(k), str)]
        for k in missing:
            self.add(f"{path}.{k}", f"a transition needs '{k}': a node id")
        when = d.get("when")
        if when is not None and not isinstance(when, str | bool | int | float):
            self.add(f"{path}.when", f"expected an expression string, got {_kind(when)}")
            when = None
        on = d.get("on", "ok")
        if isinstance(on, bool):  # YAML 1.1 reads values like yes/no/on/off as booleans
            self.add(f"{path}.on", f"expected an outcome label, got {on!r}", "quote it")
            return None
        if missing:
            return None
        return Transition(
            source=d["from"],
            target=d["to"],
            on=str(on),
            when=_expr_text(when) if when is not None else None,
        )

    def budget(self, value: Any) -> Budget | None:
        if value is None:
            return None
        d = self.mapping(value, "budget")
        if d is None:
            return None
        self.keys(d, _BUDGET, "budget")
        number = (int, float)
        return Budget(
            max_tokens=self.typed(d, "max_tokens", "budget", (int,), None, "a whole number"),
            max_cost_usd=self.typed(d, "max_cost_usd", "budget", number, None, "a number"),
            max_wall_s=self.typed(d, "max_wall_s", "budget", number, None, "a number"),
            on_exceeded=self.typed(d, "on_exceeded", "budget", (str,), None, "a node id"),
            max_depth=self.typed(d, "max_depth", "budget", (int,), None, "a whole number"),
            max_rooms=self.typed(d, "max_rooms", "budget", (int,), None, "a whole number"),
        )

    def agent(self, name: str, value: Any) -> AgentConfig | None:
        path = f"agents.{name}"
        d = self.mapping(value, path)
        if d is None:
            return None
        self.keys(d, _AGENT, path)
        model = self.typed(d, "model", path, (str,), "", "a model string")
        tools = d.get("tools", [])
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            self.add(f"{path}.tools", "expected a list of tool names")
            tools = []
        return AgentConfig(
            model=model,
            system_prompt=self.typed(d, "system_prompt", path, (str,), "", "a string"),
            tools=tuple(tools),
            temperature=float(self.typed(d, "temperature", path, (int, float), 0.0, "a number")),
            max_tokens=self.typed(d, "max_tokens", path, (int,), None, "a whole number"),
            max_turns=self.typed(d, "max_turns", path, (int,), 8, "a whole number"),
            api_base=self.typed(d, "api_base", path, (str,), None, "a URL string"),
        )


def _expr_text(value: str | bool | int | float) -> str:
    """A guard written as a bare YAML scalar (``when: true``) as expression text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def workflow_from_dict(data: Any) -> Workflow:
    """Build a :class:`Workflow` from the file format.

    Raises:
        WorkflowValidationError: every structural and semantic problem at once, with paths.
    """
    from openrooms.plan import validating_file  # the plan imports the node types: only here

    with validating_file() as validator:
        r = _Reader(validator)
        wf_id = str(data.get("id", "<unnamed>")) if isinstance(data, Mapping) else "<unnamed>"
        top = r.mapping(data, "")
        if top is None:
            raise WorkflowValidationError(
                wf_id, [Problem("", f"expected a mapping at the top level, got {_kind(data)}")]
            )
        r.keys(top, _TOP, "")
        if not isinstance(top.get("id"), str):
            r.add("id", "a workflow needs an 'id' string", "e.g. id: order_approval")
        nodes_in = r.mapping(top.get("nodes"), "nodes") or {}
        if "nodes" not in top:
            r.add("nodes", "a workflow needs 'nodes': a mapping of node ids to nodes")
        nodes = {}
        for node_id, value in nodes_in.items():
            node = r.node(str(node_id), value)
            if node is not None:
                nodes[str(node_id)] = node
        transitions_in = top.get("transitions", [])
        if not isinstance(transitions_in, list):
            r.add("transitions", f"expected a list, got {_kind(transitions_in)}")
            transitions_in = []
        transitions = [t for i, v in enumerate(transitions_in) if (t := r.transition(i, v))]
        agents = {
            str(name): a
            for name, value in (r.mapping(top.get("agents"), "agents") or {}).items()
            if (a := r.agent(str(name), value)) is not None
        }
        variables = r.mapping(top.get("variables"), "variables") or {}
        budget = r.budget(top.get("budget"))
        fields: dict[str, Any] = {
            "id": top.get("id") if isinstance(top.get("id"), str) else wf_id,
            "version": r.typed(top, "version", "", (int,), 1, "a whole number"),
            "description": r.typed(top, "description", "", (str,), "", "a string"),
            "initial": r.typed(top, "initial", "", (str,), None, "a node id"),
            "max_steps": r.typed(top, "max_steps", "", (int,), DEFAULT_MAX_STEPS, "a whole number"),
        }
        # checks the workflow into the same validator, and raises once with every problem
        return Workflow(
            nodes=nodes,
            transitions=tuple(transitions),
            variables=dict(variables),
            agents=agents,
            budget=budget,
            inputs=top.get("inputs"),
            **fields,
        )


def workflow_to_dict(wf: Workflow) -> dict[str, Any]:
    """The file format of *wf*, leaving out settings left at their defaults."""
    out: dict[str, Any] = {"id": wf.id, "version": wf.version}
    if wf.description:
        out["description"] = wf.description
    if wf.initial is not None:
        out["initial"] = wf.initial
    if wf.variables:
        out["variables"] = dict(wf.variables)
    if wf.inputs is not None:
        out["inputs"] = dict(wf.inputs) if isinstance(wf.inputs, Mapping) else wf.inputs
    if wf.max_steps != DEFAULT_MAX_STEPS:
        out["max_steps"] = wf.max_steps
    if wf.agents:
        out["agents"] = {name: _agent_to_dict(a) for name, a in wf.agents.items()}
    if wf.budget is not None:
        budget = converter.unstructure(wf.budget)
        out["budget"] = {k: v for k, v in budget.items() if v is not None}
    out["nodes"] = {node_id: _node_to_dict(n) for node_id, n in wf.nodes.items()}
    out["transitions"] = [_transition_to_dict(t) for t in wf.transitions]
    return out


def _node_to_dict(n: Node) -> dict[str, Any]:
    d: dict[str, Any] = {"type": n.type, **n.config}
    if n.output is not None:
        d["output"] = n.output
    if n.retry is not None:
        d["retry"] = converter.unstructure(n.retry)
        d["retry"]["retry_on"] = list(n.retry.retry_on)
    if n.timeout_s is not None:
        d["timeout_s"] = n.timeout_s
    if n.description:
        d["description"] = n.description
    return d


def _transition_to_dict(t: Transition) -> dict[str, Any]:
    d: dict[str, Any] = {"from": t.source, "to": t.target}
    if t.on != "ok":
        d["on"] = t.on
    if t.when is not None:
        d["when"] = t.when
    return d


def _agent_to_dict(a: AgentConfig) -> dict[str, Any]:
    d: dict[str, Any] = converter.unstructure(a)
    d["tools"] = list(a.tools)
    return {k: v for k, v in d.items() if v is not None}


def workflow_from_text(text: str, *, source: str = "<string>") -> Workflow:
    """Parse YAML or JSON *text* into a workflow.

    Raises:
        WorkflowValidationError: the text does not parse (or breaks a rule of
            :mod:`openrooms.loading`: duplicate keys, anchors, nesting), or the workflow is
            invalid.
    """
    try:
        data = loading.parse_yaml(text, source=source)
    except InputError as exc:
        raise _unreadable(exc) from exc
    return workflow_from_dict(data)


def workflow_from_file(path: str | Path) -> Workflow:
    """Read a workflow file: JSON if its name ends in ``.json``, else YAML.

    Raises:
        FileNotFoundError: there is no such file.
        WorkflowValidationError: the file cannot be read as UTF-8 text within the size
            limit, does not parse, or the workflow is invalid.
    """
    try:
        data = loading.load_file(path)
    except InputError as exc:
        raise _unreadable(exc) from exc
    return workflow_from_dict(data)


def _unreadable(exc: InputError) -> WorkflowValidationError:
    return WorkflowValidationError(exc.source, [Problem(exc.where, exc.message, exc.hint)])


# --- the converter ----------------------------------------------------------------------------

converter: Final = cattrs.Converter()


# predicate hooks: registering by class would make cattrs resolve Workflow's annotations,
# and its compiled ``plan`` field is typed with an import that would be circular
def _register(cls: type, to: Callable[[Any], Any], from_: Callable[[Any], Any]) -> None:
    def is_cls(t: Any) -> bool:
        return t is cls

    def structure(data: Any, _type: Any) -> Any:
        return from_(data)

    converter.register_unstructure_hook_func(is_cls, to)
    converter.register_structure_hook_func(is_cls, structure)


_register(RoomState, state_to_dict, state_from_dict)
_register(Event, event_to_dict, event_from_dict)
_register(Workflow, workflow_to_dict, workflow_from_dict)
