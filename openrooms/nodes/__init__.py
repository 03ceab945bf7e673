"""Node types: the executor base class, the registry and the built-in types."""

from openrooms.nodes.agent import AgentExecutor
from openrooms.nodes.base import (
    CONFIG_NAMES,
    FAILURE_LABELS,
    GUARD_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
)
from openrooms.nodes.builtin import (
    DecisionExecutor,
    EndExecutor,
    SetExecutor,
    ToolExecutor,
    WaitExecutor,
)
from openrooms.nodes.fanout import MapExecutor, ParallelExecutor, SubworkflowExecutor
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

for _name, _executor in (
    ("set", SetExecutor()),
    ("decision", DecisionExecutor()),
    ("tool", ToolExecutor()),
    ("wait", WaitExecutor()),
    ("end", EndExecutor()),
    ("agent", AgentExecutor()),
    ("parallel", ParallelExecutor()),
    ("map", MapExecutor()),
    ("subworkflow", SubworkflowExecutor()),
):
    node_types.register(_name, _executor)
