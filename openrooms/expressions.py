"""The safe expression and template language of guards, templates and the calculator.

A hand-written tokenizer and recursive-descent parser build a tree once, which is
compiled into nested closures; nothing is ever passed to ``eval``/``exec``. Static
limits (length, tokens, nesting, constant exponents) are checked before any
expensive work, and run-time limits (integer size, string and list length) before
an operation allocates.

Language: literals (``1``, ``2.5``, ``'a'``, ``"b"``, ``true``/``false``/``null``,
``[1, 2]``, ``{"k": 1}``); names from the scope (``vars``, ``output``, ...);
``x.key`` and ``x["key"]`` (dict keys only, never Python attributes), ``x[i]``;
``+ - * / // % **``; ``== != < <= > >=``; ``and or not``; ``in``/``not in``;
``a if cond else b``; and the functions len, lower, upper, round, min, max, abs,
int, float, str and bool.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from openrooms.errors import EvaluationError, ExpressionError, Problem, SchemaValidationError

__all__ = [
    "MAX_CALCULATOR_VALUES",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT_BITS",
    "MAX_NESTING",
    "MAX_SEQUENCE_LENGTH",
    "MAX_TEMPLATE_LENGTH",
    "MAX_TOKENS",
    "CompiledValue",
    "Expression",
    "Template",
    "calculate",
    "compile_expression",
    "compile_template",
    "compile_value",
    "is_truthy",
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

Fn = Callable[[Mapping[str, Any]], Any]


class _Limit(Exception):
    """A run-time limit, raised by operations; static folding turns it into ExpressionError."""


# --- tokens ---------------------------------------------------------------------------------

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>()\[\]{},.:])
    """,
    re.VERBOSE,
)
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "0": "\0",
    "/": "/",
    "b": "\b",
    "f": "\f",
}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "if", "else"})
_CONSTANTS: Final = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}


class _Tok:
    __slots__ = ("kind", "pos", "text", "value")

    def __init__(self, kind: str, text: str, pos: int, value: Any = None) -> None:
        self.kind, self.text, self.pos, self.value = kind, text, pos, value


def _unescape(body: str, source: str, pos: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u":
            digits = body[i + 2 : i + 6]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ExpressionError(source, "bad \\u escape in string", pos + i)
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        if nxt not in _ESCAPES:
            raise ExpressionError(source, f"unknown escape \\{nxt} in string", pos + i)
        out.append(_ESCAPES[nxt])
        i += 2
    text = "".join(out)
    if not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text):
        # a pair of \u escapes is one character (as in JSON); a lone half is not text
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if "\ufffd" in text and "\ufffd" not in body:
            raise ExpressionError(
                source, "a \\u escape makes a lone surrogate, which is not valid text", pos
            )
    return text


