"""The built-in ``memory_query`` tool: search the calling room's memory."""

from __future__ import annotations

from typing import Any

from openrooms.errors import ToolError
from openrooms.tools.base import Tool, ToolContext

__all__ = ["memory_query_tool"]


async def _memory_query(query: str, ctx: ToolContext, limit: int = 5) -> list[dict[str, Any]]:
    if ctx.memory is None:
        raise ToolError("memory_query", "no room memory here: call it from a room's node")
    return ctx.memory.search(query, limit)


memory_query_tool = Tool(
    name="memory_query",
    description=(
        "Search this room's memory (saved entries and earlier conversation) by keywords. "
        "Returns the best matches, most relevant first."
    ),
    parameters={
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 2000},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        },
        "required": ["query"],
        "additionalProperties": False,
    },
    fn=_memory_query,
    context_param="ctx",
)
