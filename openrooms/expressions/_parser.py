"""The recursive-descent parser, which compiles the tree into nested closures as it goes."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from openrooms._wording import closest
from openrooms.errors import EvaluationError, ExpressionError
from openrooms.expressions._limits import (
    _MAX_FOLDED_SIZE,
    MAX_EXPRESSION_LENGTH,
    MAX_INT_BITS,
    MAX_NESTING,
    _Limit,
)
from openrooms.expressions._tokens import _CONSTANTS, _Tok, _tokenize
from openrooms.expressions._values import (
    _BINARY,
    _FUNCTIONS,
    _check_size,
    _is_num,
    _kind,
    _pow,
    _size,
)

# what the other modules of the package import from this one
__all__ = [
    "Fn",
    "_parse",
    "_run",
]

Fn = Callable[[Mapping[str, Any]], Any]


class _Node:
    """A compiled subtree: its closure, whether it is a constant, and how to describe it.

    ``fuse``, where set, builds the subtree's closure around a given fallback: the closure
    computes the common cases itself, never raising, and calls the fallback for everything
    else (``fn`` is ``fuse`` over the general code). An expression whose tree has one is
    evaluated by a single closure, its fallback reporting errors with the source.
    """

    __slots__ = ("const", "fn", "fuse", "is_const", "key_of", "scope_name", "text")

    def __init__(
        self,
        fn: Fn,
        text: str,
        const: Any = None,
        is_const: bool = False,
        scope_name: str | None = None,
        key_of: tuple[str, str] | None = None,
        fuse: Callable[[Fn], Fn] | None = None,
    ) -> None:
        self.fn, self.text, self.const, self.is_const = fn, text, const, is_const
        self.scope_name = scope_name  # set on a bare name read from the scope
        self.key_of = key_of  # (scope name, key) of `name.key`, a constant key of a bare name
        self.fuse = fuse


def _constant(value: Any, text: str) -> _Node:
    return _Node(lambda _s: value, text, value, True)


def _either(a: Fn, b: Fn) -> Fn:
    return lambda s: a(s) or b(s)


def _both(a: Fn, b: Fn) -> Fn:
    return lambda s: a(s) and b(s)


def _apply(fn: Callable[[Any, Any], Any], a: Fn, b: Fn) -> Fn:
    return lambda s: fn(a(s), b(s))


_INT_LIMIT = 2**MAX_INT_BITS  # |r| < this: r.bit_length() <= MAX_INT_BITS
_EXACT_FLOAT = 2**53  # an integer constant this small converts to float exactly
_COMPARISONS: Final = frozenset({"<", "<=", ">", ">=", "==", "!="})


def _fused(
    op: str, op_fn: Callable[[Any, Any], Any], left: _Node, right: _Node, text: str
) -> _Node | None:
    """``x.key + 1``, ``x.key < 10`` and kin (a number constant on the right) as one closure
    reading the key and computing the common cases, numbers within the limits; anything
    else goes to the general code (*op_fn*, the operation of ``_BINARY``), which decides
    and explains exactly as before. None where the shape does not fit.

    The closures read ``s[name][key]`` directly: any failure there, and any value but an
    int or a float (never a bool, as ``_is_num``), takes the fallback.
    """
    c = right.const
    if left.key_of is None or not right.is_const or (type(c) is not int and type(c) is not float):
        return None
    scope_name, k = left.key_of
    get = left.fn

    def general(s: Mapping[str, Any]) -> Any:
        return op_fn(get(s), c)

    if op in _COMPARISONS:

        def fuse(fallback: Fn) -> Fn:
            return _compared(op, scope_name, k, c, fallback)

    elif op in ("+", "-") and type(c) is int and -_EXACT_FLOAT < c < _EXACT_FLOAT:
        # x - c is x + (-c), exactly, for ints and for floats (IEEE 754)
        addend = c if op == "+" else -c

        def fuse(fallback: Fn) -> Fn:
            def computed(s: Mapping[str, Any]) -> Any:
                try:
                    obj = s[scope_name]
                    v = obj[k] if type(obj) is dict else None
                except Exception:
                    return fallback(s)
                if type(v) is int:
                    r = v + addend
                    if -_INT_LIMIT < r < _INT_LIMIT:
                        return r
                elif type(v) is float:
                    f = v + addend
                    if f - f == 0.0:  # finite
                        return f
                return fallback(s)

            return computed

    elif op in ("+", "-") and type(c) is float:
        addend_f = c if op == "+" else -c

        def fuse(fallback: Fn) -> Fn:
            def computed(s: Mapping[str, Any]) -> Any:
                try:
                    obj = s[scope_name]
                    v = obj[k] if type(obj) is dict else None
                except Exception:
                    return fallback(s)
                if type(v) is float:
                    r = v + addend_f
                    if r - r == 0.0:  # finite
                        return r
                return fallback(s)

            return computed

    else:
        return None
    return _Node(fuse(general), text, fuse=fuse)


def _compared(op: str, scope_name: str, k: str, c: int | float, fallback: Fn) -> Fn:
    """The closure of ``name.key <op> c`` for :func:`_fused`, one per operator: the
    comparison written out, where calling ``operator.lt`` would cost as much again."""

    def lt(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v < c
        return fallback(s)

    def le(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v <= c
        return fallback(s)

    def gt(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v > c
        return fallback(s)

    def ge(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v >= c
        return fallback(s)

    def eq(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v == c
        return fallback(s)

    def ne(s: Mapping[str, Any]) -> Any:
        try:
            obj = s[scope_name]
            v = obj[k] if type(obj) is dict else None
        except Exception:
            return fallback(s)
        if type(v) is int or type(v) is float:
            return v != c
        return fallback(s)

    closures: dict[str, Fn] = {"<": lt, "<=": le, ">": gt, ">=": ge, "==": eq, "!=": ne}
    return closures[op]


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
        op_names: list[str] = []
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
            op_names.append(op)
        if not parts:
            return node
        if len(parts) == 1:
            (op_fn, right), a = parts[0], node.fn
            b = right.fn
            text = f"{node.text} ..."
            fused = _fused(op_names[0], op_fn, node, right, text)
            if fused is not None:
                return fused
            return self.fold_if(_Node(lambda s: op_fn(a(s), b(s)), text), node, right)
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
            text = f"{node.text} {op} {right.text}"
            node = _fused(op, fn, node, right, text) or self.fold_if(
                _Node(_apply(fn, a, b), text), node, right
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

            def fuse(fallback: Fn) -> Fn:
                def get_scoped(s: Mapping[str, Any]) -> Any:
                    try:
                        obj = s[scope_name]
                        if type(obj) is dict:
                            return obj[k]
                    except Exception:
                        return fallback(s)
                    return fallback(s)

                return get_scoped

            return _Node(fuse(get), text, key_of=(scope_name, k), fuse=fuse)

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
            near = closest(name, options)
            hint = (
                f" — did you mean {near!r}?"
                if near is not None
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