def _tokenize(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    n = len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "'\"":
                raise ExpressionError(source, "unterminated string", pos)
            raise ExpressionError(source, f"unexpected character {ch!r}", pos)
        kind = m.lastgroup
        text = m.group()
        if kind == "number":
            is_float = any(c in text for c in ".eE")
            # int() of more than 4300 digits raises ValueError; anything near that is over the
            # bit limit anyway, so refuse by length first
            if not is_float and len(text.lstrip("0")) > _MAX_INT_DIGITS:
                raise ExpressionError(source, "number too large", pos)
            value: Any = float(text) if is_float else int(text)
            if (isinstance(value, float) and not math.isfinite(value)) or (
                isinstance(value, int) and value.bit_length() > MAX_INT_BITS
            ):
                raise ExpressionError(source, "number too large", pos)
            tokens.append(_Tok("number", text, pos, value))
        elif kind == "string":
            tokens.append(_Tok("string", text, pos, _unescape(text[1:-1], source, pos + 1)))
        elif kind == "name":
            tokens.append(_Tok("kw" if text in _KEYWORDS else "name", text, pos))
        elif kind == "op":
            tokens.append(_Tok("op", text, pos))
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(source, f"more than {MAX_TOKENS} tokens", pos)
        pos = m.end()
    tokens.append(_Tok("end", "", n))
    return tokens


# --- values and operations ------------------------------------------------------------------


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "list"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


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


# --- parsing and compiling ------------------------------------------------------------------


class _Node:
    """A compiled subtree: its closure, whether it is a constant, and how to describe it."""

    __slots__ = ("const", "fn", "is_const", "scope_name", "text")

    def __init__(
        self,
        fn: Fn,
        text: str,
        const: Any = None,
        is_const: bool = False,
        scope_name: str | None = None,
    ) -> None:
        self.fn, self.text, self.const, self.is_const = fn, text, const, is_const
        self.scope_name = scope_name  # set on a bare name read from the scope


def _constant(value: Any, text: str) -> _Node:
    return _Node(lambda _s: value, text, value, True)


def _either(a: Fn, b: Fn) -> Fn:
    return lambda s: a(s) or b(s)


def _both(a: Fn, b: Fn) -> Fn:
    return lambda s: a(s) and b(s)


def _apply(fn: Callable[[Any, Any], Any], a: Fn, b: Fn) -> Fn:
    return lambda s: fn(a(s), b(s))


class _Parser:
    def __init__(
        self,
        source: str,
        names: Collection[str] | None,
        functions: Collection[str],
        allow_names: bool,
    ) -> None:
        self.source = source
        self.toks = _tokenize(source)
        self.i = 0
        self.depth = 0
        self.allowed = names
        self.functions = functions
        self.allow_names = allow_names
        self.used: set[str] = set()

    # helpers

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, message: str, tok: _Tok | None = None) -> ExpressionError:
        return ExpressionError(self.source, message, (tok or self.tok).pos)

    def take(self, text: str) -> bool:
        t = self.tok
        if t.text == text and t.kind in ("op", "kw"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.take(text):
            found = self.tok.text or "the end"
            raise self.error(f"expected {text!r}, found {found!r}")

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"nested more than {MAX_NESTING} levels deep")

    def fold(self, node: _Node) -> _Node:
        """Evaluate a subtree of constants now; a limit hit here is a static error."""
        try:
            value = node.fn({})
        except _Limit as exc:  # at the last token read: the end of the folded subtree
            raise ExpressionError(
                self.source, str(exc), self.toks[max(self.i - 1, 0)].pos
            ) from None
        except EvaluationError:
            return node  # e.g. 1/0: reported when evaluated, like any other run-time error
        if _size(value) > _MAX_FOLDED_SIZE:
            return node  # kept lazily: a template of many big constants must not fill memory
        return _constant(value, node.text)

    # grammar

    def parse(self) -> _Node:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        node = self.conditional()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r}")
        return node

    def conditional(self) -> _Node:
        self.nest()
        node = self.disjunction()
        if self.take("if"):
            cond = self.disjunction()
            self.expect("else")
            other = self.conditional()
            a, c, b = node.fn, cond.fn, other.fn
            node = _Node(lambda s: a(s) if c(s) else b(s), f"{node.text} if ...")
        self.depth -= 1
        return node

    def disjunction(self) -> _Node:
        node = self.conjunction()
        while self.take("or"):
            right = self.conjunction()
            a, b = node.fn, right.fn
            node = _Node(_either(a, b), f"{node.text} or {right.text}")
        return node

    def conjunction(self) -> _Node:
        node = self.negation()
        while self.take("and"):
            right = self.negation()
            a, b = node.fn, right.fn
            node = _Node(_both(a, b), f"{node.text} and {right.text}")
        return node

    def negation(self) -> _Node:
        if self.take("not"):
            self.nest()
            inner = self.negation()
            self.depth -= 1
            f = inner.fn
            return _Node(lambda s: not f(s), f"not {inner.text}")
        return self.comparison()

    def comparison(self) -> _Node:
        node = self.additive()
        parts: list[tuple[Callable[[Any, Any], Any], _Node]] = []
        while True:
            t = self.tok
            if t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">", ">="):
                self.i += 1
                op = t.text
            elif t.kind == "kw" and t.text == "in":
                self.i += 1
                op = "in"
            elif t.kind == "kw" and t.text == "not" and self.toks[self.i + 1].text == "in":
                self.i += 2
                op = "not in"
            else:
                break
            parts.append((_BINARY[op], self.additive()))
        if not parts:
            return node
        if len(parts) == 1:
            (op_fn, right), a = parts[0], node.fn
            b = right.fn
            return self.fold_if(_Node(lambda s: op_fn(a(s), b(s)), f"{node.text} ..."), node, right)
        first = node.fn
        chain = [(op_fn, right.fn) for op_fn, right in parts]

        def chained(s: Mapping[str, Any]) -> bool:
            left = first(s)
            for op_fn, fn in chain:
                right_value = fn(s)
                if not op_fn(left, right_value):
                    return False
                left = right_value
            return True

        return _Node(chained, f"{node.text} ...")

    def fold_if(self, node: _Node, *children: _Node) -> _Node:
        return self.fold(node) if all(c.is_const for c in children) else node

    def binary(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while self.tok.kind == "op" and self.tok.text in ops:
            op = self.tok.text
            self.i += 1
            right = operand()
            fn, a, b = _BINARY[op], node.fn, right.fn
            node = self.fold_if(
                _Node(_apply(fn, a, b), f"{node.text} {op} {right.text}"),
                node,
                right,
            )
        return node

    def additive(self) -> _Node:
        return self.binary(("+", "-"), self.term)

    def term(self) -> _Node:
        return self.binary(("*", "/", "//", "%"), self.unary)

    def unary(self) -> _Node:
        t = self.tok
        if t.kind == "op" and t.text in ("-", "+"):
            self.i += 1
            self.nest()
            inner = self.unary()
            self.depth -= 1
            f = inner.fn

            def negate(s: Mapping[str, Any]) -> Any:
                v = f(s)
                if not _is_num(v):
                    raise EvaluationError("", f"cannot negate a {_kind(v)}")
                return -v

            def plus(s: Mapping[str, Any]) -> Any:
                v = f(s)
                if not _is_num(v):
                    raise EvaluationError("", f"unary + of a {_kind(v)}")
                return v

            node = _Node(negate if t.text == "-" else plus, f"{t.text}{inner.text}")
            return self.fold_if(node, inner)
        return self.power()

    def power(self) -> _Node:
        base = self.postfix()
        if self.take("**"):
            self.nest()
            exponent = self.unary()  # right-associative: 2 ** 3 ** 2 == 2 ** 9
            self.depth -= 1
            a, b = base.fn, exponent.fn
            node = _Node(lambda s: _pow(a(s), b(s)), f"{base.text} ** {exponent.text}")
            return self.fold_if(node, base, exponent)
        return base

    def postfix(self) -> _Node:
        node = self.atom()
        while True:
            t = self.tok
            if t.kind == "op" and t.text == ".":
                self.i += 1
                key_tok = self.tok
                if key_tok.kind not in ("name", "kw"):
                    raise self.error("expected a key name after '.'")
                self.i += 1
                node = self.lookup(node, _constant(key_tok.text, repr(key_tok.text)), key_tok)
            elif t.kind == "op" and t.text == "[":
                self.i += 1
                index = self.conditional()
                self.expect("]")
                node = self.lookup(node, index, t)
            elif t.kind == "op" and t.text == "(":
                raise self.error("only the built-in functions can be called", t)
            else:
                return node

    def lookup(self, target: _Node, key: _Node, tok: _Tok) -> _Node:
        if key.is_const and isinstance(key.const, str) and key.const.startswith("_"):
            raise self.error("names starting with '_' are not allowed", tok)
        owner, get_key = target.fn, key.fn
        where = target.text

        def get(s: Mapping[str, Any]) -> Any:
            obj = owner(s)
            k = get_key(s)
            if type(obj) is dict or isinstance(obj, Mapping):
                if type(k) is not str and not isinstance(k, str):
                    raise EvaluationError(
                        "", f"{where} is an object; its keys are strings, not {_kind(k)}"
                    )
                try:
                    return obj[k]
                except KeyError:
                    raise EvaluationError("", f"{where} has no key {k!r}") from None
            if isinstance(obj, list | tuple | str):
                if isinstance(k, bool) or not isinstance(k, int):
                    raise EvaluationError(
                        "",
                        f"{where} is a {_kind(obj)}; index it with a whole number, not {_kind(k)}",
                    )
                try:
                    return obj[k]
                except IndexError:
                    raise EvaluationError(
                        "", f"{where} has no item {k} (length {len(obj)})"
                    ) from None
            raise EvaluationError("", f"{where} is {_kind(obj)}, which has no key {k!r}")

        text = (
            f"{where}.{key.const}"
            if key.is_const and isinstance(key.const, str) and key.const.isidentifier()
            else f"{where}[...]"
        )
        if not (key.is_const and isinstance(key.const, str)):
            return _Node(get, text)
        # the common case, `vars.x`: one closure reads the key; `get` explains any failure
        k = key.const
        if target.scope_name is not None:
            scope_name = target.scope_name

            def get_scoped(s: Mapping[str, Any]) -> Any:
                obj = s.get(scope_name)
                if type(obj) is dict and k in obj:
                    return obj[k]
                return get(s)

            return _Node(get_scoped, text)

        def get_const(s: Mapping[str, Any]) -> Any:
            obj = owner(s)
            if type(obj) is dict and k in obj:
                return obj[k]
            return get(s)

        return _Node(get_const, text)

    def atom(self) -> _Node:
        t = self.tok
        if t.kind in ("number", "string"):
            self.i += 1
            return _constant(t.value, t.text)
        if t.kind == "name":
            self.i += 1
            if t.text in _CONSTANTS:
                return _constant(_CONSTANTS[t.text], t.text)
            if self.tok.text == "(" and self.tok.kind == "op":
                return self.call(t)
            return self.name(t)
        if t.kind == "op" and t.text == "(":
            self.i += 1
            node = self.conditional()  # conditional() counts the nesting level
            self.expect(")")
            return node
        if t.kind == "op" and t.text == "[":
            return self.list_literal()
        if t.kind == "op" and t.text == "{":
            return self.dict_literal()
        if t.kind == "end":
            raise self.error("unexpected end of expression")
        raise self.error(f"unexpected {t.text!r}")

    def name(self, t: _Tok) -> _Node:
        name = t.text
        if name.startswith("_"):
            raise self.error("names starting with '_' are not allowed", t)
        if not self.allow_names or (self.allowed is not None and name not in self.allowed):
            options = sorted(self.allowed or ())
            close = difflib.get_close_matches(name, options, n=1)
            hint = (
                f" — did you mean {close[0]!r}?"
                if close
                else (
                    f"; available: {', '.join(options)}" if options else "; no names are available"
                )
            )
            raise self.error(f"unknown name {name!r}{hint}", t)
        self.used.add(name)

        def lookup(s: Mapping[str, Any]) -> Any:
            try:
                return s[name]
            except KeyError:
                raise EvaluationError(
                    "",
                    f"{name!r} is not available here; available: "
                    f"{', '.join(sorted(s)) or 'nothing'}",
                ) from None

        return _Node(lookup, name, scope_name=name)

    def call(self, t: _Tok) -> _Node:
        name = t.text
        if name not in self.functions:
            allowed = ", ".join(sorted(self.functions))
            raise self.error(f"unknown function {name!r}; available: {allowed}", t)
        fn, least, most = _FUNCTIONS[name]
        self.expect("(")
        args: list[_Node] = []
        if not self.take(")"):
            while True:
                args.append(self.conditional())
                if self.take(")"):
                    break
                self.expect(",")
        if not least <= len(args) <= most:
            raise self.error(
                f"{name}() takes {least}"
                + (f" to {most}" if most != least else "")
                + f" argument{'s' if most != 1 else ''}, got {len(args)}",
                t,
            )
        fns = [a.fn for a in args]
        node = _Node(lambda s: fn(*[f(s) for f in fns]), f"{name}(...)")
        return self.fold_if(node, *args) if name != "bool" else node

    def list_literal(self) -> _Node:
        self.expect("[")
        items: list[_Node] = []
        if not self.take("]"):
            while True:
                items.append(self.conditional())
                if self.take("]"):
                    break
                self.expect(",")
        fns = [n.fn for n in items]

        def build_list(s: Mapping[str, Any]) -> list[Any]:
            value = [f(s) for f in fns]
            _check_size(value)
            return value

        return _Node(build_list, "[...]")

    def dict_literal(self) -> _Node:
        self.expect("{")
        pairs: list[tuple[str, Fn]] = []
        if not self.take("}"):
            while True:
                key = self.tok
                if key.kind != "string":
                    raise self.error("object keys must be strings")
                self.i += 1
                self.expect(":")
                pairs.append((key.value, self.conditional().fn))
                if self.take("}"):
                    break
                self.expect(",")

        def build_dict(s: Mapping[str, Any]) -> dict[str, Any]:
            value = {k: f(s) for k, f in pairs}
            _check_size(value)
            return value

        return _Node(build_dict, "{...}")


def _parse(
    source: str,
    names: Collection[str] | None,
    *,
    functions: Collection[str] = _FUNCTIONS,
    allow_names: bool = True,
) -> tuple[_Node, frozenset[str]]:
    if not isinstance(source, str):
        raise ExpressionError(
            str(source)[:80], f"expected expression text, got {type(source).__name__}"
        )
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            source[:80],
            f"expression is longer than {MAX_EXPRESSION_LENGTH} characters ({len(source)})",
        )
    parser = _Parser(source, names, functions, allow_names)
    return parser.parse(), frozenset(parser.used)


