"""The built-in node types: ``set``, ``decision``, ``tool``, ``wait`` and ``end``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import attrs

from openrooms.errors import ExpressionError, Problem
from openrooms.events import ErrorInfo, EventType, Level
from openrooms.expressions import CompiledValue, Template, compile_template, compile_value
from openrooms.nodes.base import (
    CONFIG_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
    unknown_keys,
)
from openrooms.schema import check_schema
from openrooms.workflow import Node

__all__ = [
    "DecisionExecutor",
    "EndExecutor",
    "SetExecutor",
    "ToolExecutor",
    "WaitExecutor",
]


def _is_identifier(name: object) -> bool:
    return isinstance(name, str) and name.isidentifier() and not name.startswith("_")


def _compile(value: Any, path: str, problems: list[Problem]) -> CompiledValue | None:
    try:
        return compile_value(value, names=CONFIG_NAMES)
    except ExpressionError as exc:
        problems.append(Problem(path, str(exc)))
        return None


def _template(value: object, path: str, problems: list[Problem]) -> Template | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(Problem(path, f"expected a string, got {type(value).__name__}"))
        return None
    try:
        return compile_template(value, names=CONFIG_NAMES)
    except ExpressionError as exc:
        problems.append(Problem(path, str(exc)))
        return None


class SetExecutor(NodeExecutor):
    """``set``: ``assign: {name: value}`` sets variables, in order; values may be templates,
    and a later value sees the earlier ones (``{a: 1, b: "{{ vars.a + 1 }}"}`` sets b to 2)."""

    _KEYS = frozenset({"assign"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        assign = node.config.get("assign")
        if not isinstance(assign, Mapping) or not assign:
            problems.append(
                Problem(
                    f"{path}.assign", "a 'set' node needs 'assign': a mapping of names to values"
                )
            )
            return problems
        for name, value in assign.items():
            if not _is_identifier(name):
                problems.append(
                    Problem(
                        f"{path}.assign",
                        f"{name!r} is not a valid variable name",
                        "use letters, digits and underscores, not starting with a digit or _",
                    )
                )
            _compile(value, f"{path}.assign.{name}", problems)
        return problems

    def prepare(self, node: Node) -> tuple[tuple[str, CompiledValue], ...]:
        return tuple(
            (name, compile_value(value, names=CONFIG_NAMES))
            for name, value in node.config["assign"].items()
        )

    async def execute(self, ctx: NodeContext) -> Outcome:
        prepared: tuple[tuple[str, CompiledValue], ...] = ctx.prepared
        if len(prepared) == 1:
            name, value = prepared[0]
            return Outcome(assign={name: value.render(ctx.scope)})
        variables = dict(ctx.variables)
        scope = ctx.scope  # made for this attempt alone, and it keeps `room` lazily available
        scope["vars"] = variables
        assigned: dict[str, Any] = {}
        for name, value in prepared:
            assigned[name] = variables[name] = value.render(scope)
        return Outcome(assign=assigned)


class DecisionExecutor(NodeExecutor):
    """``decision``: does nothing itself; its transitions' guards pick the way on."""

    def validate(self, node: Node, path: str) -> list[Problem]:
        return unknown_keys(node, path, frozenset())

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome()


@attrs.frozen(slots=True)
class PreparedTool:
    """A ``tool`` node's compiled config."""

    tool: str
    args: CompiledValue


class ToolExecutor(NodeExecutor):
    """``tool``: calls the registered tool ``tool`` with templated ``args``."""

    _KEYS = frozenset({"tool", "args"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        from openrooms.tools import default_tools

        problems = unknown_keys(node, path, self._KEYS)
        name = node.config.get("tool")
        if not isinstance(name, str) or not name:
            problems.append(Problem(f"{path}.tool", "a 'tool' node needs 'tool': a tool name"))
        elif name not in default_tools:
            import difflib

            close = difflib.get_close_matches(name, default_tools.names(), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else (f"registered tools: {', '.join(default_tools.names())}")
            )
            problems.append(Problem(f"{path}.tool", f"unknown tool {name!r}", hint))
        args = node.config.get("args", {})
        if not isinstance(args, Mapping):
            problems.append(
                Problem(f"{path}.args", "expected a mapping of argument names to values")
            )
        else:
            _compile(dict(args), f"{path}.args", problems)
        return problems

    def prepare(self, node: Node) -> PreparedTool:
        args = compile_value(dict(node.config.get("args", {})), names=CONFIG_NAMES)
        return PreparedTool(tool=node.config["tool"], args=args)

    async def execute(self, ctx: NodeContext) -> Outcome:
        from openrooms.tools.base import ToolContext

        prepared: PreparedTool = ctx.prepared
        args = prepared.args.render(ctx.scope)
        tool = ctx.tools.get(prepared.tool)
        key = ctx.idempotency_key
        data: dict[str, Any] = {"tool": prepared.tool, "args": args, "idempotency_key": key}
        started = time.perf_counter()
        try:
            result = await tool.call(
                args,
                ToolContext(
                    room_id=ctx.room.room_id,
                    node=ctx.node.id,
                    idempotency_key=key,
                    attempt=ctx.attempt,
                ),
            )
        except Exception as exc:  # a tool's failure is the node's error outcome
            info = ErrorInfo.from_exception(exc)
            elapsed = (time.perf_counter() - started) * 1000
            record = LogRecord(EventType.TOOL_CALLED, data, Level.ERROR, elapsed, info)
            return Outcome.failed(info, records=(record,))
        elapsed = (time.perf_counter() - started) * 1000
        record = LogRecord(EventType.TOOL_CALLED, {**data, "result": result}, Level.INFO, elapsed)
        return Outcome.ok(result, records=(record,))


@attrs.frozen(slots=True)
class PreparedWait:
    """A ``wait`` node's compiled config."""

    prompt: Template | None
    schema: Mapping[str, Any] | None


class WaitExecutor(NodeExecutor):
    """``wait``: the room waits for input (``prompt``, optional JSON ``schema``, ``timeout_s``).

    The engine runs it: entering it makes the room ``waiting``; input completes it with the
    input as output (``input`` in the outgoing guards); ``timeout_s`` fires ``on: timeout``.
    """

    engine_handled = True
    _KEYS = frozenset({"prompt", "schema"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        _template(node.config.get("prompt"), f"{path}.prompt", problems)
        schema = node.config.get("schema")
        if schema is not None:
            problems.extend(check_schema(schema, f"{path}.schema"))
        return problems

    def prepare(self, node: Node) -> PreparedWait:
        prompt = node.config.get("prompt")
        return PreparedWait(
            prompt=compile_template(prompt, names=CONFIG_NAMES) if prompt is not None else None,
            schema=node.config.get("schema"),
        )


@attrs.frozen(slots=True)
class PreparedEnd:
    """An ``end`` node's compiled config."""

    failed: bool
    reason: Template | None


class EndExecutor(NodeExecutor):
    """``end``: finishes the room, ``status: completed`` (default) or ``status: failed``
    with a templated ``reason``."""

    engine_handled = True
    _KEYS = frozenset({"status", "reason"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        status = node.config.get("status", "completed")
        if status not in ("completed", "failed"):
            problems.append(
                Problem(f"{path}.status", f"expected 'completed' or 'failed', got {status!r}")
            )
        _template(node.config.get("reason"), f"{path}.reason", problems)
        return problems

    def prepare(self, node: Node) -> PreparedEnd:
        reason = node.config.get("reason")
        return PreparedEnd(
            failed=node.config.get("status", "completed") == "failed",
            reason=compile_template(reason, names=CONFIG_NAMES) if reason is not None else None,
        )
