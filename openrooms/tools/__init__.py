"""Tools: the registry, the ``@tool`` decorator and the built-ins."""

from openrooms.tools.base import ArgKind, BaseTool, Tool, ToolContext, schema_from_signature
from openrooms.tools.calculator import calculator_tool
from openrooms.tools.destination import HttpPolicy
from openrooms.tools.http import http_tool
from openrooms.tools.memory_query import memory_query_tool
from openrooms.tools.registry import ToolRegistry, default_tools, tool

__all__ = [
    "ArgKind",
    "BaseTool",
    "HttpPolicy",
    "Tool",
    "ToolContext",
    "ToolRegistry",
    "default_tools",
    "http_tool",
    "schema_from_signature",
    "tool",
]

default_tools.register(calculator_tool)
default_tools.register(memory_query_tool)
# Refuses every destination until the runtime config's ``http:`` section allows some.
default_tools.register(http_tool(HttpPolicy()))