def _run(fn: Fn, scope: Mapping[str, Any], source: str) -> Any:
    try:
        return fn(scope)
    except EvaluationError as exc:
        raise EvaluationError(source, exc.message) from None
    except _Limit as exc:
        raise EvaluationError(source, str(exc)) from None
    except (TypeError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        raise EvaluationError(source, f"{type(exc).__name__}: {exc}") from None


class Expression:
    """A parsed, compiled expression. Create with :func:`compile_expression`.

    Attributes:
        source: the text it was compiled from.
        names: the top-level names it reads (``vars``, ``input``, ...).
    """

    __slots__ = ("_fn", "names", "source")

    def __init__(self, source: str, fn: Fn, names: frozenset[str]) -> None:
        self.source, self._fn, self.names = source, fn, names

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The expression's value in *scope*.

        Raises:
            EvaluationError: a missing name or key, a wrong type, a limit exceeded.
        """
        try:
            return self._fn(scope)
        except Exception:
            return _run(self._fn, scope, self.source)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile_expression(source: str, *, names: Collection[str] | None = None) -> Expression:
    """Parse and compile *source*.

    Args:
        source: the expression text.
        names: the top-level names it may use; None allows any.

    Raises:
        ExpressionError: it does not parse, uses an unknown name or function, or exceeds a
            static limit.
    """
    node, used = _parse(source, names)
    return Expression(source, node.fn, used)


class Template:
    """A string with ``{{ expr }}`` parts. Create with :func:`compile_template`.

    Exactly one ``{{ expr }}`` and nothing else renders to the value itself (any type);
    otherwise the result is text, with non-string values written as JSON.
    """

    __slots__ = ("_parts", "_single", "is_constant", "names", "source")

    def __init__(self, source: str, parts: list[str | Expression]) -> None:
        self.source = source
        self._parts = parts
        self.is_constant = all(isinstance(p, str) for p in parts)
        self._single = parts[0] if len(parts) == 1 and isinstance(parts[0], Expression) else None
        self.names = frozenset(n for p in parts if isinstance(p, Expression) for n in p.names)

    @property
    def parts(self) -> tuple[str | Expression, ...]:
        """Its literal text and embedded expressions, in order."""
        return tuple(self._parts)

    def render(self, scope: Mapping[str, Any]) -> Any:
        """The rendered value.

        Raises:
            EvaluationError: an embedded expression failed.
        """
        if self._single is not None:
            return self._single.evaluate(scope)
        out = []
        length = 0
        for part in self._parts:
            text = part if isinstance(part, str) else _to_text(part.evaluate(scope))
            length += len(text)
            if length > _MAX_VALUE_SIZE:
                raise EvaluationError(self.source, "rendered text is too long")
            out.append(text)
        return "".join(out)

    def render_text(self, scope: Mapping[str, Any]) -> str:
        """The rendered value as text: a non-string value (``"{{ vars.order }}"`` alone)
        is written as JSON, so a reason or prompt is always a string.

        Raises:
            EvaluationError: an embedded expression failed.
        """
        return _to_text(self.render(scope))


def compile_template(source: str, *, names: Collection[str] | None = None) -> Template:
    """Compile a template string.

    Raises:
        ExpressionError: an embedded expression is invalid, a ``{{`` is unclosed, or the
            text is longer than the template limit.
    """
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise ExpressionError(
            source[:80], f"template is longer than {MAX_TEMPLATE_LENGTH} characters ({len(source)})"
        )
    parts: list[str | Expression] = []
    pos = 0
    stripped = source.strip()
    # one scan for the next "{{" and the "}}" after it: linear, where a regex retrying
    # from every "{{" of an unclosed run is quadratic
    while (start := source.find("{{", pos)) != -1:
        end = source.find("}}", start + 2)
        if end == -1:
            raise ExpressionError(source, "unclosed '{{'", start)
        if start > pos:
            parts.append(source[pos:start])
        body = source[start + 2 : end]
        try:
            parts.append(compile_expression(body.strip(), names=names))
        except ExpressionError as exc:
            offset = start + 2 + (len(body) - len(body.lstrip()))
            where = None if exc.position is None else exc.position + offset
            raise ExpressionError(source, exc.message, where) from None
        pos = end + 2
    rest = source[pos:]
    if rest:
        parts.append(rest)
    if len(parts) == 1 and isinstance(parts[0], Expression) and stripped != source:
        # "  {{ x }} " keeps its surrounding text, so it renders as text
        parts = [source[: source.index("{{")], parts[0], source[source.rindex("}}") + 2 :]]
        parts = [p for p in parts if p != ""]
    return Template(source, parts)


class CompiledValue:
    """A JSON value whose strings may be templates. Create with :func:`compile_value`."""

    __slots__ = ("_render", "is_constant", "names")

    def __init__(
        self, render: Callable[[Mapping[str, Any]], Any], names: frozenset[str], is_constant: bool
    ) -> None:
        self._render, self.names, self.is_constant = render, names, is_constant

    def render(self, scope: Mapping[str, Any]) -> Any:
        """A new JSON value with every template rendered in *scope*.

        Raises:
            EvaluationError: a template failed.
        """
        return self._render(scope)


def _compile_any(
    value: Any, names: Collection[str] | None, depth: int
) -> tuple[Callable[[Mapping[str, Any]], Any], frozenset[str], bool]:
    if depth > 64:
        raise ExpressionError("", "value nested more than 64 levels deep")
    if isinstance(value, str):
        if "{{" not in value:
            return (lambda _s: value), frozenset(), True
        t = compile_template(value, names=names)
        if t.is_constant:
            return (lambda _s: value), frozenset(), True
        if t._single is not None:  # the common "{{ expr }}": call its closure directly
            fast, slow = t._single._fn, t._single.evaluate

            def single(s: Mapping[str, Any]) -> Any:
                try:
                    return fast(s)
                except Exception:
                    return slow(s)

            return single, t.names, False
        return t.render, t.names, False
    if isinstance(value, Mapping):
        items = [(k, *_compile_any(v, names, depth + 1)) for k, v in value.items()]
        if all(c for _, _, _, c in items):
            frozen = dict(value)
            return (lambda _s: copy.deepcopy(frozen)), frozenset(), True
        fns = [(k, f) for k, f, _, _ in items]
        used = frozenset().union(*(n for _, _, n, _ in items))
        return (lambda s: {k: f(s) for k, f in fns}), used, False
    if isinstance(value, list | tuple):
        compiled = [_compile_any(v, names, depth + 1) for v in value]
        if all(c for _, _, c in compiled):
            frozen_list = list(value)
            return (lambda _s: copy.deepcopy(frozen_list)), frozenset(), True
        fns_list = [f for f, _, _ in compiled]
        used = frozenset().union(*(n for _, n, _ in compiled))
        return (lambda s: [f(s) for f in fns_list]), used, False
    return (lambda _s: value), frozenset(), True


def compile_value(value: Any, *, names: Collection[str] | None = None) -> CompiledValue:
    """Compile a JSON value (dicts, lists, strings, numbers...) whose strings may be templates.

    Raises:
        ExpressionError: a template in it is invalid.
    """
    render, used, constant = _compile_any(value, names, 0)
    return CompiledValue(render, used, constant)


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
