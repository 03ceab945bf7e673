"""Validation of a workflow, and the compiled plan the engine runs on.

:func:`build_plan` checks the whole table at once — unknown nodes, types and tools,
duplicate defaults, unreachable nodes, dead ends, guards that do not parse, size
limits — and reports every problem with its path and a fix hint. On success it
returns per-node routing tables with guards compiled once.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import attrs

from openrooms._wording import VARIABLE_NAME_HINT, article, did_you_mean, is_variable_name
from openrooms.errors import ExpressionError, Problem, WorkflowValidationError
from openrooms.expressions import Expression, Template, compile_expression
from openrooms.nodes.base import FAILURE_LABELS, GUARD_NAMES, NodeExecutor
from openrooms.registries import validation_registries
from openrooms.storable import find_unstorable
from openrooms.workflow import MAX_ROOM_DEPTH, MAX_ROOMS_PER_ROOT

if TYPE_CHECKING:
    from openrooms.schema import Schema
    from openrooms.workflow import Node, Workflow

__all__ = [
    "MAX_MAX_STEPS",
    "MAX_NODES",
    "MAX_TRANSITIONS",
    "NodePlan",
    "Plan",
    "PreparedEnd",
    "PreparedWait",
    "Route",
    "Validator",
    "build_plan",
    "validating_file",
]

MAX_NODES: Final = 1_000
MAX_TRANSITIONS: Final = 5_000
MAX_MAX_STEPS: Final = 10_000_000
MAX_DEFINITION_BYTES: Final = 2_000_000
MAX_RETRY_ATTEMPTS: Final = 100
MAX_INT64: Final = 2**63 - 1
"""Versions and other counts are stored as 64-bit integers."""
MAX_NODE_TIMEOUT_S: Final = 366 * 86_400
"""A node attempt's ``timeout_s``, and any retry delay, is at most 366 days."""
MAX_WAIT_TIMEOUT_S: Final = 3_660 * 86_400
"""A ``wait`` node's ``timeout_s`` is at most ten years (3,660 days)."""
MAX_RETRY_MULTIPLIER: Final = 100

WORKFLOW_ID: Final = re.compile(r"[a-z0-9_-]{1,100}")
NODE_ID: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
LABEL: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}")
_FIRST: Final = {"ok": 0, "error": 1, "timeout": 2}


@attrs.frozen(slots=True)
class Route:
    """One compiled transition: its position in the table, target and guard."""

    index: int
    target: str
    guard: Expression | None


@attrs.frozen(slots=True)
class NodePlan:
    """A node with its executor, prepared config and outgoing routes by outcome label.

    ``pure``: the executor evaluates this node synchronously, with no IO
    (:meth:`NodeExecutor.is_pure`), so the engine runs it in a chain (``engine.advance``).
    Made from the fields, for that chain: ``ok_routes`` (the routes on ``ok``) and
    ``evaluate`` (*scope* -> outcome, the executor's :meth:`NodeExecutor.evaluator`).
    """

    node: Node
    executor: NodeExecutor
    prepared: Any
    routes: Mapping[str, tuple[Route, ...]]
    pure: bool = False
    ok_routes: tuple[Route, ...] = attrs.field(init=False, eq=False, repr=False)
    result_check: int = attrs.field(init=False, eq=False, repr=False)
    """How a chain checks the dict ``evaluate`` returns before it keeps it as the node's
    assignments: 0 never (the node has an ``output``: the general way), 1 keys and values,
    2 values only, the dict kept as it is (the executor's ``fresh_assignments``)."""
    evaluate: Callable[[dict[str, Any]], Any] = attrs.field(init=False, eq=False, repr=False)

    @ok_routes.default
    def _ok_routes(self) -> tuple[Route, ...]:
        return self.routes.get("ok", ())

    @result_check.default
    def _result_check(self) -> int:
        if self.node.output:
            return 0
        return 2 if getattr(self.executor, "fresh_assignments", False) else 1

    @evaluate.default
    def _evaluate(self) -> Callable[[dict[str, Any]], Any]:
        """The executor's ``evaluate`` for this node (:meth:`NodeExecutor.evaluator`)."""
        make = getattr(self.executor, "evaluator", None)  # an executor not derived from ours
        if make is None:
            return partial(self.executor.evaluate, self.prepared)
        return make(self.prepared)  # type: ignore[no-any-return]

    @property
    def kind(self) -> str:
        """The node's type name."""
        return self.node.type


