"""What a node type is: an executor with validation, preparation and execution.

Adding a node type (the seed's "Adding New Node Types")::

    from openrooms import NodeContext, NodeExecutor, Outcome, register_node_type

    class Shout(NodeExecutor):
        async def execute(self, ctx: NodeContext) -> Outcome:
            return Outcome.ok(str(ctx.variables["text"]).upper())

    register_node_type("shout", Shout())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from openrooms._wording import article, did_you_mean
from openrooms.errors import Problem
from openrooms.events import ErrorInfo, EventType, Level

if TYPE_CHECKING:
    from openrooms.journal import Journal
    from openrooms.llm.registry import ModelRegistry
    from openrooms.room import RoomState
    from openrooms.runtime import Runtime
    from openrooms.tools.registry import ToolRegistry
    from openrooms.workflow import Node, Workflow

__all__ = [
    "CONFIG_NAMES",
    "FAILURE_LABELS",
    "GUARD_NAMES",
    "LogRecord",
    "NodeContext",
    "NodeExecutor",
    "Outcome",
    "unknown_keys",
]

FAILURE_LABELS: Final = frozenset({"error", "timeout"})
"""Outcome labels that count as failures: they are retried and routed by ``on: error|timeout``."""

CONFIG_NAMES: Final = frozenset({"vars", "room", "memory", "item", "index"})
"""Names a node's ``{{ }}`` templates may use."""

GUARD_NAMES: Final = frozenset(
    {"vars", "room", "memory", "item", "index", "output", "input", "error"}
)
"""Names a transition's ``when`` guard may use."""


def unknown_keys(node: Node, path: str, allowed: frozenset[str]) -> list[Problem]:
    """Problems for config keys of *node* outside *allowed* (typos, misplaced settings)."""
    problems = []
    for key in node.config:
        if key not in allowed:
            hint = did_you_mean(
                key,
                sorted(allowed),
                f"{node.type!r} nodes take: {', '.join(sorted(allowed)) or 'no settings'}",
            )
            problems.append(
                Problem(
                    f"{path}.{key}", f"unknown setting for {article(repr(node.type))} node", hint
                )
            )
    return problems


@attrs.frozen(slots=True)
class LogRecord:
    """An extra log line an executor asks for (a tool call, a model call); the engine numbers it."""

    type: EventType
    data: Mapping[str, Any]
    level: Level = Level.INFO
    duration_ms: float | None = None
    error: ErrorInfo | None = None


@attrs.frozen(slots=True)
class Outcome:
    """How one attempt of a node ended.

    Attributes:
        label: ``ok``, ``error``, ``timeout`` or a custom label the transitions route on.
        output: the node's result; it lands in the node's ``output`` variable.
        assign: variables the node sets directly (the ``set`` node).
        error: failure details for ``error`` and ``timeout``.
        retryable: False stops the retry policy for this failure.
        records: extra log lines (tool and model calls) made during the attempt.
        duration_ms: how long the attempt took; the runner fills it in.
        retry_after_s: the least delay before a retry (a provider's ``Retry-After``).
    """

    label: str = "ok"
    output: Any = None
    assign: Mapping[str, Any] | None = None
    error: ErrorInfo | None = None
    retryable: bool = True
    records: tuple[LogRecord, ...] = ()
    duration_ms: float | None = None
    retry_after_s: float | None = None

    @property
    def is_failure(self) -> bool:
        """Whether this is an ``error`` or ``timeout`` outcome."""
        return self.label in FAILURE_LABELS

    @classmethod
    def ok(cls, output: Any = None, *, label: str = "ok", **kwargs: Any) -> Outcome:
        """A success with *output*, routed by transitions ``on: <label>``."""
        return cls(label=label, output=output, **kwargs)

    @classmethod
    def failed(
        cls, error: BaseException | ErrorInfo, *, retryable: bool = True, **kwargs: Any
    ) -> Outcome:
        """An ``error`` outcome describing *error*."""
        info = error if isinstance(error, ErrorInfo) else ErrorInfo.from_exception(error)
        return cls(label="error", error=info, retryable=retryable, **kwargs)

    @classmethod
    def from_exception(cls, exc: Exception) -> Outcome:
        """The ``error`` outcome for an exception an attempt raised, retryable or not:
        bad input, a missing extra and refused model calls fail the same way again."""
        from openrooms.errors import (
            CompletionError,
            EvaluationError,
            MissingExtraError,
            RoomLimitError,
            SchemaValidationError,
            UnstorableValueError,
        )

        if isinstance(
            exc,
            EvaluationError
            | SchemaValidationError
            | MissingExtraError
            | UnstorableValueError
            | RoomLimitError,
        ):
            return cls.failed(ErrorInfo.from_exception(exc, with_traceback=False), retryable=False)
        if isinstance(exc, CompletionError):
            return cls.failed(exc, retryable=exc.retryable, retry_after_s=exc.retry_after_s)
        return cls.failed(exc)

    @classmethod
    def timed_out(cls, timeout_s: float) -> Outcome:
        """A ``timeout`` outcome for an attempt that overran *timeout_s*."""
        info = ErrorInfo(
            type="TimeoutError", message=f"attempt overran its {timeout_s:g} s timeout"
        )
        return cls(label="timeout", error=info)


