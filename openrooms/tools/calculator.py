"""The built-in ``calculator`` tool: safe arithmetic on an ``expression`` string."""

from __future__ import annotations

from openrooms.expressions import calculate
from openrooms.tools.base import Tool

__all__ = ["calculator_tool"]


async def _calculator(expression: str) -> int | float:
    return calculate(expression)


calculator_tool = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, and "
        "round, min, max, abs, int, float. Example: '(2 + 3) * 4'."
    ),
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 10000}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    fn=_calculator,
)
