"""Node types: the executor base class, the registry and the built-in types.

The built-in executors (``openrooms.nodes.builtin``, ``.agent``, ``.fanout``) are imported
when a workflow first uses their type, not with this package.
"""

from openrooms.nodes.base import (
    CONFIG_NAMES,
    FAILURE_LABELS,
    GUARD_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
)
from openrooms.nodes.registry import NodeRegistry, node_types, register_node_type

__all__ = [
    "CONFIG_NAMES",
    "FAILURE_LABELS",
    "GUARD_NAMES",
    "LogRecord",
    "NodeContext",
    "NodeExecutor",
    "NodeRegistry",
    "Outcome",
    "node_types",
    "register_node_type",
]