class NodeContext:
    """What an executor sees while it runs one attempt of one node.

    Attributes:
        room: the room's state when the attempt started (variables are read-only).
        node: the node's definition.
        prepared: what the executor's :meth:`NodeExecutor.prepare` returned for this node.
        tools: the runtime's tool registry.
        workflow: the workflow the room runs (its ``agents``, say).
        journal: records the attempt's calls durably and replays them on re-execution;
            None when the node runs outside a runner.
        models: resolves agent model strings to :class:`~openrooms.llm.ChatModel` objects:
            the runtime's ``rt.models``; None (outside a runtime) means the process-wide
            :data:`openrooms.llm.default_models`.
        runtime: the runtime running the room (``subworkflow`` starts child rooms on it).
    """

    __slots__ = (
        "_journal",
        "_journal_factory",
        "_key",
        "_scope",
        "models",
        "node",
        "prepared",
        "room",
        "runtime",
        "tools",
        "workflow",
    )

    def __init__(
        self,
        room: RoomState,
        node: Node,
        prepared: Any,
        tools: ToolRegistry,
        scope: dict[str, Any],
        *,
        workflow: Workflow | None = None,
        journal: Journal | None = None,
        models: ModelRegistry | None = None,
        runtime: Runtime | None = None,
        journal_factory: Callable[[], Journal] | None = None,
    ) -> None:
        self.room, self.node, self.prepared, self.tools = room, node, prepared, tools
        self._scope = scope
        self.workflow, self._journal, self.models = workflow, journal, models
        self._journal_factory = journal_factory
        self._key: str | None = None
        self.runtime = runtime

    @property
    def journal(self) -> Journal | None:
        """The attempt's journal (made on first use: most nodes never need one)."""
        if self._journal is None and self._journal_factory is not None:
            self._journal = self._journal_factory()
        return self._journal

    @property
    def journal_if_used(self) -> Journal | None:
        """The journal if the attempt used it, without making one."""
        return self._journal

    @property
    def variables(self) -> Mapping[str, Any]:
        """The room's variables (read-only: return changes in the :class:`Outcome`)."""
        return self.room.variables

    @property
    def attempt(self) -> int:
        """The attempt number, from 1."""
        return self.room.attempt

    @property
    def idempotency_key(self) -> str:
        """Stable key for this attempt (``room:node:visit:attempt``, plus ``/branch`` in a
        branch of ``parallel`` or ``map``); the same when a crashed attempt is re-executed."""
        return self._key if self._key is not None else self.room.idempotency_key

    @property
    def scope(self) -> dict[str, Any]:
        """The expression scope (``vars``, ``room``, ...) templates are rendered against."""
        return self._scope

    def derive(
        self,
        node: Node,
        prepared: Any,
        scope: dict[str, Any],
        journal: Journal | None,
        branch: str,
    ) -> NodeContext:
        """A context for an inline node: branch *branch* of a ``parallel`` or ``map`` node.
        Its idempotency key is the attempt's plus ``/branch``, so every branch's calls are
        told apart by APIs that deduplicate."""
        sub = NodeContext(
            self.room,
            node,
            prepared,
            self.tools,
            scope,
            workflow=self.workflow,
            journal=journal,
            models=self.models,
            runtime=self.runtime,
        )
        sub._key = f"{self.idempotency_key}/{branch}"
        return sub


