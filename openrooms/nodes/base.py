"""What a node type is: an executor with validation, preparation and execution.

Adding a node type (the seed's "Adding New Node Types")::

    from openrooms import NodeContext, NodeExecutor, Outcome, register_node_type

    class Shout(NodeExecutor):
        async def execute(self, ctx: NodeContext) -> Outcome:
            return Outcome.ok(str(ctx.variables["text"]).upper())

    register_node_type("shout", Shout())
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from openrooms.errors import Problem
from openrooms.events import ErrorInfo, EventType, Level

if TYPE_CHECKING:
    from openrooms.room import RoomState
    from openrooms.tools.registry import ToolRegistry
    from openrooms.workflow import Node

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

CONFIG_NAMES: Final = frozenset({"vars", "room", "memory", "item"})
"""Names a node's ``{{ }}`` templates may use."""

GUARD_NAMES: Final = frozenset({"vars", "room", "memory", "item", "output", "input", "error"})
"""Names a transition's ``when`` guard may use."""


def unknown_keys(node: Node, path: str, allowed: frozenset[str]) -> list[Problem]:
    """Problems for config keys of *node* outside *allowed* (typos, misplaced settings)."""
    import difflib

    problems = []
    for key in node.config:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else (f"{node.type!r} nodes take: {', '.join(sorted(allowed)) or 'no settings'}")
            )
            problems.append(
                Problem(f"{path}.{key}", f"unknown setting for a {node.type!r} node", hint)
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
    """

    label: str = "ok"
    output: Any = None
    assign: Mapping[str, Any] | None = None
    error: ErrorInfo | None = None
    retryable: bool = True
    records: tuple[LogRecord, ...] = ()
    duration_ms: float | None = None

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
    """

    __slots__ = ("_scope", "node", "prepared", "room", "tools")

    def __init__(
        self, room: RoomState, node: Node, prepared: Any, tools: ToolRegistry, scope: dict[str, Any]
    ) -> None:
        self.room, self.node, self.prepared, self.tools = room, node, prepared, tools
        self._scope = scope

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
        """Stable key for this attempt; the same when a crashed attempt is re-executed."""
        return self.room.idempotency_key

    @property
    def scope(self) -> dict[str, Any]:
        """The expression scope (``vars``, ``room``, ...) templates are rendered against."""
        return self._scope


class NodeExecutor:
    """Base class of node types. Subclasses override :meth:`execute`, and optionally
    :meth:`validate` and :meth:`prepare` to check and precompile their config at build time.

    Attributes:
        engine_handled: True for types the engine runs itself (``wait``, ``end``).
        references_nodes: config keys whose values name other nodes (for reachability).
    """

    engine_handled: ClassVar[bool] = False

    def validate(self, node: Node, path: str) -> list[Problem]:
        """Problems with *node*'s config; *path* locates the node (``nodes.review``)."""
        return []

    def prepare(self, node: Node) -> Any:
        """Precompile *node*'s config once, when the workflow is built (only if valid)."""
        return None

    async def execute(self, ctx: NodeContext) -> Outcome:
        """Run one attempt. Return an :class:`Outcome`; exceptions become ``error`` outcomes."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")
