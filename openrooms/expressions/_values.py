"""Values and operations: type names, run-time limits, operators and the functions."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from openrooms._wording import type_name
from openrooms.errors import EvaluationError
from openrooms.expressions._limits import (
    _MAX_VALUE_SIZE,
    MAX_INT_BITS,
    MAX_SEQUENCE_LENGTH,
    _Limit,
)

# what the other modules of the package import from this one
__all__ = [
    "_BINARY",
    "_CALC_FUNCTIONS",
    "_FUNCTIONS",
    "_check_size",
    "_is_num",
    "_kind",
    "_pow",
    "_size",
    "_to_text",
    "is_truthy",
]

_kind: Final = functools.partial(type_name, words="expression")


def _is_num(v: Any) -> bool:
    t = type(v)
    return t is int or t is float or (isinstance(v, int | float) and t is not bool)


def _check_num(v: Any) -> Any:
    if isinstance(v, int):
        if v.bit_length() > MAX_INT_BITS:
            raise _Limit(f"integer result exceeds {MAX_INT_BITS} bits")
    elif isinstance(v, float) and not math.isfinite(v):
        raise _Limit("numeric result is too large (overflow)")
    return v


def _check_len(n: int) -> None:
    if n > MAX_SEQUENCE_LENGTH:
        raise _Limit(f"result longer than {MAX_SEQUENCE_LENGTH} items")


_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _size(value: Any) -> int:
    """Items of lists and objects at every depth plus characters of strings, counted up to
    just past ``_MAX_VALUE_SIZE``.

    Repetition shares references: ``[[1] * 10**5] * 10**5`` is short, but comparing,
    printing or storing it touches 10**10 items, so length alone bounds nothing.
    """
    total = 0
    todo = [value]
    while todo and total <= _MAX_VALUE_SIZE:
        v = todo.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, list | tuple):
            total += len(v)
            todo += [x for x in v if type(x) not in _SCALARS]
        elif isinstance(v, Mapping):
            total += len(v)
            todo += [x for x in (*v.keys(), *v.values()) if type(x) not in _SCALARS]
    return total


def _check_size(*parts: Any, times: int = 1) -> None:
    if sum(_size(p) for p in parts) * times > _MAX_VALUE_SIZE:
        raise _Limit(f"result holds more than {_MAX_VALUE_SIZE} items and characters")


def _add(a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return _check_num(a + b)
    if isinstance(a, str) and isinstance(b, str):
        _check_len(len(a) + len(b))
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        _check_len(len(a) + len(b))
        _check_size(a, b)
        return a + b
    raise EvaluationError("", f"cannot add {_kind(a)} and {_kind(b)}")


def _mul(a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        if (
            isinstance(a, int)
            and isinstance(b, int)
            and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1
        ):
            raise _Limit(f"integer result exceeds {MAX_INT_BITS} bits")
        return _check_num(a * b)
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, str | list) and isinstance(times, int) and not isinstance(times, bool):
            _check_len(len(seq) * max(times, 0))
            if isinstance(seq, list):
                _check_size(seq, times=max(times, 0))
            return seq * times
    raise EvaluationError("", f"cannot multiply {_kind(a)} and {_kind(b)}")


def _numeric(name: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if not (_is_num(a) and _is_num(b)):
            raise EvaluationError("", f"cannot {name} {_kind(a)} and {_kind(b)}")
        if b == 0 and name in ("divide", "floor-divide", "take the remainder of"):
            raise EvaluationError("", "division by zero")
        return _check_num(op(a, b))

    return apply


def _pow(a: Any, b: Any) -> Any:
    if not (_is_num(a) and _is_num(b)):
        raise EvaluationError("", f"cannot raise {_kind(a)} to {_kind(b)}")
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            if a == 0:
                raise EvaluationError("", "zero cannot be raised to a negative power")
            return _check_num(float(a) ** b)
        if abs(a) > 1 and (a.bit_length() - 1) * b > MAX_INT_BITS:
            raise _Limit(f"{a} ** {b} exceeds {MAX_INT_BITS} bits")
        return _check_num(a**b)
    if a == 0 and b < 0:
        raise EvaluationError("", "zero cannot be raised to a negative power")
    if a < 0 and not float(b).is_integer():
        raise EvaluationError("", "a negative number cannot be raised to a fractional power")
    try:
        result = float(a) ** float(b)
    except OverflowError:
        raise _Limit("numeric result is too large (overflow)") from None
    return _check_num(result)


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def ordered(a: Any, b: Any) -> bool:
        if (_is_num(a) and _is_num(b)) or (type(a) is type(b) and isinstance(a, str | list)):
            if op == "<":
                return bool(a < b)
            if op == "<=":
                return bool(a <= b)
            if op == ">":
                return bool(a > b)
            return bool(a >= b)
        raise EvaluationError("", f"cannot compare {_kind(a)} {op} {_kind(b)}")

    return ordered


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError("", f"cannot look for a {_kind(item)} in a string")
        return item in container
    if isinstance(container, list | tuple):
        return any(_eq(item, x) for x in container)
    if isinstance(container, Mapping):
        return item in container if isinstance(item, str) else False
    raise EvaluationError("", f"cannot look inside a {_kind(container)} with 'in'")


_BINARY: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "+": _add,
    "-": _numeric("subtract", lambda a, b: a - b),
    "*": _mul,
    "/": _numeric("divide", lambda a, b: a / b),
    "//": _numeric("floor-divide", lambda a, b: a // b),
    "%": _numeric("take the remainder of", lambda a, b: a % b),
    "**": _pow,
    "==": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _compare("<"),
    "<=": _compare("<="),
    ">": _compare(">"),
    ">=": _compare(">="),
    "in": _contains,
    "not in": lambda a, b: not _contains(a, b),
}


def _json_default(v: Any) -> Any:
    if isinstance(v, Mapping):
        return dict(v)
    if isinstance(v, tuple):
        return list(v)
    return str(v)


def _to_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=_json_default)


def _fn_len(v: Any) -> int:
    if isinstance(v, str | list | tuple | Mapping):
        return len(v)
    raise EvaluationError("", f"len() of a {_kind(v)}")


def _fn_case(upper: bool) -> Callable[[Any], str]:
    def change(v: Any) -> str:
        if not isinstance(v, str):
            raise EvaluationError("", f"{'upper' if upper else 'lower'}() of a {_kind(v)}")
        return v.upper() if upper else v.lower()

    return change


def _fn_round(v: Any, digits: Any = None) -> Any:
    if not _is_num(v):
        raise EvaluationError("", f"round() of a {_kind(v)}")
    if digits is None:
        return round(v)
    if not isinstance(digits, int) or isinstance(digits, bool) or abs(digits) > 300:
        raise EvaluationError("", "round() digits must be a whole number from -300 to 300")
    return round(v, digits)


def _fn_extreme(pick: Callable[..., Any], name: str) -> Callable[..., Any]:
    def choose(*args: Any) -> Any:
        items = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not items:
            raise EvaluationError("", f"{name}() of nothing")
        if not (all(_is_num(x) for x in items) or all(isinstance(x, str) for x in items)):
            raise EvaluationError("", f"{name}() needs all numbers or all strings")
        return pick(items)

    return choose


def _fn_abs(v: Any) -> Any:
    if not _is_num(v):
        raise EvaluationError("", f"abs() of a {_kind(v)}")
    return abs(v)


def _fn_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise EvaluationError("", "int() of a non-finite number")
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and len(v) <= 400:
        try:
            return _check_num(int(v.strip()))  # type: ignore[no-any-return]
        except ValueError:
            pass
    raise EvaluationError("", f"int() cannot convert {_kind(v)} {_to_text(v)[:40]!r}")


def _fn_float(v: Any) -> float:
    if _is_num(v) or isinstance(v, bool):
        return _check_num(float(v))  # type: ignore[no-any-return]
    if isinstance(v, str) and len(v) <= 400:
        try:
            return _check_num(float(v.strip()))  # type: ignore[no-any-return]
        except ValueError:
            pass
    raise EvaluationError("", f"float() cannot convert {_kind(v)} {_to_text(v)[:40]!r}")


_FUNCTIONS: Final[dict[str, tuple[Callable[..., Any], int, int]]] = {
    # name: (function, least arguments, most arguments)
    "len": (_fn_len, 1, 1),
    "lower": (_fn_case(False), 1, 1),
    "upper": (_fn_case(True), 1, 1),
    "round": (_fn_round, 1, 2),
    "min": (_fn_extreme(min, "min"), 1, 100),
    "max": (_fn_extreme(max, "max"), 1, 100),
    "abs": (_fn_abs, 1, 1),
    "int": (_fn_int, 1, 1),
    "float": (_fn_float, 1, 1),
    "str": (_to_text, 1, 1),
    "bool": (bool, 1, 1),
}
_CALC_FUNCTIONS: Final = frozenset({"round", "min", "max", "abs", "int", "float"})


def is_truthy(value: object) -> bool:
    """How a guard reads a value: Python truthiness (empty, zero and null are false)."""
    return bool(value)
