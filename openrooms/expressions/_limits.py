"""The static and run-time limits of the expression language."""

from __future__ import annotations

from typing import Final

# what the other modules of the package import from this one
__all__ = [
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT_BITS",
    "MAX_NESTING",
    "MAX_SEQUENCE_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "MAX_TOKENS",
    "_MAX_FOLDED_SIZE",
    "_MAX_INT_DIGITS",
    "_MAX_VALUE_SIZE",
    "_Limit",
]

MAX_EXPRESSION_LENGTH: Final = 10_000
MAX_TEMPLATE_LENGTH: Final = 100_000
MAX_TOKENS: Final = 2_000
MAX_NESTING: Final = 32
MAX_INT_BITS: Final = 1_024
MAX_SEQUENCE_LENGTH: Final = 100_000
_MAX_VALUE_SIZE: Final = MAX_SEQUENCE_LENGTH * 10  # nested items + characters of one value
_MAX_INT_DIGITS: Final = 310  # 2**1024 has 309 digits
_MAX_FOLDED_SIZE: Final = 1_000  # larger constants are built when evaluated, not kept


class _Limit(Exception):
    """A run-time limit, raised by operations; static folding turns it into ExpressionError."""