class NodeExecutor:
    """Base class of node types. Subclasses override :meth:`execute`, and optionally
    :meth:`validate` and :meth:`prepare` to check and precompile their config at build time.

    Attributes:
        engine_handled: True for types the engine runs itself (``wait``, ``end``).
        references_nodes: config keys whose values name other nodes (for reachability).
        labels: the outcome labels a successful attempt can have (``ok``, or custom ones
            like ``approved``); ``error`` and ``timeout`` are always possible besides.
            Transitions ``on:`` any other label are refused when the workflow is built.
            None (the default, for executors written before labels were declared) allows
            any label.
    """

    engine_handled: ClassVar[bool] = False
    labels: ClassVar[frozenset[str] | None] = None

    def labels_for(self, node: Node) -> frozenset[str] | None:
        """The success labels *node* can produce (default: :attr:`labels`); override it
        when they depend on the node's config. None allows any label."""
        return self.labels

    def validate(self, node: Node, path: str) -> list[Problem]:
        """Problems with *node*'s config; *path* locates the node (``nodes.review``)."""
        return []

    def validate_in(self, workflow: Workflow, node: Node, path: str) -> list[Problem]:
        """Problems that need the whole workflow (an ``agent`` node's agent must exist);
        called only when :meth:`validate` found none."""
        return []

    def prepare(self, node: Node) -> Any:
        """Precompile *node*'s config once, when the workflow is built (only if valid)."""
        return None

    async def execute(self, ctx: NodeContext) -> Outcome:
        """Run one attempt. Return an :class:`Outcome`; exceptions become ``error`` outcomes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    fresh_assignments: bool = False
    """Whether :meth:`evaluate` (and :meth:`evaluator`'s function) returns a new dict on
    every call, keyed only by variable names the node's validation checked: a chain then
    checks only its values and keeps it as the node's assignments, without a copy. A
    promise about every call; leave it False when unsure."""

    def is_pure(self, prepared: Any) -> bool:
        """Whether a node with this *prepared* config can run through :meth:`evaluate`:
        synchronously, with no IO, no journal and nothing but its scope to read. Pure
        nodes run in chains, several per commit (``engine.advance``). Default: False."""
        return False

    def evaluate(self, prepared: Any, scope: dict[str, Any]) -> Outcome | dict[str, Any]:
        """Run one attempt of a pure node (see :meth:`is_pure`) and return its outcome.

        A plain success (label ``ok``, no output) may be returned as just the dict of the
        variables it assigns: the same as ``Outcome(assign=that)``, and cheaper to make in a
        chain that runs thousands of nodes.

        Args:
            prepared: what :meth:`prepare` returned for the node.
            scope: ``vars``, ``memory`` and ``room`` (and ``output``, ``input``, ``error``,
                all None) over the room's working state. ``scope["vars"]`` is a dict the
                method may write to while it runs, but must leave as it found it: the
                engine applies the outcome's ``assign`` itself.

        Raises:
            NotImplementedError: the node type has no synchronous form (:meth:`is_pure`
                is false for it).
        """
        raise NotImplementedError(f"{type(self).__name__} has no synchronous evaluate()")

    def evaluator(self, prepared: Any) -> Callable[[dict[str, Any]], Outcome | dict[str, Any]]:
        """:meth:`evaluate` for one node, its *prepared* config bound: the function the
        engine calls on every visit of the node. The default binds :meth:`evaluate`; an
        override may return a function made for the config, one call less per visit."""
        return partial(self.evaluate, prepared)
