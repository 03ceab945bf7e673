"""``calculate``: the arithmetic subset of the language, for the ``calculator`` tool."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from openrooms.errors import EvaluationError, ExpressionError, Problem, SchemaValidationError
from openrooms.expressions._limits import MAX_INT_BITS
from openrooms.expressions._parser import _parse, _run
from openrooms.expressions._tokens import _CONSTANTS, _KEYWORDS
from openrooms.expressions._values import _CALC_FUNCTIONS, _FUNCTIONS, _is_num, _kind

# what the other modules of the package import from this one
__all__ = [
    "MAX_CALCULATOR_VALUES",
    "calculate",
]


def calculate(expression: str, values: Mapping[str, Any] | None = None) -> int | float:
    """Evaluate arithmetic for the ``calculator`` tool: numbers, ``+ - * / // % **``,
    parentheses and round, min, max, abs, int and float; and the names of *values*.

    Values are data, never parsed: ``calculate("round(amount * (1 + rate), 2)",
    {"amount": 250, "rate": 0.2})`` is 300.0 whatever text a user typed as the amount
    would have spliced into the expression.

    Args:
        expression: the arithmetic.
        values: named numbers (not booleans) the expression reads by name.

    Raises:
        ExpressionError: it does not parse, exceeds a static limit, or names a value
            *values* does not hold (with a "did you mean").
        SchemaValidationError: *values* holds a name that is not an identifier the
            expression can use, or a value that is not a finite number within the limits.
        EvaluationError: division by zero, a result too large, a non-number result.
    """
    scope = _calculator_values(values)
    try:
        node, _ = _parse(expression, tuple(scope), functions=_CALC_FUNCTIONS)
    except ExpressionError as exc:
        if scope or not exc.message.startswith("unknown name"):
            raise
        raise ExpressionError(
            exc.source,
            f"{exc.message.split(';')[0]}: the calculator reads names only from 'values'; "
            f"pass the number there (values: {{amount: 250}}) and name it in the expression",
            exc.position,
        ) from None
    value = _run(node.fn, scope, expression)
    if not _is_num(value):
        raise EvaluationError(expression, f"the result is a {_kind(value)}, not a number")
    return value  # type: ignore[no-any-return]


MAX_CALCULATOR_VALUES: Final = 1_000
_VALUE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")


def _calculator_values(values: Mapping[str, Any] | None) -> dict[str, int | float]:
    """*values* checked: identifier names the expression can use, finite numbers in range."""
    if values is None:
        return {}
    what = "argument 'values' of the calculator"
    if not isinstance(values, Mapping):
        found = _kind(values)
        raise SchemaValidationError(what, [Problem("values", f"expected an object, got {found}")])
    problems: list[Problem] = []
    if len(values) > MAX_CALCULATOR_VALUES:
        problems.append(
            Problem("values", f"{len(values)} values exceed the limit of {MAX_CALCULATOR_VALUES}")
        )
    reserved = _KEYWORDS | _CONSTANTS.keys() | _FUNCTIONS.keys()
    for name, value in list(values.items())[:MAX_CALCULATOR_VALUES]:
        where = f"values.{name}"
        if not isinstance(name, str) or not _VALUE_NAME.fullmatch(name):
            problems.append(
                Problem(
                    "values",
                    f"{str(name)[:40]!r} is not a valid name",
                    "use a letter, then letters, digits and underscores (at most 100)",
                )
            )
        elif name in reserved:
            problems.append(
                Problem("values", f"{name!r} is a word of the expression language", "rename it")
            )
        if not _is_num(value):
            problems.append(Problem(where, f"expected a number, got {_kind(value)}"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(where, f"expected a finite number, got {value!r}"))
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            problems.append(Problem(where, f"the number exceeds {MAX_INT_BITS} bits"))
    if problems:
        raise SchemaValidationError(what, problems)
    return dict(values)
