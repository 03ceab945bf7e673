"""``parallel``, ``map`` and ``subworkflow``: work fanned out inside one node, joined durably.

::

    research:
      type: parallel
      branches:                      # run concurrently; each result lands in its output
        facts: {type: tool, tool: lookup, args: {q: "{{ vars.topic }}"}, output: facts}
        draft: {type: agent, agent: writer, prompt: "Draft on {{ vars.topic }}", output: draft}
    summarise:
      type: map
      items: "{{ vars.documents }}"  # a list; `item` and `index` in the inline node's templates
      node: {type: agent, agent: summariser, prompt: "Summarise: {{ item }}"}
      concurrency: 4
      output: summaries              # results, in item order
    checkout:
      type: subworkflow
      workflow: payment              # a registered workflow, run as a child room
      input: {amount: "{{ vars.total }}"}
      output: payment                # the child's final variables

Each finished branch or item is committed as ``BRANCH_COMPLETED`` at once, so a crash
re-runs only the ones that had not finished. A failing branch or item makes the
node's outcome ``error`` (after the others finish), routed by ``on: error``.

A ``subworkflow`` child is a room of its own (id: the parent attempt's idempotency key,
plus the branch), with its own state and log: ``openrooms show`` and ``logs`` work on
it, and a resumed parent picks up the same child instead of starting another.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import attrs

from openrooms._wording import article, is_variable_name
from openrooms.errors import InfrastructureError, Problem, RoomLimitError
from openrooms.events import ErrorInfo, EventType, Level
from openrooms.expressions import CompiledValue, compile_value
from openrooms.journal import RoomStoppedError
from openrooms.nodes.base import (
    CONFIG_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
    unknown_keys,
)
from openrooms.nodes.builtin import _compile

if TYPE_CHECKING:
    from openrooms.runtime import Runtime
    from openrooms.workflow import Node, Workflow

__all__ = [
    "MapExecutor",
    "ParallelExecutor",
    "SubworkflowExecutor",
    "lineage_of",
    "subworkflow_calls",
]

MAX_BRANCHES = 32
MAX_ITEMS = 10_000
MAX_CONCURRENCY = 64
_INLINE_KEYS = frozenset({"type", "output", "description"})


@attrs.frozen(slots=True)
class Inline:
    """A node written inside a ``parallel`` or ``map`` node, compiled."""

    node: Node
    executor: NodeExecutor
    prepared: Any


def _inline_node(spec: object, node_id: str, path: str, problems: list[Problem]) -> Node | None:
    """The :class:`Node` an inline spec describes, or None (with problems) if it cannot be."""
    from openrooms.registries import validation_registries
    from openrooms.workflow import Node as NodeClass

    node_types = validation_registries().node_types

    if not isinstance(spec, Mapping):
        problems.append(Problem(path, "expected a node: a mapping with 'type' and its settings"))
        return None
    kind = spec.get("type")
    executor = node_types.find(kind) if isinstance(kind, str) else None
    if executor is None:
        problems.append(
            Problem(
                f"{path}.type",
                f"unknown node type {kind!r}",
                f"known: {', '.join(node_types.names())}",
            )
        )
        return None
    if executor.engine_handled:
        problems.append(
            Problem(f"{path}.type", f"{article(repr(kind))} node cannot run inside another node")
        )
        return None
    output = spec.get("output")
    if output is not None and not is_variable_name(output):
        problems.append(Problem(f"{path}.output", f"{output!r} is not a valid variable name"))
    config = {k: v for k, v in spec.items() if k not in _INLINE_KEYS}
    node = NodeClass(id=node_id, type=str(kind), config=config, output=output)
    problems.extend(executor.validate(node, path))
    return node


def _compile_inline(node: Node | None) -> Inline:
    from openrooms.registries import validation_registries

    assert node is not None, "prepare() runs only on a node that validated"
    executor = validation_registries().node_types.get(node.type)
    return Inline(node, executor, executor.prepare(node))


async def _run_inline(
    ctx: NodeContext, inline: Inline, scope: dict[str, Any], branch: str
) -> Outcome:
    """Run one branch or item (reusing its recorded result), then commit that it finished."""
    journal = ctx.journal
    if journal is not None and not journal.echo:  # a re-run executes the branch again
        recorded = journal.take(
            EventType.BRANCH_COMPLETED, lambda e: e.data.get("branch") == branch
        )
        if recorded is not None:
            if recorded.error is not None:
                return Outcome.failed(recorded.error)
            return Outcome(
                output=recorded.data.get("output"), assign=recorded.data.get("assign") or None
            )
    sub = ctx.derive(
        inline.node, inline.prepared, scope, journal.scoped(branch) if journal else None, branch
    )
    try:
        outcome = await inline.executor.execute(sub)
    except (RoomStoppedError, InfrastructureError):  # a store or lease failed: not the branch
        raise
    except Exception as exc:
        outcome = Outcome.from_exception(exc)
    if not isinstance(outcome, Outcome):
        outcome = Outcome.failed(TypeError(f"branch {branch!r} returned {type(outcome).__name__}"))
    if journal is None or sub.journal is None:
        return outcome
    if outcome.records:  # what the branch logged on completing, in the branch's scope
        try:
            await sub.journal.acommit(*outcome.records)
        except (RoomStoppedError, InfrastructureError):
            raise
        except Exception as exc:  # e.g. a value no store can keep: the branch failed with it
            outcome = Outcome.from_exception(exc)
    await journal.acommit(_completed(branch, outcome))
    return attrs.evolve(outcome, records=())


def _completed(branch: str, outcome: Outcome) -> LogRecord:
    """The ``BRANCH_COMPLETED`` record of a branch that ended with *outcome*."""
    data: dict[str, Any] = {"branch": branch}
    if outcome.is_failure:
        return LogRecord(
            EventType.BRANCH_COMPLETED, {**data, "ok": False}, Level.WARN, None, outcome.error
        )
    data.update(ok=True, output=outcome.output)
    if outcome.assign:
        data["assign"] = dict(outcome.assign)
    return LogRecord(EventType.BRANCH_COMPLETED, data, Level.INFO)


async def _all(branches: Iterable[Awaitable[Outcome]]) -> list[Outcome]:
    """Every branch's outcome, once every branch has ended: a branch that raises (a store
    failed, the room was stopped) is raised only after the others have ended too, so none
    goes on committing after the node's own outcome is decided."""
    ended = await asyncio.gather(*branches, return_exceptions=True)
    for result in ended:
        if isinstance(result, BaseException):
            raise result
    return cast("list[Outcome]", ended)


