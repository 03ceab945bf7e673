"""OpenRooms: deterministic, durable LLM agent workflows as explicit state machines.

Build a :class:`Workflow` (in Python with :class:`WorkflowBuilder`, or from YAML/JSON
with :func:`load_workflow`), open a :class:`Runtime` with :func:`open_runtime`
(an embedded SQLite file by default), create a room and run it.
"""

from openrooms.engine import fold, replay
from openrooms.errors import (
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    CompletionError,
    CorruptDataError,
    CorruptRoomError,
    DatabaseNotFoundError,
    EvaluationError,
    ExpressionError,
    MissingAPIKeyError,
    MissingExtraError,
    NodeTypeNotFoundError,
    OpenRoomsError,
    Problem,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    RoomStatusError,
    SchemaValidationError,
    StaleRoomError,
    ToolError,
    ToolNotFoundError,
    TransitionNotAllowedError,
    UnsafeTemplateError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WorkflowValidationError,
)
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.nodes import LogRecord, NodeContext, NodeExecutor, Outcome, register_node_type
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime, open_runtime
from openrooms.tools import Tool, ToolContext, ToolRegistry, default_tools, tool
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
    "CorruptRoomError",
    "DatabaseNotFoundError",
    "ErrorInfo",
    "EvaluationError",
    "Event",
    "EventType",
    "ExpressionError",
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
    "Problem",
    "RetryPolicy",
    "RoomExistsError",
    "RoomLeasedError",
    "RoomNotFoundError",
    "RoomState",
    "RoomStatus",
    "RoomStatusError",
    "Runtime",
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