@attrs.frozen(slots=True)
class Plan:
    """The compiled workflow: node id -> :class:`NodePlan`, and the compiled ``inputs``
    schema the variables a caller passes are checked against (None: any are taken)."""

    nodes: Mapping[str, NodePlan]
    inputs: Schema | None = None


@attrs.frozen(slots=True)
class PreparedWait:
    """A ``wait`` node's compiled config; the engine enters and completes wait nodes itself."""

    prompt: Template | None
    schema: Mapping[str, Any] | None
    compiled: Schema | None = None


@attrs.frozen(slots=True)
class PreparedEnd:
    """An ``end`` node's compiled config; the engine finishes the room with it."""

    failed: bool
    reason: Template | None


def _suggest(name: str, options: list[str], kind: str = "nodes") -> str:
    return did_you_mean(name, options, f"known {kind}: {', '.join(options[:20])}")


def _is_finite(value: object) -> bool:
    if isinstance(value, int):  # math.isfinite() of a huge int overflows
        return not isinstance(value, bool)
    return isinstance(value, float) and math.isfinite(value)


class Validator:
    """The one list of problems of one workflow definition.

    A workflow file's reader (:func:`openrooms.serde.workflow_from_dict`) adds the problems of
    the file format first, in a :func:`validating_file` block; the checks of the workflow
    built from it then go on in the same list. Where the reader rejected a piece it put a
    default in its place, so nothing more is said at a path it already reported.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.rejected: set[str] = set()  # paths the file reader reported

    def add(self, path: str, message: str, hint: str = "") -> None:
        """Record a problem, unless the file reader already reported one at *path*."""
        if path not in self.rejected:
            self.problems.append(Problem(path, message, hint))

    def reject(self, path: str, message: str, hint: str = "") -> None:
        """Record a problem of the file format: the value at *path* was not used."""
        self.problems.append(Problem(path, message, hint))
        self.rejected.add(path)


_file_validator: contextvars.ContextVar[Validator | None] = contextvars.ContextVar(
    "openrooms_file_validator", default=None
)


@contextlib.contextmanager
def validating_file() -> Iterator[Validator]:
    """A :class:`Validator` that the next workflow built in this block continues.

    The file reader reports into it; the ``Workflow(...)`` it then builds checks into the
    same list and raises one :class:`~openrooms.errors.WorkflowValidationError` with
    everything, also when only the reader found something.
    """
    validator = Validator()
    token = _file_validator.set(validator)
    try:
        yield validator
    finally:
        _file_validator.reset(token)


class _Checker:
    """Checks one workflow, into a :class:`Validator`."""

    def __init__(self, wf: Workflow, validator: Validator) -> None:
        self.wf = wf
        self.problems = validator.problems
        self.add = validator.add
        self.node_ids = list(wf.nodes)
        self.inputs: Schema | None = None

    def header(self) -> None:
        wf = self.wf
        if not isinstance(wf.id, str) or not WORKFLOW_ID.fullmatch(wf.id):
            self.add(
                "id",
                f"{wf.id!r} is not a valid workflow id",
                "use 1-100 lowercase letters, digits, '_' or '-'",
            )
        v = wf.version
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_INT64:
            self.add("version", f"expected a whole number from 1 to 2**63 - 1, got {v!r}")
        ms = wf.max_steps
        if isinstance(ms, bool) or not isinstance(ms, int) or not 1 <= ms <= MAX_MAX_STEPS:
            self.add("max_steps", f"expected a whole number from 1 to {MAX_MAX_STEPS}, got {ms!r}")
        if not isinstance(wf.description, str):
            self.add("description", "expected a string")
        for name, value in wf.variables.items():
            if not is_variable_name(name):
                self.add(
                    "variables",
                    f"{name!r} is not a valid variable name",
                    VARIABLE_NAME_HINT,
                )
            elif (found := find_unstorable(value, f"variables.{name}")) is not None:
                self.add(found[0], f"default {found[1]}", "only JSON values can be stored")
        if len(wf.nodes) > MAX_NODES:
            self.add("nodes", f"{len(wf.nodes)} nodes exceed the limit of {MAX_NODES}")
        if len(wf.transitions) > MAX_TRANSITIONS:
            self.add(
                "transitions",
                f"{len(wf.transitions)} transitions exceed the limit of {MAX_TRANSITIONS}",
            )
        if not wf.nodes:
            self.add("nodes", "a workflow needs at least one node")
        elif wf.initial is not None and wf.initial not in wf.nodes:
            self.add("initial", f"unknown node {wf.initial!r}", _suggest(wf.initial, self.node_ids))
        self.agents()
        self.budget()
        if self.wf.inputs is not None:
            from openrooms.inputs import inputs_problems

            problems, self.inputs = inputs_problems(self.wf)
            self.extend(problems)

    def budget(self) -> None:
        b = self.wf.budget
        if b is None:
            return
        for name in ("max_tokens", "max_cost_usd", "max_wall_s"):
            value = getattr(b, name)
            if value is not None and (
                not _is_finite(value) or not 0 < value <= MAX_INT64 or isinstance(value, bool)
            ):
                self.add(f"budget.{name}", f"expected a positive, finite number, got {value!r}")
        for name in ("max_depth", "max_rooms"):
            value = getattr(b, name)
            top = MAX_ROOM_DEPTH if name == "max_depth" else MAX_ROOMS_PER_ROOT
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top
            ):
                self.add(
                    f"budget.{name}", f"expected a whole number from 0 to {top}, got {value!r}"
                )
        target = b.on_exceeded
        if target is not None:
            node = self.wf.nodes.get(target)
            if node is None:
                self.add(
                    "budget.on_exceeded",
                    f"unknown node {target!r}",
                    _suggest(target, self.node_ids),
                )
            elif node.type != "wait":
                self.add(
                    "budget.on_exceeded",
                    f"{target!r} is {article(repr(node.type))} node",
                    "name a 'wait' node, where a person decides what happens next",
                )

    def agents(self) -> None:
        for name, agent in self.wf.agents.items():
            path = f"agents.{name}"
            if not isinstance(agent.model, str) or not agent.model:
                self.add(f"{path}.model", "an agent needs a model, e.g. 'openai/gpt-4o-mini'")
            if not 0 <= agent.temperature <= 2:
                self.add(f"{path}.temperature", f"expected 0 to 2, got {agent.temperature!r}")
            if not 1 <= agent.max_turns <= 100:
                self.add(f"{path}.max_turns", f"expected 1 to 100, got {agent.max_turns!r}")
            if agent.max_tokens is not None and not 1 <= agent.max_tokens <= MAX_INT64:
                self.add(
                    f"{path}.max_tokens", f"expected a positive number, got {agent.max_tokens!r}"
                )
            known = validation_registries().tools
            for i, tool in enumerate(agent.tools):
                if tool not in known:
                    self.add(
                        f"{path}.tools[{i}]",
                        f"unknown tool {tool!r}",
                        _suggest(tool, known.names(), "tools"),
                    )

    def node(self, node_id: str, node: Node) -> NodeExecutor | None:
        path = f"nodes.{node_id}"
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            self.add(
                path,
                f"{node_id!r} is not a valid node id",
                "start with a letter or '_', then letters, digits, '_' or '-' (max 100)",
            )
        if node.id != node_id:
            self.add(f"{path}.id", f"node is filed under {node_id!r} but its id is {node.id!r}")
        if node.output is not None and not is_variable_name(node.output):
            self.add(f"{path}.output", f"{node.output!r} is not a valid variable name")
        top = MAX_WAIT_TIMEOUT_S if node.type == "wait" else MAX_NODE_TIMEOUT_S
        if node.timeout_s is not None and not (
            _is_finite(node.timeout_s) and 0 < node.timeout_s <= top
        ):
            self.add(
                f"{path}.timeout_s",
                f"expected a positive number of seconds up to {top:,} "
                f"({top // 86_400:,} days), got {node.timeout_s!r}",
            )
        bad = find_unstorable(node.config, path)
        if bad is not None:
            self.add(bad[0], f"the value {bad[1]}", "a workflow holds only JSON values")
        if node.retry is not None:
            self.retry(path, node)
        node_types = validation_registries().node_types
        executor = node_types.find(node.type)
        if executor is None:
            self.add(
                f"{path}.type",
                f"unknown node type {node.type!r}",
                f"known types: {', '.join(node_types.names())}",
            )
            return None
        if node.type == "end" and (node.retry is not None or node.output is not None):
            self.add(path, "an 'end' node takes no 'retry' or 'output'")
        found = executor.validate(node, path)
        if not found:
            found = executor.validate_in(self.wf, node, path)
        self.extend(found)
        return None if found else executor

    def extend(self, problems: list[Problem]) -> None:
        for p in problems:
            self.add(p.path, p.message, p.hint)

    def retry(self, path: str, node: Node) -> None:
        r = node.retry
        assert r is not None
        path = f"{path}.retry"
        if not 1 <= r.max_attempts <= MAX_RETRY_ATTEMPTS:
            self.add(
                f"{path}.max_attempts",
                f"expected 1 to {MAX_RETRY_ATTEMPTS}, got {r.max_attempts!r}",
            )
        for name in ("backoff_s", "max_delay_s"):
            value = getattr(r, name)
            if not (_is_finite(value) and 0 <= value <= MAX_NODE_TIMEOUT_S):
                self.add(
                    f"{path}.{name}",
                    f"expected 0 to {MAX_NODE_TIMEOUT_S:,} seconds (366 days), got {value!r}",
                )
        if not (_is_finite(r.multiplier) and 1 <= r.multiplier <= MAX_RETRY_MULTIPLIER):
            self.add(
                f"{path}.multiplier",
                f"expected 1 to {MAX_RETRY_MULTIPLIER}, got {r.multiplier!r}",
            )
        if not (_is_finite(r.jitter) and 0 <= r.jitter <= 1):
            self.add(f"{path}.jitter", f"expected a fraction from 0 to 1, got {r.jitter!r}")
        if not r.retry_on:
            self.add(f"{path}.retry_on", "name at least one outcome or error type to retry")

    def routes(
        self, executors: Mapping[str, NodeExecutor | None]
    ) -> dict[str, dict[str, list[Route]]]:
        table: dict[str, dict[str, list[Route]]] = {n: {} for n in self.wf.nodes}
        defaults: dict[tuple[str, str], int] = {}
        for i, t in enumerate(self.wf.transitions):
            path = f"transitions[{i}]"
            ok = True
            for end, name in (("from", t.source), ("to", t.target)):
                if name not in self.wf.nodes:
                    self.add(
                        f"{path}.{end}",
                        f"unknown node {name!r}",
                        _suggest(str(name), self.node_ids),
                    )
                    ok = False
            if not isinstance(t.on, str) or not LABEL.fullmatch(t.on):
                self.add(
                    f"{path}.on",
                    f"{t.on!r} is not a valid outcome label",
                    "use 'ok', 'error', 'timeout' or a label of letters, digits, '_' and '-'",
                )
                ok = False
            guard = None
            if t.when is not None:
                try:
                    guard = compile_expression(t.when, names=GUARD_NAMES)
                except ExpressionError as exc:
                    self.add(f"{path}.when", str(exc))
                    ok = False
            if not ok:
                continue
            source = self.wf.nodes[t.source]
            if source.type == "end":
                self.add(
                    f"{path}.from",
                    f"{t.source!r} is an 'end' node; it cannot have transitions",
                    "point this transition from another node",
                )
                continue
            if not self.label_ok(t.on, t.source, executors.get(t.source), path):
                continue
            key = (t.source, t.on)
            if key in defaults:
                j = defaults[key]
                kind = "default" if t.when is None else "transition"
                self.add(
                    path,
                    f"node {t.source!r} already has a default transition on {t.on!r} "
                    f"(transitions[{j}] -> {self.wf.transitions[j].target!r}); this {kind} "
                    f"can never fire",
                    "give one of them a 'when' condition, or remove one",
                )
                continue
            if t.when is None:
                defaults[key] = i
            table[t.source].setdefault(t.on, []).append(Route(i, t.target, guard))
        for node_id, node in self.wf.nodes.items():
            out = table[node_id]
            unknown_type = (
                executors.get(node_id) is None
                and node.type not in validation_registries().node_types
            )
            if node.type == "end" or unknown_type:
                continue
            if not out:
                self.add(
                    f"nodes.{node_id}",
                    f"node {node_id!r} has no way out",
                    "add a transition from it, or make it an 'end' node",
                )
            elif node.type == "decision" and (node.id, "ok") not in defaults:
                self.add(
                    f"nodes.{node_id}",
                    f"decision {node_id!r} has no default transition",
                    "add a transition from it without 'when' as the else branch",
                )
            if (
                node.type == "wait"
                and node.timeout_s is not None
                and not ("timeout" in out or "error" in out)
            ):
                self.add(
                    f"nodes.{node_id}.timeout_s",
                    f"wait node {node_id!r} can time out but has no transition on 'timeout'",
                    "add a transition with on: timeout",
                )
        return table

    def label_ok(self, label: str, node_id: str, executor: NodeExecutor | None, path: str) -> bool:
        """Whether a node of this type can end with *label*; if not, say so and return False."""
        node = self.wf.nodes[node_id]
        declared = executor.labels_for(node) if executor is not None else None
        if declared is None:  # unknown or broken node, or an executor that declares nothing
            return True
        allowed = sorted(declared | FAILURE_LABELS, key=lambda x: (_FIRST.get(x, 3), x))
        if label in allowed:
            return True
        self.add(
            f"{path}.on",
            f"a {node.type!r} node never ends with outcome {label!r}",
            _suggest(label, allowed, "outcomes"),
        )
        return False

    def reachable(self, table: Mapping[str, Mapping[str, list[Route]]], start: str) -> None:
        seen = {start}
        budget = self.wf.budget
        if budget is not None and budget.on_exceeded is not None and budget.on_exceeded in table:
            seen.add(budget.on_exceeded)  # entered when a budget is exceeded
        todo = list(seen)
        while todo:
            for routes in table[todo.pop()].values():
                for r in routes:
                    if r.target not in seen:
                        seen.add(r.target)
                        todo.append(r.target)
        for node_id in self.wf.nodes:
            if node_id not in seen:
                self.add(
                    f"nodes.{node_id}",
                    f"node {node_id!r} is unreachable from {start!r}",
                    "add a transition into it, or remove it",
                )


def build_plan(wf: Workflow) -> Plan:
    """Validate *wf* and compile it.

    Raises:
        WorkflowValidationError: listing every problem found, each with its path.
    """
    validator = _file_validator.get()
    token = _file_validator.set(None)  # a workflow built while checking this one starts afresh
    try:
        return _build(wf, validator or Validator())
    finally:
        _file_validator.reset(token)


def _build(wf: Workflow, validator: Validator) -> Plan:
    checker = _Checker(wf, validator)
    read = len(checker.problems)  # the file reader's, when *wf* was read from a file
    checker.header()
    executors = {node_id: checker.node(node_id, node) for node_id, node in wf.nodes.items()}
    table = checker.routes(executors)
    if wf.nodes and (wf.initial is None or wf.initial in wf.nodes):
        checker.reachable(table, wf.start)
    if len(checker.problems) == read:
        definition = wf.to_dict()
        bad = find_unstorable(definition, "")  # text anywhere: descriptions, labels, prompts
        if bad is not None:
            checker.add(bad[0].lstrip("."), f"the value {bad[1]}", "a workflow holds only JSON")
        size = len(json.dumps(definition, default=str))
        if size > MAX_DEFINITION_BYTES:
            checker.add("", f"the definition is {size} bytes; the limit is {MAX_DEFINITION_BYTES}")
    if checker.problems:
        raise WorkflowValidationError(str(wf.id), checker.problems)
    nodes = {}
    for node_id, node in wf.nodes.items():
        executor = executors[node_id]
        assert executor is not None
        prepared = executor.prepare(node)
        nodes[node_id] = NodePlan(
            node=node,
            executor=executor,
            prepared=prepared,
            routes={label: tuple(routes) for label, routes in table[node_id].items()},
            pure=executor.is_pure(prepared),
        )
    return Plan(nodes=nodes, inputs=checker.inputs)
