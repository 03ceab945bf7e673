"""Tools: the registry, the ``@tool`` decorator and the built-ins."""

from openrooms.tools.base import Tool, ToolContext, schema_from_signature
from openrooms.tools.calculator import calculator_tool
from openrooms.tools.registry import ToolRegistry, default_tools, tool

__all__ = ["Tool", "ToolContext", "ToolRegistry", "default_tools", "schema_from_signature", "tool"]

default_tools.register(calculator_tool)
