"""``name.key <op> number`` compiles to one closure that computes the common cases itself.

Whatever the value read, it must give exactly what the general operations give: the same
value, or an error with the same message. The reference here is the same operation on a
left side the compiler cannot fuse (``[vars.x][0]``), which takes the general code.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from openrooms.errors import EvaluationError
from openrooms.expressions import MAX_INT_BITS, compile_expression, compile_template, compile_value

OPS = ["+", "-", "<", "<=", ">", ">=", "==", "!="]
LIMIT = 2**MAX_INT_BITS

VALUES = st.one_of(
    st.integers(),
    st.sampled_from([LIMIT - 1, LIMIT - 2, -(LIMIT - 1), 2**53, -(2**53), 0]),
    st.floats(),  # nan and both infinities included
    st.sampled_from([1.7e308, -1.7e308, 0.0, -0.0]),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
CONSTANTS = st.one_of(
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([0, 1, -1, 2**53 - 1, 2**53]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 0.5, -0.0]),
)


def outcome(source: str, scope: dict[str, Any]) -> tuple[str, Any]:
    """("value", v) or ("error", message) of evaluating *source* in *scope*, both ways in."""
    expression = compile_expression(source)
    try:
        value = expression.evaluate(scope)
    except EvaluationError as exc:
        message = exc.message
    else:
        assert same(expression.evaluator(scope), value)
        return "value", value
    with pytest.raises(EvaluationError) as caught:
        expression.evaluator(scope)
    assert caught.value.message == message
    return "error", message


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def literal(c: int | float) -> str:
    return repr(c) if c >= 0 else f"({c!r})"


@given(VALUES, st.sampled_from(OPS), CONSTANTS)
@example(LIMIT - 1, "+", 1)  # one past the integer limit
@example(-(LIMIT - 1), "-", 1)
@example(LIMIT - 2, "+", 1)  # the last integer within it
@example(1.7e308, "+", 1e308)  # float overflow
@example(1.5, "-", 2**53)
@example(True, "+", 1)  # a bool is not a number here
@example(False, "<", 1)
def test_a_fused_operation_gives_the_value_or_the_error_of_the_general_one(
    value: Any, op: str, c: int | float
) -> None:
    scope = {"vars": {"x": value}}
    fused = outcome(f"vars.x {op} {literal(c)}", scope)
    general = outcome(f"[vars.x][0] {op} {literal(c)}", scope)
    assert fused[0] == general[0]
    if fused[0] == "value":
        assert same(fused[1], general[1])
    else:
        assert fused[1] == general[1]


@given(st.sampled_from(OPS))
def test_a_fused_operation_on_a_missing_key_or_a_non_object_fails_as_before(op: str) -> None:
    scopes: tuple[dict[str, Any], ...] = (
        {"vars": {}},
        {"vars": [1, 2]},
        {"vars": "text"},
        {"vars": None},
        {"other": 1},
        {"vars": {"x": 1}, "room": None},
    )
    for scope in scopes:
        for left in ("vars.x", "vars['x']"):
            fused = outcome(f"{left} {op} 1", scope)
            general = outcome(f"[{left}][0] {op} 1", scope)
            assert fused == general


def test_fused_reads_go_through_any_mapping() -> None:
    class Room(dict[str, Any]):
        """Not a plain dict: the fused closures leave it to the general code."""

    scope = {"room": Room(steps=3), "vars": {"n": 2}}
    assert compile_expression("room.steps < 4").evaluate(scope) is True
    assert compile_expression("room.steps + 1").evaluator(scope) == 4
    assert compile_expression("vars.n + 1 + 1").evaluator(scope) == 4
    assert compile_expression("vars.n").evaluator(scope) == 2


def test_a_lone_template_and_a_value_render_as_their_expression() -> None:
    scope = {"vars": {"n": 41, "s": "a"}}
    assert compile_template("{{ vars.n + 1 }}").render(scope) == 42
    value = compile_value({"a": "{{ vars.n + 1 }}", "b": ["{{ vars.s }}"]})
    assert value.renderer(scope) == value.render(scope) == {"a": 42, "b": ["a"]}
    failing = compile_value("{{ vars.s + 1 }}")
    for render in (failing.render, failing.renderer):
        with pytest.raises(EvaluationError) as caught:
            render(scope)
        assert str(caught.value) == "cannot add string and number (in 'vars.s + 1')"


def test_an_expression_is_still_a_plain_object() -> None:
    expression = compile_expression("vars.n < 3")
    assert expression.names == frozenset({"vars"})
    assert repr(expression) == "Expression('vars.n < 3')"
    assert not attrs.has(type(expression))