async def _warm_up(ctx: NodeContext, inline: Inline, branch: str) -> None:
    """Let an inline node prepare what its calls need (an agent: its model's import)."""
    warm_up = getattr(inline.executor, "warm_up", None)
    if warm_up is not None:
        await warm_up(ctx.derive(inline.node, inline.prepared, dict(ctx.scope), None, branch))


def _joined_failure(failures: Sequence[tuple[str, Outcome]]) -> Outcome:
    """One ``error`` outcome for the failed branches; equal messages are said once."""
    by_message: dict[str, list[str]] = {}
    for name, outcome in failures:
        err = outcome.error
        text = f"{err.type}: {err.message}" if err else outcome.label
        if len(text) > 300:
            text = text[:297] + "..."
        by_message.setdefault(text, []).append(name)
    parts = [f"{', '.join(names)}: {text}" for text, names in by_message.items()]
    return Outcome.failed(
        ErrorInfo("BranchError", f"{len(failures)} failed — " + "; ".join(parts)),
        retryable=all(o.retryable for _, o in failures),
    )


class ParallelExecutor(NodeExecutor):
    """``parallel``: named ``branches`` (inline nodes) run concurrently and are joined."""

    labels = frozenset({"ok"})

    _KEYS = frozenset({"branches"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        branches = node.config.get("branches")
        if not isinstance(branches, Mapping) or not branches:
            problems.append(
                Problem(f"{path}.branches", "a 'parallel' node needs 'branches': name -> node")
            )
            return problems
        if len(branches) > MAX_BRANCHES:
            problems.append(
                Problem(
                    f"{path}.branches",
                    f"{len(branches)} branches exceed the limit of {MAX_BRANCHES}",
                )
            )
        for name, spec in branches.items():
            where = f"{path}.branches.{name}"
            if not isinstance(name, str) or not name.isidentifier():
                problems.append(Problem(where, f"{name!r} is not a valid branch name"))
                continue
            inline = _inline_node(spec, f"{node.id}.{name}", where, problems)
            if inline is not None and inline.output is None and inline.type != "set":
                problems.append(
                    Problem(
                        f"{where}.output",
                        "each branch but a 'set' needs 'output': the variable for its result",
                    )
                )
        return problems

    def validate_in(self, workflow: Workflow, node: Node, path: str) -> list[Problem]:
        problems: list[Problem] = []
        for name, inline in self.prepare(node):
            problems.extend(
                inline.executor.validate_in(workflow, inline.node, f"{path}.branches.{name}")
            )
        return problems

    def prepare(self, node: Node) -> tuple[tuple[str, Inline], ...]:
        problems: list[Problem] = []
        return tuple(
            (name, _compile_inline(_inline_node(spec, f"{node.id}.{name}", "", problems)))
            for name, spec in node.config["branches"].items()
        )

    async def warm_up(self, ctx: NodeContext) -> None:
        """Warm up every branch (the runner calls this before the node's deadline starts)."""
        branches: tuple[tuple[str, Inline], ...] = ctx.prepared
        for name, inline in branches:
            await _warm_up(ctx, inline, name)

    async def execute(self, ctx: NodeContext) -> Outcome:
        branches: tuple[tuple[str, Inline], ...] = ctx.prepared
        outcomes = await _all(
            _run_inline(ctx, inline, dict(ctx.scope), name) for name, inline in branches
        )
        failures = [
            (name, o) for (name, _), o in zip(branches, outcomes, strict=True) if o.is_failure
        ]
        if failures:
            return _joined_failure(failures)
        assign: dict[str, Any] = {}
        for (_, inline), outcome in zip(branches, outcomes, strict=True):
            if outcome.assign:
                assign.update(outcome.assign)
            if inline.node.output is not None:  # a set branch assigns its variables itself
                assign[inline.node.output] = outcome.output
        return Outcome(
            output={name: o.output for (name, _), o in zip(branches, outcomes, strict=True)},
            assign=assign,
        )


@attrs.frozen(slots=True)
class PreparedMap:
    items: CompiledValue
    inline: Inline
    concurrency: int


class MapExecutor(NodeExecutor):
    """``map``: one inline ``node`` per element of ``items``, ``concurrency`` at a time."""

    labels = frozenset({"ok"})

    _KEYS = frozenset({"items", "node", "concurrency"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        if "items" not in node.config:
            problems.append(
                Problem(
                    f"{path}.items", "a 'map' node needs 'items': a list or a template giving one"
                )
            )
        else:
            _compile(node.config["items"], f"{path}.items", problems)
        if "node" not in node.config:
            problems.append(
                Problem(f"{path}.node", "a 'map' node needs 'node': the node to run per item")
            )
        else:
            spec = node.config["node"]
            _inline_node(spec, f"{node.id}.item", f"{path}.node", problems)
            if isinstance(spec, Mapping) and "output" in spec:
                problems.append(
                    Problem(
                        f"{path}.node.output",
                        "an item's result goes into the map node's own output list",
                        "remove it, and set 'output' on the map node",
                    )
                )
        concurrency = node.config.get("concurrency", 4)
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):
            problems.append(
                Problem(
                    f"{path}.concurrency",
                    f"expected a whole number from 1 to {MAX_CONCURRENCY}, got {concurrency!r}",
                )
            )
        return problems

    def validate_in(self, workflow: Workflow, node: Node, path: str) -> list[Problem]:
        inline = self.prepare(node).inline
        return inline.executor.validate_in(workflow, inline.node, f"{path}.node")

    def prepare(self, node: Node) -> PreparedMap:
        problems: list[Problem] = []
        return PreparedMap(
            items=compile_value(node.config["items"], names=CONFIG_NAMES),
            inline=_compile_inline(
                _inline_node(node.config["node"], f"{node.id}.item", "", problems)
            ),
            concurrency=node.config.get("concurrency", 4),
        )

    async def warm_up(self, ctx: NodeContext) -> None:
        """Warm up the item node (the runner calls this before the node's deadline starts)."""
        prepared: PreparedMap = ctx.prepared
        await _warm_up(ctx, prepared.inline, "items")

    async def execute(self, ctx: NodeContext) -> Outcome:
        from openrooms.errors import EvaluationError

        prepared: PreparedMap = ctx.prepared
        items = prepared.items.render(ctx.scope)
        if not isinstance(items, list):
            raise EvaluationError(
                f"nodes.{ctx.node.id}.items", f"expected a list, got {type(items).__name__}"
            )
        if len(items) > MAX_ITEMS:
            raise EvaluationError(
                f"nodes.{ctx.node.id}.items", f"{len(items)} items exceed the limit of {MAX_ITEMS}"
            )
        gate = asyncio.Semaphore(prepared.concurrency)

        async def one(index: int, item: Any) -> Outcome:
            async with gate:
                scope = {**ctx.scope, "item": item, "index": index}
                return await _run_inline(ctx, prepared.inline, scope, f"items[{index}]")

        outcomes = await _all(one(i, item) for i, item in enumerate(items))
        failures = [(f"items[{i}]", o) for i, o in enumerate(outcomes) if o.is_failure]
        if failures:
            return _joined_failure(failures)
        return Outcome.ok([o.output for o in outcomes])


@attrs.frozen(slots=True)
class PreparedSubworkflow:
    workflow: str
    version: int | None
    input: CompiledValue


class SubworkflowExecutor(NodeExecutor):
    """``subworkflow``: run a registered workflow as a child room and wait for it to finish."""

    labels = frozenset({"ok"})

    _KEYS = frozenset({"workflow", "version", "input"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        wf = node.config.get("workflow")
        from openrooms.plan import WORKFLOW_ID

        if not isinstance(wf, str) or not wf:
            problems.append(
                Problem(f"{path}.workflow", "a 'subworkflow' node needs 'workflow': a workflow id")
            )
        elif not WORKFLOW_ID.fullmatch(wf):
            problems.append(
                Problem(
                    f"{path}.workflow",
                    f"{wf[:80]!r} is not a workflow id",
                    "a workflow id is 1 to 100 of a-z 0-9 _ -, written out: it is not a template",
                )
            )
        version = node.config.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**63
        ):
            problems.append(
                Problem(
                    f"{path}.version",
                    f"expected a whole number from 1 to 2**63 - 1, got {version!r}",
                )
            )
        given = node.config.get("input", {})
        if not isinstance(given, Mapping):
            problems.append(Problem(f"{path}.input", "expected a mapping of the child's variables"))
        else:
            _compile(dict(given), f"{path}.input", problems)
        return problems

    def validate_in(self, workflow: Workflow, node: Node, path: str) -> list[Problem]:
        if node.config.get("workflow") == workflow.id:
            return [
                Problem(
                    f"{path}.workflow",
                    f"workflow {workflow.id!r} runs itself as a sub-workflow: every room of it "
                    f"would start another, without end",
                    "call a different workflow, or loop with a transition back to a node",
                )
            ]
        return []

    def prepare(self, node: Node) -> PreparedSubworkflow:
        return PreparedSubworkflow(
            workflow=node.config["workflow"],
            version=node.config.get("version"),
            input=compile_value(dict(node.config.get("input", {})), names=CONFIG_NAMES),
        )

    async def execute(self, ctx: NodeContext) -> Outcome:
        from openrooms.errors import RoomNotFoundError
        from openrooms.room import RoomStatus

        prepared: PreparedSubworkflow = ctx.prepared
        runtime = ctx.runtime
        if runtime is None:
            raise RuntimeError("a 'subworkflow' node runs only under a Runtime")
        scope = ctx.journal.scope if ctx.journal is not None else ""
        child_id = _child_id(ctx.room.idempotency_key, scope)
        try:
            child = runtime.get_room(child_id)
        except RoomNotFoundError:
            wf = runtime.get_workflow(prepared.workflow, prepared.version)
            variables = prepared.input.render(ctx.scope)
            try:
                lineage = _child_lineage(runtime, ctx, wf)
            except RoomLimitError as exc:
                return Outcome.failed(
                    ErrorInfo.from_exception(exc, with_traceback=False), retryable=False
                )
            child = runtime.create_room(
                wf,
                variables,
                name=f"{ctx.room.room_id}/{ctx.node.id}",
                room_id=child_id,
                lineage=lineage,
            )
        if not child.status.is_terminal:
            child = await runtime.arun(child_id)
        if child.status is RoomStatus.COMPLETED:
            return Outcome.ok(dict(child.variables))
        unfinished = not child.status.is_terminal and child.status is not RoomStatus.WAITING
        if unfinished and runtime.stop_requested:
            # asked to stop (Ctrl-C) mid-child: stop this node too, so a resume runs the
            # same child on instead of failing this attempt
            raise RoomStoppedError(child_id, child.status.value)
        if child.status is RoomStatus.WAITING:
            return Outcome.failed(
                ErrorInfo(
                    "SubworkflowWaitingError",
                    f"child room {child_id!r} is waiting for input; a sub-workflow that waits "
                    f"is not supported yet, so this node fails (the child stays waiting: "
                    f"`openrooms input {child_id} --data ...` finishes it on its own)",
                ),
                retryable=False,
            )
        limited = RoomLimitError.__name__ in (child.reason or "")
        return Outcome.failed(
            ErrorInfo(
                RoomLimitError.__name__ if limited else "SubworkflowError",
                f"child room {child_id!r} {child.status.value}: {child.reason}",
            ),
            retryable=not limited,  # a limit is hit again on every retry
        )


def _child_id(key: str, scope: str) -> str:
    base = key.replace(":", ".")
    if scope:
        base += "." + re.sub(r"[^A-Za-z0-9_-]+", "_", scope).strip("_")
    return base


# --- limits on trees of sub-workflow rooms ----------------------------------------------------


def lineage_of(runtime: Runtime, room_id: str) -> Mapping[str, Any] | None:
    """Where a room sits in a tree of sub-workflow rooms (from its ``ROOM_CREATED`` event):
    ``root``, ``parent``, ``depth``, the tree's ``max_depth`` and ``max_rooms``, and its
    ``number`` among the rooms its root created; None for a root room."""
    first = runtime.events(room_id, limit=1)
    if not first or first[0].type is not EventType.ROOM_CREATED:
        return None
    lineage = first[0].data.get("lineage")
    return lineage if isinstance(lineage, Mapping) else None


def _child_lineage(runtime: Runtime, ctx: NodeContext, child_wf: Workflow) -> dict[str, Any]:
    """The lineage of a child room about to be created under ``ctx.room``.

    Raises:
        RoomLimitError: the child would nest deeper, or be one more room, than its tree allows.
    """
    parent_id = ctx.room.room_id
    parent = lineage_of(runtime, parent_id)
    if parent is None:  # the parent is a root: its workflow's budget, else the runtime's
        budget = ctx.workflow.budget if ctx.workflow is not None else None
        max_depth = runtime.config.max_depth
        max_rooms = runtime.config.max_rooms
        if budget is not None:
            max_depth = budget.max_depth if budget.max_depth is not None else max_depth
            max_rooms = budget.max_rooms if budget.max_rooms is not None else max_rooms
        root, depth = str(parent_id), 0
    else:
        max_depth, max_rooms = int(parent["max_depth"]), int(parent["max_rooms"])
        root, depth = str(parent["root"]), int(parent["depth"])
    own = child_wf.budget  # a sub-workflow's own budget may only tighten its tree's limits
    if own is not None:
        max_depth = min(max_depth, own.max_depth if own.max_depth is not None else max_depth)
        max_rooms = min(max_rooms, own.max_rooms if own.max_rooms is not None else max_rooms)
    if depth + 1 > max_depth:
        raise RoomLimitError(parent_id, "max_depth", max_depth)
    # counted in the store, so every process and every resume sees the same tree; two
    # runners creating rooms of one tree at the same moment may pass the limit by one each
    number = runtime.states.count_rooms(tree_prefix(root)) + 1
    if number > max_rooms:
        raise RoomLimitError(parent_id, "max_rooms", max_rooms)
    return {
        "root": root,
        "parent": parent_id,
        "depth": depth + 1,
        "max_depth": max_depth,
        "max_rooms": max_rooms,
        "number": number,
    }


def tree_prefix(root: str) -> str:
    """What the id of every room in *root*'s tree of sub-workflow rooms starts with: a
    child's id is its parent's attempt key (``parent:node:visit:attempt``) with ``.`` for
    ``:``, so its own children's ids start with it in turn."""
    return root.replace(":", ".") + "."


def subworkflow_calls(workflow: Workflow) -> list[tuple[str, str, int | None]]:
    """Every ``subworkflow`` node of *workflow*, also inside ``parallel`` and ``map`` nodes:
    ``(path, workflow id, version or None)``."""
    calls: list[tuple[str, str, int | None]] = []

    def visit(kind: object, config: Mapping[str, Any], path: str) -> None:
        if kind == "subworkflow" and isinstance(config.get("workflow"), str):
            version = config.get("version")
            calls.append((path, config["workflow"], version if isinstance(version, int) else None))
        elif kind == "map" and isinstance(config.get("node"), Mapping):
            spec = config["node"]
            visit(spec.get("type"), spec, f"{path}.node")
        elif kind == "parallel" and isinstance(config.get("branches"), Mapping):
            for name, spec in config["branches"].items():
                if isinstance(spec, Mapping):
                    visit(spec.get("type"), spec, f"{path}.branches.{name}")

    for node_id, node in workflow.nodes.items():
        visit(node.type, node.config, f"nodes.{node_id}")
    return calls
