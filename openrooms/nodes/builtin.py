"""The built-in node types: ``set``, ``decision``, ``tool``, ``wait`` and ``end``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import attrs

from openrooms._wording import VARIABLE_NAME_HINT, did_you_mean, is_variable_name
from openrooms.config import DEFAULT_MAX_LOGGED_BYTES
from openrooms.errors import (
    EvaluationError,
    ExpressionError,
    Problem,
    SchemaValidationError,
    ToolError,
    UnsafeTemplateError,
    UnstorableValueError,
)
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.expressions import (
    CompiledValue,
    Expression,
    Template,
    compile_template,
    compile_value,
)
from openrooms.journal import logged_since_start
from openrooms.memory import RoomMemory
from openrooms.nodes.base import (
    CONFIG_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
    unknown_keys,
)
from openrooms.plan import NodePlan, PreparedEnd, PreparedWait
from openrooms.room import RoomState
from openrooms.schema import check_schema, compile_schema
from openrooms.scrub import Scrubber, secrets_in
from openrooms.storable import check_storable
from openrooms.tools.base import Tool, ToolContext
from openrooms.tools.redact import redact, truncate_json
from openrooms.types import RoomId
from openrooms.workflow import Node

if TYPE_CHECKING:
    from openrooms.tools.registry import ToolRegistry

__all__ = [
    "DecisionExecutor",
    "call_plain_tool",
    "call_tool",
    "EndExecutor",
    "SetExecutor",
    "ToolExecutor",
    "WaitExecutor",
    "plain_tool",
]


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
    and a later value sees the earlier ones (``{a: 1, b: "{{ vars.a + 1 }}"}`` sets b to 2).
    ``memory: {key: value}`` saves entries in the room's memory (``memory.key`` afterwards);
    a null value deletes the entry."""

    labels = frozenset({"ok"})
    fresh_assignments = True  # a new {name: value} per call, names checked by validate()

    _KEYS = frozenset({"assign", "memory"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        if node.output is not None:
            problems.append(
                Problem(f"{path}.output", "a 'set' node has no output", "'assign' sets variables")
            )
        assign = node.config.get("assign")
        memory = node.config.get("memory")
        if assign is None and memory is None:
            problems.append(
                Problem(
                    f"{path}.assign",
                    "a 'set' node needs 'assign' (variables) or 'memory' (memory entries)",
                )
            )
            return problems
        for key, mapping in (("assign", assign), ("memory", memory)):
            if mapping is None:
                continue
            if not isinstance(mapping, Mapping) or not mapping:
                problems.append(Problem(f"{path}.{key}", "expected a mapping of names to values"))
                continue
            for name, value in mapping.items():
                if not is_variable_name(name):
                    problems.append(
                        Problem(
                            f"{path}.{key}",
                            f"{name!r} is not a valid name",
                            VARIABLE_NAME_HINT,
                        )
                    )
                _compile(value, f"{path}.{key}.{name}", problems)
        return problems

    def prepare(self, node: Node) -> PreparedSet:
        def compiled(key: str) -> tuple[tuple[str, CompiledValue], ...]:
            return tuple(
                (name, compile_value(value, names=CONFIG_NAMES))
                for name, value in (node.config.get(key) or {}).items()
            )

        return PreparedSet(compiled("assign"), compiled("memory"))

    async def execute(self, ctx: NodeContext) -> Outcome:
        prepared: PreparedSet = ctx.prepared
        if prepared.memory:
            _remember(ctx, prepared.memory)
        assign = prepared.assign
        if not assign:
            return Outcome()
        if len(assign) == 1:
            name, value = assign[0]
            return Outcome(assign={name: value.render(ctx.scope)})
        scope = ctx.scope  # made for this attempt alone, and it keeps `room` lazily available
        scope["vars"] = dict(ctx.variables)
        return Outcome(assign=_assigned(assign, scope))

    def is_pure(self, prepared: Any) -> bool:
        # memory entries are saved through the journal: such a node runs as an IO node
        return isinstance(prepared, PreparedSet) and not prepared.memory

    def evaluator(self, prepared: Any) -> Callable[[dict[str, Any]], Outcome | dict[str, Any]]:
        # evaluate() made for one or two assignments, the common sizes
        renderers: tuple[tuple[str, Renderer], ...] = prepared.renderers
        if len(renderers) == 1:
            name, render = renderers[0]

            def evaluate_one(scope: dict[str, Any]) -> Outcome | dict[str, Any]:
                try:
                    return {name: render(scope)}
                except EvaluationError as exc:
                    return _evaluation_failed(exc)

            return evaluate_one
        if len(renderers) == 2:
            (first, render_first), (second, render_second) = renderers

            def evaluate_two(scope: dict[str, Any]) -> Outcome | dict[str, Any]:
                variables = scope["vars"]
                try:
                    value = render_first(scope)
                    old = variables.get(first, _UNSET)
                    variables[first] = value  # the second value sees the first (see evaluate)
                    try:
                        return {first: value, second: render_second(scope)}
                    finally:
                        if old is _UNSET:
                            del variables[first]
                        else:
                            variables[first] = old
                except EvaluationError as exc:
                    return _evaluation_failed(exc)

            return evaluate_two
        return partial(self.evaluate, prepared)

    def evaluate(self, prepared: Any, scope: dict[str, Any]) -> Outcome | dict[str, Any]:
        renderers: tuple[tuple[str, Renderer], ...] = prepared.renderers
        try:
            if len(renderers) == 1:
                name, render = renderers[0]
                return {name: render(scope)}
            if not renderers:
                return {}
            # a later value sees the earlier ones in the working variables; the engine
            # applies the outcome, so they are put back as they were (the last one is
            # read by nothing and never written)
            variables = scope["vars"]
            assigned: dict[str, Any] = {}
            before: list[tuple[str, Any]] = []
            last = len(renderers) - 1
            try:
                for i, (name, render) in enumerate(renderers):
                    value = assigned[name] = render(scope)
                    if i != last:
                        before.append((name, variables.get(name, _UNSET)))
                        variables[name] = value
            finally:
                for name, old in before:
                    if old is _UNSET:
                        del variables[name]
                    else:
                        variables[name] = old
            return assigned
        except EvaluationError as exc:
            return _evaluation_failed(exc)


def _evaluation_failed(exc: EvaluationError) -> Outcome:
    """A value that failed to render: the node's error, as the runner reports it for an
    executed node, and not retried."""
    info = ErrorInfo.from_exception(exc, with_traceback=False)
    return Outcome.failed(info, retryable=False)


_UNSET: Final[Any] = object()
Renderer = Callable[[Mapping[str, Any]], Any]


def _assigned(
    assign: tuple[tuple[str, CompiledValue], ...], scope: dict[str, Any]
) -> dict[str, Any]:
    """Render *assign* in order into ``scope["vars"]``, so a later value sees the earlier."""
    variables = scope["vars"]
    assigned: dict[str, Any] = {}
    for name, value in assign:
        assigned[name] = variables[name] = value.render(scope)
    return assigned


@attrs.frozen(slots=True)
class PreparedSet:
    """A ``set`` node's compiled config."""

    assign: tuple[tuple[str, CompiledValue], ...]
    memory: tuple[tuple[str, CompiledValue], ...]
    # (name, render function) of each assignment, for evaluate in a chain
    renderers: tuple[tuple[str, Renderer], ...] = attrs.field(init=False, eq=False, repr=False)

    @renderers.default
    def _renderers(self) -> tuple[tuple[str, Renderer], ...]:
        return tuple((name, value.renderer) for name, value in self.assign)


def _is_key(name: str, e: Event) -> bool:
    return e.data.get("key") == name


def _remember(ctx: NodeContext, entries: tuple[tuple[str, CompiledValue], ...]) -> None:
    """Save memory entries through the journal (once per attempt, even if re-executed)."""
    journal = ctx.journal
    if journal is None:
        raise RuntimeError("memory entries can only be saved in a room run by a runner")
    records = []
    for name, value in entries:
        if journal.take(EventType.MEMORY_SET, partial(_is_key, name)) is not None:
            continue
        rendered = value.render(ctx.scope)
        data = (
            {"key": name, "value": rendered}
            if rendered is not None
            else {"key": name, "deleted": True}
        )
        records.append(LogRecord(EventType.MEMORY_SET, data, Level.INFO))
    if records:
        journal.commit(*records)


class DecisionExecutor(NodeExecutor):
    """``decision``: does nothing itself; its transitions' guards pick the way on."""

    labels = frozenset({"ok"})
    fresh_assignments = True  # a new, empty dict per call

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, frozenset())
        if node.output is not None:
            problems.append(
                Problem(f"{path}.output", "a 'decision' node has no output", "remove 'output'")
            )
        return problems

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome()

    def is_pure(self, prepared: Any) -> bool:
        return True

    def evaluate(self, prepared: Any, scope: dict[str, Any]) -> Outcome | dict[str, Any]:
        return {}

    def evaluator(self, prepared: Any) -> Callable[[dict[str, Any]], Outcome | dict[str, Any]]:
        return _nothing


def _nothing(scope: dict[str, Any]) -> dict[str, Any]:
    return {}


@attrs.frozen(slots=True)
class PreparedTool:
    """A ``tool`` node's compiled config.

    Attributes:
        tool: the tool's name.
        args: the arguments, compiled.
        splicing: top-level argument -> where inside it (``""``: the argument itself) the
            first text is whose template splices values into it. The running tool's
            :attr:`~openrooms.tools.Tool.templating` decides whether that is refused
            (``code``), percent-encoded (``url``, for a top-level string) or plain text.
        texts: the top-level string arguments that splice values, compiled.
    """

    tool: str
    args: CompiledValue
    splicing: Mapping[str, str] = attrs.field(factory=dict)
    texts: Mapping[str, Template] = attrs.field(factory=dict)


_NAME_PATH = r"[A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*"
_REFERENCE: Final = re.compile(
    _NAME_PATH
    + r"(?:\s*(?:\.\s*[A-Za-z_]\w*|\[\s*(?:-?\d+|'[^'\\]*'|\"[^\"\\]*\"|"
    + _NAME_PATH
    + r")\s*\]))*"
)
"""A bare reference to a value: ``vars.formula``, ``item``, ``vars.rows[index]['expr']``."""


def _splices(template: Template) -> bool:
    """Whether *template* splices values into text: two ``{{ }}`` or more, one with text
    beside it, or one that builds text rather than naming a value (``{{ 'f(' + x + ')' }}``).
    A lone ``{{ reference }}`` (even with spaces around it) is the value itself."""
    parts = template.parts
    exprs = [p for p in parts if isinstance(p, Expression)]
    if len(exprs) != 1:
        return len(exprs) > 1
    if any(isinstance(p, str) and p.strip() for p in parts):
        return True
    return _REFERENCE.fullmatch(exprs[0].source.strip()) is None


def _splicing(value: Any, where: str = "") -> str | None:
    """Where in *value* (a validated argument) the first text that splices values is."""
    if isinstance(value, str):
        if "{{" in value and _splices(compile_template(value, names=CONFIG_NAMES)):
            return where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if (found := _splicing(item, f"{where}.{key}")) is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := _splicing(item, f"{where}[{i}]")) is not None:
                return found
    return None


