"""The calculator's ``values``: named numbers passed beside the expression, as data."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms import WorkflowBuilder, open_runtime
from openrooms.errors import (
    EvaluationError,
    ExpressionError,
    SchemaValidationError,
    ToolError,
)
from openrooms.expressions import MAX_CALCULATOR_VALUES, MAX_EXPRESSION_LENGTH, calculate
from openrooms.tools import ToolContext
from openrooms.tools.calculator import calculator_tool
from openrooms.types import RoomId

CTX = ToolContext(room_id=RoomId("r"), node="n", idempotency_key="k")
numbers = st.integers(-(10**12), 10**12) | st.floats(
    min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False
)


def call(args: dict[str, Any]) -> Any:
    return asyncio.run(calculator_tool.call(args, CTX))


@given(numbers, numbers)
def test_named_values_compute_what_python_computes(amount: float, rate: float) -> None:
    expected = round(amount * (1 + rate), 2)
    values = {"amount": amount, "tax_rate": rate}
    assert calculate("round(amount * (1 + tax_rate), 2)", values) == expected
    assert call({"expression": "round(amount * (1 + tax_rate), 2)", "values": values}) == expected


def test_a_value_can_be_read_many_times_and_combined_with_functions() -> None:
    values = {"a": 3, "b": -4.5}
    assert calculate("max(a, abs(b)) * a + min(a, b) // 1", values) == 3 * 4.5 + -5


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "boolean"),
        (False, "boolean"),
        ("12", "string"),
        ("1000, 2) - round(1000", "string"),
        (None, "null"),
        ([1], "list"),
        ({"x": 1}, "object"),
    ],
)
def test_a_value_that_is_not_a_number_is_refused_naming_it(value: Any, kind: str) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        calculate("amount * 2", {"amount": value})
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("values.amount", f"expected a number, got {kind}")
    ]
    with pytest.raises(SchemaValidationError, match=r"values\.amount: expected number"):
        call({"expression": "amount * 2", "values": {"amount": value}})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.inf, "expected a finite number, got inf"),
        (-math.inf, "expected a finite number, got -inf"),
        (math.nan, "expected a finite number, got nan"),
        (2**2000, "the number exceeds 1024 bits"),
    ],
)
def test_non_finite_and_oversized_numbers_are_refused(value: Any, message: str) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        calculate("x + 1", {"x": value})
    assert [str(p) for p in caught.value.problems] == [f"values.x: {message}"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1x", "'1x' is not a valid name"),
        ("_private", "'_private' is not a valid name"),
        ("a-b", "'a-b' is not a valid name"),
        ("a b", "'a b' is not a valid name"),
        ("", "'' is not a valid name"),
        ("x" * 101, "is not a valid name"),
        ("and", "'and' is a word of the expression language"),
        ("true", "'true' is a word of the expression language"),
        ("round", "'round' is a word of the expression language"),
    ],
)
def test_names_must_be_identifiers_the_expression_can_use(name: str, message: str) -> None:
    with pytest.raises(SchemaValidationError, match=message) as caught:
        calculate("1", {name: 1})
    assert caught.value.problems[0].path == "values"


def test_an_unknown_name_is_an_expression_error_with_did_you_mean() -> None:
    with pytest.raises(ExpressionError, match=r"unknown name 'amout' — did you mean 'amount'\?"):
        calculate("amout * 2", {"amount": 1})
    with pytest.raises(ToolError) as caught:
        call({"expression": "amout * 2", "values": {"amount": 1}})
    assert isinstance(caught.value.__cause__, ExpressionError)


def test_a_name_without_values_says_where_values_go() -> None:
    with pytest.raises(ExpressionError) as caught:
        calculate("amount * 2")
    assert caught.value.message.startswith("unknown name 'amount': the calculator reads names")
    assert "values" in caught.value.message and caught.value.position == 0


def test_values_cannot_be_indexed_or_called() -> None:
    with pytest.raises(EvaluationError, match="no key"):
        calculate("amount.real", {"amount": 1})
    with pytest.raises(ExpressionError, match=r"unknown function 'amount'"):
        calculate("amount(1)", {"amount": 1})
    with pytest.raises(ExpressionError, match="unknown function 'len'"):
        calculate("len(amount)", {"amount": 1})


def test_the_existing_limits_still_hold_with_values() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        calculate("x" + " " * MAX_EXPRESSION_LENGTH, {"x": 1})
    with pytest.raises(EvaluationError, match="exceeds 1024 bits"):
        calculate("x ** 5000", {"x": 7})
    with pytest.raises(EvaluationError, match="division by zero"):
        calculate("x / y", {"x": 1, "y": 0})
    too_many = {f"v{i}": i for i in range(MAX_CALCULATOR_VALUES + 1)}
    with pytest.raises(SchemaValidationError, match="exceed the limit"):
        calculate("v1", too_many)


def test_values_must_be_a_mapping() -> None:
    with pytest.raises(SchemaValidationError, match="values: expected an object, got list"):
        calculate("1", [1, 2])  # type: ignore[arg-type]


def test_the_calculator_declares_its_expression_as_code() -> None:
    assert calculator_tool.templating == {"expression": "code"}
    assert "values" in calculator_tool.parameters["properties"]


def test_a_workflow_passes_variables_as_values() -> None:
    wf = (
        WorkflowBuilder("calc_values", variables={"amount": 250, "tax_rate": 0.2})
        .tool(
            "price",
            "calculator",
            {
                "expression": "round(amount * (1 + tax_rate), 2)",
                "values": {"amount": "{{ vars.amount }}", "tax_rate": "{{ vars.tax_rate }}"},
            },
            output="total",
        )
        .end("done")
        .transition("price", "done")
        .build()
    )
    with open_runtime("memory://") as rt:
        room = rt.run(rt.create_room(wf).id)
        assert room.variables["total"] == 300.0
        hostile = rt.run(rt.create_room(wf, {"amount": "1000, 2) - round(1000"}).id)
        assert hostile.status.value == "failed"
        assert "total" not in hostile.variables
        (failed,) = rt.events(hostile.id, types=["NODE_FAILED"])
        assert failed.error is not None and failed.error.type == "SchemaValidationError"
        assert "values.amount: expected number" in failed.error.message
