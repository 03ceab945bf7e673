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
from collections.abc import Callable, Collection, Mapping
from typing import Any

from openrooms.errors import EvaluationError, ExpressionError
from openrooms.expressions._calculator import MAX_CALCULATOR_VALUES, calculate
from openrooms.expressions._limits import (
    _MAX_VALUE_SIZE,
    MAX_EXPRESSION_LENGTH,
    MAX_INT_BITS,
    MAX_NESTING,
    MAX_SEQUENCE_LENGTH,
    MAX_TEMPLATE_LENGTH,
    MAX_TOKENS,
)
from openrooms.expressions._parser import Fn, _parse, _run
from openrooms.expressions._values import _to_text, is_truthy

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


class Expression:
    """A parsed, compiled expression. Create with :func:`compile_expression`.

    Attributes:
        source: the text it was compiled from.
        names: the top-level names it reads (``vars``, ``input``, ...).
        evaluator: the compiled function itself, *scope* -> value: the same as
            :meth:`evaluate`, without a method call in between (for hot loops).
    """

    __slots__ = ("_fn", "evaluator", "names", "source")

    def __init__(
        self, source: str, fn: Fn, names: frozenset[str], evaluator: Fn | None = None
    ) -> None:
        self.source, self._fn, self.names = source, fn, names
        self.evaluator: Fn = evaluator if evaluator is not None else self.evaluate

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
    if node.fuse is None:
        return Expression(source, node.fn, used)
    # one closure for the whole expression: its fallback reports errors with the source
    general = node.fn

    def explained(scope: Mapping[str, Any]) -> Any:
        return _run(general, scope, source)

    fused = node.fuse(explained)
    return Expression(source, fused, used, fused)


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
    """A JSON value whose strings may be templates. Create with :func:`compile_value`.

    Attributes:
        renderer: the compiled function itself, *scope* -> value: the same as
            :meth:`render`, without a method call in between (for hot loops).
    """

    __slots__ = ("_render", "is_constant", "names", "renderer")

    def __init__(
        self, render: Callable[[Mapping[str, Any]], Any], names: frozenset[str], is_constant: bool
    ) -> None:
        self._render, self.names, self.is_constant = render, names, is_constant
        self.renderer = render

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
        if t._single is not None:  # the common "{{ expr }}": the expression's own function
            return t._single.evaluator, t.names, False
        return t.render, t.names, False
    if isinstance(value, Mapping):
        items = [(k, *_compile_any(v, names, depth + 1)) for k, v in value.items()]
        if all(c for _, _, _, c in items):
            frozen = dict(value)
            if not frozen:
                return (lambda _s: {}), frozenset(), True
            return (lambda _s: _copied(frozen)), frozenset(), True
        fns = [(k, f) for k, f, _, _ in items]
        used = frozenset().union(*(n for _, _, n, _ in items))
        return (lambda s: {k: f(s) for k, f in fns}), used, False
    if isinstance(value, list | tuple):
        compiled = [_compile_any(v, names, depth + 1) for v in value]
        if all(c for _, _, c in compiled):
            frozen_list = list(value)
            return (lambda _s: _copied(frozen_list)), frozenset(), True
        fns_list = [f for f, _, _ in compiled]
        used = frozenset().union(*(n for _, n, _ in compiled))
        return (lambda s: [f(s) for f in fns_list]), used, False
    return (lambda _s: value), frozenset(), True


def _copied(value: Any) -> Any:
    """*value* with its dicts and lists copied (a constant in a workflow's config: JSON
    values), so a render never hands out the compiled value itself; other values (text,
    numbers, tuples of them) are immutable and shared."""
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    if type(value) is list:
        return [_copied(v) for v in value]
    if isinstance(value, Mapping | list | tuple):
        return copy.deepcopy(value)
    return value


def compile_value(value: Any, *, names: Collection[str] | None = None) -> CompiledValue:
    """Compile a JSON value (dicts, lists, strings, numbers...) whose strings may be templates.

    Raises:
        ExpressionError: a template in it is invalid.
    """
    render, used, constant = _compile_any(value, names, 0)
    return CompiledValue(render, used, constant)