def _splicing_args(args: Mapping[str, Any]) -> dict[str, str]:
    return {name: where for name, value in args.items() if (where := _splicing(value)) is not None}


def _render_url(template: Template, scope: Mapping[str, Any]) -> str:
    """A ``url`` argument: a value that begins it is its base (scheme, host, perhaps a path)
    and is used as it is; a value after literal text is percent-encoded, every reserved
    character (``/ ? # & = %``...) included, so it stays one path segment or query value."""
    out = []
    for i, part in enumerate(template.parts):
        if isinstance(part, str):
            out.append(part)
            continue
        value = part.evaluate(scope)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if i > 0:
            try:
                text = quote(text, safe="")
            except UnicodeEncodeError:
                raise EvaluationError(
                    template.source[:80],
                    "a value spliced into the URL is not valid text (a lone surrogate?)",
                ) from None
        out.append(text)
    return "".join(out)


class ToolExecutor(NodeExecutor):
    """``tool``: calls the registered tool ``tool`` with templated ``args``.

    An argument the tool declares ``code`` may hold whole ``{{ }}`` templates but no text
    with values spliced into it, at any depth (refused by validation, and again here if the
    running tool declares what the validating one did not); values spliced into a ``url``
    argument after literal text are percent-encoded.
    """

    labels = frozenset({"ok"})

    _KEYS = frozenset({"tool", "args"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        from openrooms.tools.registry import validation_tools

        problems = unknown_keys(node, path, self._KEYS)
        name = node.config.get("tool")
        known = validation_tools()
        if not isinstance(name, str) or not name:
            problems.append(Problem(f"{path}.tool", "a 'tool' node needs 'tool': a tool name"))
        elif name not in known:
            hint = did_you_mean(
                name, known.names(), f"registered tools: {', '.join(known.names())}"
            )
            problems.append(Problem(f"{path}.tool", f"unknown tool {name!r}", hint))
        args = node.config.get("args", {})
        if not isinstance(args, Mapping):
            problems.append(
                Problem(f"{path}.args", "expected a mapping of argument names to values")
            )
        elif _compile(dict(args), f"{path}.args", problems) is not None:
            tool = known.find(name) if isinstance(name, str) else None
            rules = tool.templating if tool is not None else {}
            for arg, where in _splicing_args(args).items():
                if rules.get(arg) == "code":
                    assert isinstance(name, str)
                    refused = UnsafeTemplateError(f"{path}.args.{arg}{where}", name, arg)
                    problems.append(refused.problem)
        return problems

    def prepare(self, node: Node) -> PreparedTool:
        given = dict(node.config.get("args", {}))
        splicing = _splicing_args(given)
        return PreparedTool(
            tool=node.config["tool"],
            args=compile_value(given, names=CONFIG_NAMES),
            splicing=splicing,
            texts={
                arg: compile_template(given[arg], names=CONFIG_NAMES)
                for arg, where in splicing.items()
                if where == ""
            },
        )

    async def execute(self, ctx: NodeContext) -> Outcome:
        prepared: PreparedTool = ctx.prepared
        if not prepared.splicing:
            args = prepared.args.render(ctx.scope)
            return await call_tool(ctx, prepared.tool, args, commit_at_once=False)
        # the running tool decides, whatever registry the workflow was validated against
        tool = ctx.tools.find(prepared.tool)
        rules = tool.templating if tool is not None else {}
        for arg, where in prepared.splicing.items():
            if rules.get(arg) == "code":
                path = f"nodes.{ctx.node.id}.args.{arg}{where}"
                refused = UnsafeTemplateError(path, prepared.tool, arg)
                info = ErrorInfo.from_exception(refused, with_traceback=False)
                return Outcome.failed(info, retryable=False)
        args = prepared.args.render(ctx.scope)
        for arg, template in prepared.texts.items():
            if rules.get(arg) == "url":
                args[arg] = _render_url(template, ctx.scope)
        return await call_tool(ctx, prepared.tool, args, commit_at_once=False)


async def call_tool(
    ctx: NodeContext,
    name: str,
    args: Any,
    *,
    call_id: str | None = None,
    commit_at_once: bool = True,
) -> Outcome:
    """Call tool *name* once for this attempt, through the journal.

    A call the attempt already recorded (it ran before a crash) is not made again: its
    recorded result or error is the outcome. Otherwise the call runs and its
    ``TOOL_CALLED`` event is committed at once, or, with ``commit_at_once=False`` (a node
    that makes this one call and nothing after it), returned in the outcome's ``records``,
    to be committed with the node's completion in one transaction. A crash before that
    commit makes the call again, with the same idempotency key, as a crash during the
    call would: at least once either way.
    """
    journal = ctx.journal_if_used
    if journal is None and (commit_at_once or _may_have_recorded(ctx)):
        journal = ctx.journal
    if journal is not None:
        recorded = journal.take(
            EventType.TOOL_CALLED,
            None if call_id is None else (lambda e: e.data.get("call_id") == call_id),
        )
        if recorded is not None and not recorded.data.get("truncated"):
            if recorded.error is not None:
                unstorable = recorded.error.type == UnstorableValueError.__name__
                return Outcome.failed(recorded.error, retryable=not unstorable)
            return Outcome.ok(recorded.data.get("result"))
    if not commit_at_once:
        journal = None  # the record goes in the outcome
    tool = ctx.tools.get(name)
    key = ctx.idempotency_key if call_id is None else f"{ctx.idempotency_key}:{call_id}"
    # made for a tool that takes it (Tool.call passes it on only then)
    tool_ctx = _NO_CONTEXT
    if tool.context_param is not None:
        tool_ctx = ToolContext(
            room_id=ctx.room.room_id,
            node=ctx.node.id,
            idempotency_key=key,
            attempt=ctx.attempt,
            memory=_memory_of(ctx),
        )
    limit = ctx.runtime.config.max_logged_bytes if ctx.runtime else DEFAULT_MAX_LOGGED_BYTES
    outcome = await _call(tool, name, args, key, tool_ctx, ctx.node.id, limit, call_id)
    if journal is None:
        return outcome
    await journal.acommit(*outcome.records)
    return attrs.evolve(outcome, records=())


async def _call(
    tool: Tool,
    name: str,
    args: Any,
    key: str,
    tool_ctx: ToolContext,
    node_id: str,
    limit: int,
    call_id: str | None = None,
) -> Outcome:
    """Call *tool* with *args*: the outcome, its ``TOOL_CALLED`` record in its ``records``
    (the one way a tool call is made and logged, with a journal or without)."""
    data: dict[str, Any] = {"tool": name, "args": redact(args), "idempotency_key": key}
    if call_id is not None:
        data["call_id"] = call_id
    started = time.perf_counter()
    # the credentials this call carries (an Authorization header, ?api_key=) stay out of
    # its result and error; the runner scrubs the environment's keys from everything
    secrets = secrets_in(args)
    scrub = Scrubber(secrets) if secrets else None  # most calls carry none
    try:
        result = await tool.call(args, tool_ctx)
        if scrub is not None:
            result = scrub.value(result)
    except Exception as exc:  # a tool's failure is the node's error outcome
        # arguments that break the tool's schema break it again: not worth a retry
        retryable = not isinstance(exc, SchemaValidationError)
        info = ErrorInfo.from_exception(exc, with_traceback=retryable)
        if isinstance(exc, ToolError) and exc.__cause__ is not None:
            # name the tool's own exception, so `retry_on: [ConnectionError]` can match it
            info = attrs.evolve(info, type=type(exc.__cause__).__name__)
        if scrub is not None:
            info = scrub.error(info) or info
        elapsed = (time.perf_counter() - started) * 1000
        record = LogRecord(EventType.TOOL_CALLED, data, Level.ERROR, elapsed, info)
        return Outcome(label="error", error=info, retryable=retryable, records=(record,))
    elapsed = (time.perf_counter() - started) * 1000
    if result is None or type(result) is bool:  # nothing to check, nothing to cut
        logged, truncated = result, False
    else:
        try:
            check_storable(result, f"nodes.{node_id} tool {name!r} result")
        except UnstorableValueError as exc:
            # logged as the call's error, so a resumed attempt reuses it rather than call again
            info = ErrorInfo.from_exception(exc, with_traceback=False)
            record = LogRecord(_TOOL_CALLED, data, Level.ERROR, elapsed, info)
            return Outcome(label="error", error=info, retryable=False, records=(record,))
        logged, truncated = truncate_json(result, limit)
    data["result"] = logged
    if truncated:
        data["truncated"] = True  # a resumed attempt calls the tool again rather than reuse it
    record = LogRecord(_TOOL_CALLED, data, _INFO, elapsed)
    return Outcome(output=result, records=(record,))


def plain_tool(np: NodePlan, tools: ToolRegistry) -> tuple[PreparedTool, Tool] | None:
    """The compiled config and the tool of a ``tool`` node that needs nothing of a
    :class:`NodeContext` to run an attempt that recorded nothing yet: the ``tool`` type's own
    executor, no ``timeout_s``, no argument splicing values into text, and a registered tool
    that takes no :class:`ToolContext`. None for any other node (it runs the general way).
    """
    if type(np.executor) is not ToolExecutor or np.node.timeout_s is not None:
        return None
    prepared: PreparedTool = np.prepared
    if prepared.splicing:
        return None
    tool = tools.find(prepared.tool)
    if tool is None or tool.context_param is not None:
        return None
    return prepared, tool


def call_plain_tool(
    prepared: PreparedTool, tool: Tool, state: RoomState, scope: dict[str, Any], limit: int
) -> Coroutine[Any, Any, Outcome]:
    """An attempt of a node :func:`plain_tool` accepted, at *state*, with no call recorded
    before it: what :meth:`ToolExecutor.execute` returns for it, made without a context
    (templates rendered in *scope*, at once; results logged up to *limit* bytes).

    Raises:
        EvaluationError: a template in the arguments failed (as ``execute`` does).
    """
    args = prepared.args.renderer(scope)
    assert state.current_node is not None
    key = state.idempotency_key
    return _call(tool, prepared.tool, args, key, _NO_CONTEXT, state.current_node, limit)


_TOOL_CALLED: Final = EventType.TOOL_CALLED  # a lookup on an Enum class is slow in Python 3.11
_INFO: Final = Level.INFO

_NO_CONTEXT: Final = ToolContext(room_id=RoomId(""), node="", idempotency_key="")
"""What :func:`call_tool` hands a tool that takes no :class:`ToolContext` (never seen)."""


def _may_have_recorded(ctx: NodeContext) -> bool:
    """Whether the attempt may have recorded calls before (it ran before a crash, or the
    room is re-run from an old log): only then is its journal worth making to ask."""
    return logged_since_start(ctx.room) or (
        ctx.runtime is not None and ctx.runtime.recorded_calls is not None
    )


def _memory_of(ctx: NodeContext) -> RoomMemory | None:
    """The room's memory for a tool that takes a :class:`ToolContext`."""
    journal = ctx.journal
    return journal.memory() if journal is not None else None


class WaitExecutor(NodeExecutor):
    """``wait``: the room waits for input (``prompt``, optional JSON ``schema``, ``timeout_s``).

    The engine runs it: entering it makes the room ``waiting``; input completes it with the
    input as output (``input`` in the outgoing guards); ``timeout_s`` fires ``on: timeout``.
    """

    labels = frozenset({"ok"})

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
        schema = node.config.get("schema")
        return PreparedWait(
            prompt=compile_template(prompt, names=CONFIG_NAMES) if prompt is not None else None,
            schema=schema,
            compiled=None if schema is None else compile_schema(schema),
        )


class EndExecutor(NodeExecutor):
    """``end``: finishes the room, ``status: completed`` (default) or ``status: failed``
    with a templated ``reason``."""

    labels = frozenset()

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
