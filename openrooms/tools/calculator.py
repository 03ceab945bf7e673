"""The built-in ``calculator`` tool: safe arithmetic on an ``expression`` over named ``values``.

The expression is code and the values are data: a workflow writes the arithmetic itself and
passes what varies as numbers, so nothing a user types can change the calculation::

    args:
      expression: "round(amount * (1 + tax_rate), 2)"
      values: {amount: "{{ vars.amount }}", tax_rate: "{{ vars.tax_rate }}"}

``expression`` is declared ``code``: a template spliced into its text is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from openrooms.expressions import MAX_EXPRESSION_LENGTH, calculate
from openrooms.tools.base import Tool

__all__ = ["calculator_tool"]


async def _calculator(
    expression: str, values: Mapping[str, int | float] | None = None
) -> int | float:
    return calculate(expression, values)


calculator_tool = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, and "
        "round, min, max, abs, int, float; names in it are read from 'values'. "
        "Example: expression '(price + 3) * 4', values {price: 2}."
    ),
    parameters={
        "type": "object",
        "properties": {
            "expression": {"type": "string", "maxLength": MAX_EXPRESSION_LENGTH},
            "values": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "named numbers the expression reads by name",
            },
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    fn=_calculator,
    templating={"expression": "code"},
)
