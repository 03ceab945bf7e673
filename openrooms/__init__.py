"""OpenRooms: deterministic, durable LLM agent workflows as explicit state machines.

Build a :class:`Workflow` (in Python with :class:`WorkflowBuilder`, or from YAML/JSON
with :func:`load_workflow`), open a :class:`Runtime` with :func:`open_runtime`
(an embedded SQLite file by default), create a room and run it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openrooms.engine import fold, replay
    from openrooms.errors import (
        BackendConfigError,
        BackendError,
        BackendUnavailableError,
        CompletionError,
        CorruptDataError,
        CorruptLogError,
        CorruptRoomError,
        DatabaseNotFoundError,
        EvaluationError,
        ExpressionError,
        InfrastructureError,
        InputError,
        LeaseLostError,
        MissingAPIKeyError,
        MissingExtraError,
        NodeTypeNotFoundError,
        OpenRoomsError,
        PatternTimeoutError,
        PluginError,
        Problem,
        RoomExistsError,
        RoomLeasedError,
        RoomLimitError,
        RoomNotFoundError,
        RoomStatusError,
        SchemaOutdatedError,
        SchemaValidationError,
        StaleRoomError,
        ToolError,
        ToolNotFoundError,
        TransitionNotAllowedError,
        UnsafeTemplateError,
        UnstorableValueError,
        VariableSyntaxError,
        WorkflowConflictError,
        WorkflowNotFoundError,
        WorkflowValidationError,
    )
    from openrooms.events import ErrorInfo, Event, EventType, Level
    from openrooms.nodes.base import LogRecord, NodeContext, NodeExecutor, Outcome
    from openrooms.nodes.registry import register_node_type
    from openrooms.registries import Registries
    from openrooms.room import RoomState, RoomStatus
    from openrooms.runtime import Runtime, open_runtime
    from openrooms.tools.base import Tool, ToolContext
    from openrooms.tools.registry import ToolRegistry, default_tools, tool
    from openrooms.workflow import (
        AgentConfig,
        Node,
        RetryPolicy,
        Transition,
        Workflow,
        WorkflowBuilder,
        load_workflow,
    )

__version__ = "0.1.0"

__all__ = [
    "AgentConfig",
    "BackendConfigError",
    "BackendError",
    "BackendUnavailableError",
    "CompletionError",
    "CorruptDataError",
    "CorruptLogError",
    "CorruptRoomError",
    "DatabaseNotFoundError",
    "ErrorInfo",
    "EvaluationError",
    "Event",
    "EventType",
    "ExpressionError",
    "InfrastructureError",
    "InputError",
    "LeaseLostError",
    "Level",
    "LogRecord",
    "MissingAPIKeyError",
    "MissingExtraError",
    "Node",
    "NodeContext",
    "NodeExecutor",
    "NodeTypeNotFoundError",
    "OpenRoomsError",
    "Outcome",
    "PatternTimeoutError",
    "PluginError",
    "Problem",
    "Registries",
    "RetryPolicy",
    "RoomExistsError",
    "RoomLeasedError",
    "RoomLimitError",
    "RoomNotFoundError",
    "RoomState",
    "RoomStatus",
    "RoomStatusError",
    "Runtime",
    "SchemaOutdatedError",
    "SchemaValidationError",
    "StaleRoomError",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolNotFoundError",
    "ToolRegistry",
    "Transition",
    "TransitionNotAllowedError",
    "UnsafeTemplateError",
    "UnstorableValueError",
    "VariableSyntaxError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowConflictError",
    "WorkflowNotFoundError",
    "WorkflowValidationError",
    "default_tools",
    "fold",
    "load_workflow",
    "open_runtime",
    "register_node_type",
    "replay",
    "tool",
]

_HOMES: dict[str, str] = {
    "AgentConfig": "openrooms.workflow",
    "BackendConfigError": "openrooms.errors",
    "BackendError": "openrooms.errors",
    "BackendUnavailableError": "openrooms.errors",
    "CompletionError": "openrooms.errors",
    "CorruptDataError": "openrooms.errors",
    "CorruptLogError": "openrooms.errors",
    "CorruptRoomError": "openrooms.errors",
    "DatabaseNotFoundError": "openrooms.errors",
    "ErrorInfo": "openrooms.events",
    "EvaluationError": "openrooms.errors",
    "Event": "openrooms.events",
    "EventType": "openrooms.events",
    "ExpressionError": "openrooms.errors",
    "InfrastructureError": "openrooms.errors",
    "InputError": "openrooms.errors",
    "LeaseLostError": "openrooms.errors",
    "Level": "openrooms.events",
    "LogRecord": "openrooms.nodes.base",
    "MissingAPIKeyError": "openrooms.errors",
    "MissingExtraError": "openrooms.errors",
    "Node": "openrooms.workflow",
    "NodeContext": "openrooms.nodes.base",
    "NodeExecutor": "openrooms.nodes.base",
    "NodeTypeNotFoundError": "openrooms.errors",
    "OpenRoomsError": "openrooms.errors",
    "Outcome": "openrooms.nodes.base",
    "PatternTimeoutError": "openrooms.errors",
    "PluginError": "openrooms.errors",
    "Problem": "openrooms.errors",
    "Registries": "openrooms.registries",
    "RetryPolicy": "openrooms.workflow",
    "RoomExistsError": "openrooms.errors",
    "RoomLeasedError": "openrooms.errors",
    "RoomLimitError": "openrooms.errors",
    "RoomNotFoundError": "openrooms.errors",
    "RoomState": "openrooms.room",
    "RoomStatus": "openrooms.room",
    "RoomStatusError": "openrooms.errors",
    "Runtime": "openrooms.runtime",
    "SchemaOutdatedError": "openrooms.errors",
    "SchemaValidationError": "openrooms.errors",
    "StaleRoomError": "openrooms.errors",
    "Tool": "openrooms.tools.base",
    "ToolContext": "openrooms.tools.base",
    "ToolError": "openrooms.errors",
    "ToolNotFoundError": "openrooms.errors",
    "ToolRegistry": "openrooms.tools.registry",
    "Transition": "openrooms.workflow",
    "TransitionNotAllowedError": "openrooms.errors",
    "UnsafeTemplateError": "openrooms.errors",
    "UnstorableValueError": "openrooms.errors",
    "VariableSyntaxError": "openrooms.errors",
    "Workflow": "openrooms.workflow",
    "WorkflowBuilder": "openrooms.workflow",
    "WorkflowConflictError": "openrooms.errors",
    "WorkflowNotFoundError": "openrooms.errors",
    "WorkflowValidationError": "openrooms.errors",
    "default_tools": "openrooms.tools.registry",
    "fold": "openrooms.engine",
    "load_workflow": "openrooms.workflow",
    "open_runtime": "openrooms.runtime",
    "register_node_type": "openrooms.nodes.registry",
    "replay": "openrooms.engine",
    "tool": "openrooms.tools.registry",
}
"""Where each public name lives; importing ``openrooms`` imports none of them (PEP 562)."""


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept; or a submodule."""
    import importlib

    home = _HOMES.get(name)
    if home is None:
        # a submodule (`openrooms.serde`), which importing the package used to load
        if name.startswith("_") or not name.isidentifier():
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
