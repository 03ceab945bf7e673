"""openrooms_server.dashboard.forms (fields from a JSON schema, the posted text converted,
the schema's problems put next to their fields) and openrooms_server.session (the signed
cookie and its CSRF token), without a server."""

from __future__ import annotations

import pytest

from openrooms.errors import Problem
from openrooms.schema import compile_schema
from openrooms_server.dashboard import forms
from openrooms_server.session import Sessions

SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "x": {"type": "number", "description": "a ratio"},
        "ok": {"type": "boolean"},
        "s": {"type": "string"},
        "maybe": {"type": ["string", "null"]},
        "pick": {"enum": ["a", 2, None]},
        "obj": {"type": "object"},
        "any": {},
    },
    "required": ["n", "s"],
}


def test_each_property_gets_the_control_of_its_type() -> None:
    fields = {f.name: f for f in forms.fields_for_schema(SCHEMA, {"n": 3, "ok": True})}
    kinds = {n: f.kind for n, f in fields.items()}
    assert kinds == {
        "n": "integer",
        "x": "number",
        "ok": "checkbox",
        "s": "text",
        "maybe": "text",
        "pick": "select",
        "obj": "json",
        "any": "json",
    }
    assert fields["n"].required and fields["s"].required and not fields["x"].required
    assert fields["n"].value == "3" and fields["ok"].value == "on"
    assert fields["x"].description == "a ratio"
    assert fields["pick"].options == ('"a"', "2", "null")


@pytest.mark.parametrize("schema", [None, True, {"type": "string"}, {"type": "object"}])
def test_a_schema_without_properties_is_one_json_field(schema: object) -> None:
    fields = forms.fields_for_schema(schema)
    assert [(f.name, f.kind) for f in fields] == [(forms.WHOLE, "json")]
    value, filled = forms.convert(fields, {forms.WHOLE: '{"a": [1, 2]}'})
    assert value == {"a": [1, 2]} and not filled[0].error
    value, filled = forms.convert(fields, {forms.WHOLE: "yes"})
    assert "JSON" in filled[0].error


def test_posted_text_is_converted_by_type() -> None:
    fields = forms.fields_for_schema(SCHEMA)
    posted = {"n": " -12 ", "x": "1e3", "s": " kept as typed ", "pick": "2", "obj": '{"k": 1}'}
    value, filled = forms.convert(fields, posted)
    assert value == {
        "n": -12,
        "x": 1000.0,
        "ok": False,  # unchecked
        "s": " kept as typed ",
        "pick": 2,
        "obj": {"k": 1},
    }  # empty fields are left out: the schema says whether they were needed
    assert not any(f.error for f in filled)
    assert forms.convert(fields, {"x": "7"})[0]["x"] == 7  # a whole number stays an int


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("n", "1.5", "whole number"),
        ("n", "ten", "whole number"),
        ("x", "1e999", "number"),  # infinite: not JSON
        ("x", "NaN", "number"),
        ("obj", "{oops", "JSON"),
        ("pick", "not json", "JSON"),
    ],
)
def test_text_that_does_not_convert_gets_its_message(name: str, text: str, message: str) -> None:
    fields = forms.fields_for_schema(SCHEMA)
    value, filled = forms.convert(fields, {name: text})
    error = next(f.error for f in filled if f.name == name)
    assert message in error and name not in value
    assert next(f.value for f in filled if f.name == name) == text  # kept for fixing


def test_schema_problems_go_next_to_their_fields() -> None:
    fields = forms.fields_for_schema(SCHEMA)
    problems = compile_schema(SCHEMA).problems({"obj": {}, "x": "no"}, "input")
    placed, rest = forms.place_problems(fields, problems, "input")
    errors = {f.name: f.error for f in placed if f.error}
    assert set(errors) == {"n", "s", "x"}
    assert errors["n"] == "this field is required"
    assert rest == ""
    placed, rest = forms.place_problems(fields, [Problem("input", "something else")], "input")
    assert rest == "input: something else" and not any(f.error for f in placed)


KEY = "k" * 24
OTHER = "o" * 24


def test_a_session_is_signed_with_its_key_and_expires() -> None:
    sessions = Sessions([KEY, OTHER], ttl_s=60)
    cookie = sessions.issue(KEY, now=1000)
    assert sessions.verify(cookie, now=1059) is not None
    assert sessions.verify(cookie, now=1060) is None  # expired
    assert Sessions([OTHER]).verify(cookie, now=1000) is None  # its key removed
    token = sessions.csrf_token(cookie, now=1000)
    assert token and sessions.check_csrf(cookie, token, now=1000)
    other = sessions.issue(OTHER, now=1000)
    assert not sessions.check_csrf(other, token, now=1000)  # tokens belong to a session
    assert not sessions.check_csrf(cookie, "", now=1000)
    assert sessions.find_key(KEY) == KEY and sessions.find_key("k" * 23) is None
    with pytest.raises(ValueError, match="not a configured"):
        sessions.issue("z" * 24, now=0)
