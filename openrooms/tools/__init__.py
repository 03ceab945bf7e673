"""Tools: the registry, the ``@tool`` decorator and the built-ins.

The built-in tools' modules (``calculator``, ``memory_query``, ``http``) are imported when a
tool is first looked up, not with this package.
"""

from typing import TYPE_CHECKING, Any

from openrooms.tools.base import ArgKind, BaseTool, Tool, ToolContext, schema_from_signature
from openrooms.tools.registry import ToolRegistry, default_tools, tool

if TYPE_CHECKING:
    from openrooms.tools.destination import HttpPolicy
    from openrooms.tools.http import http_tool

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

_LAZY = {"HttpPolicy": "openrooms.tools.destination", "http_tool": "openrooms.tools.http"}


def __getattr__(name: str) -> Any:
    """``HttpPolicy`` and ``http_tool``, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
