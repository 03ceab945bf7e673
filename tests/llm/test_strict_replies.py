"""Replies from outside (a model's answer and tool-call arguments, an HTTP body) are read by
the one strict JSON reader: duplicate keys, NaN, huge integers and runaway nesting are not
JSON here (found by a hostile trial: last-wins keys, and a RecursionError as a room's reason).
"""

from __future__ import annotations

import pytest

from openrooms.errors import CompletionError, SchemaValidationError
from openrooms.llm.base import ToolCall
from openrooms.nodes.agent import _structured
from openrooms.schema import compile_schema
from openrooms.tools.http import _json

DEEP = "[" * 3_000 + "]" * 3_000

HOSTILE = [
    ('{"a": 1, "a": 2}', "already defined"),
    ('{"a": NaN}', "NaN"),
    ('{"a": ' + "9" * 2_000 + "}", "2,000 digits"),
    (DEEP, "nested deeper"),
]


@pytest.mark.parametrize(("text", "problem"), HOSTILE, ids=["dup", "nan", "int", "deep"])
def test_an_agents_answer_must_be_strict_json(text: str, problem: str) -> None:
    with pytest.raises(SchemaValidationError, match=problem):
        _structured(text, compile_schema({}))


@pytest.mark.parametrize(("text", "problem"), HOSTILE, ids=["dup", "nan", "int", "deep"])
def test_tool_call_arguments_must_be_strict_json(text: str, problem: str) -> None:
    with pytest.raises(CompletionError, match=problem) as info:
        ToolCall("c1", "lookup", text).parsed_arguments("m")
    assert info.value.retryable  # a model does better when told


@pytest.mark.parametrize(("text", "_problem"), HOSTILE, ids=["dup", "nan", "int", "deep"])
def test_an_http_body_that_is_not_strict_json_is_kept_as_text(text: str, _problem: str) -> None:
    assert _json(text.encode()) is None
    assert _json(b'{"a": [1, 2.5, "x"]}') == ({"a": [1, 2.5, "x"]},)
