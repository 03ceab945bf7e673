"""openrooms.loading: every file and text from outside is read strictly, with typed errors.

The hostile inputs here took seconds to minutes (or a traceback) before; each test carries
a timeout so a regression fails instead of hanging, and no test times a speed target.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms import InputError, Workflow, WorkflowValidationError, load_workflow, loading
from openrooms.config import load_config
from openrooms.errors import ExpressionError
from openrooms.expressions import compile_template
from openrooms.offline import load_script
from openrooms.tools import default_tools

WORKFLOW = "id: w\ndescription: café\nnodes:\n  a: {type: end}\n"
# "billion laughs": nine levels of ten aliases each expand to 10**9 strings
ALIAS_BOMB = (
    "id: w\n"
    + "a0: &a0 [lol]\n"
    + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
)


def refused(call: Any, *args: Any, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- encodings --------------------------------------------------------------------------------


def test_latin1_names_the_first_bad_byte_and_says_utf8() -> None:
    data = WORKFLOW.encode("latin-1")
    err = refused(loading.decode, data, source="flow.yaml")
    assert err.source == "flow.yaml"
    assert err.where == "byte 22 (line 2)" and data[22] == 0xE9
    assert "must be UTF-8" in err.message and "0xe9" in err.message
    assert str(err).startswith("flow.yaml, byte 22 (line 2): must be UTF-8")


def test_utf16_with_a_bom_is_refused_at_byte_0() -> None:
    err = refused(loading.decode, WORKFLOW.encode("utf-16"), source="flow.yaml")
    assert err.where == "byte 0 (line 1)"
    assert "UTF-16" in err.message and "must be UTF-8" in err.message


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_refused_at_its_first_nul(codec: str) -> None:
    data = "id: w\n".encode(codec)
    err = refused(loading.decode, data, source="flow.yaml")
    assert err.where == f"byte {data.index(0)} (line 1)"
    assert "NUL" in err.message and "must be UTF-8" in err.message


def test_a_utf8_bom_is_allowed_and_dropped() -> None:
    assert loading.decode("\ufeffid: w".encode(), source="f") == "id: w"


def test_load_workflow_reports_bad_encoding_as_a_problem_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_bytes(WORKFLOW.encode("latin-1"))
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow(path)
    (problem,) = caught.value.problems
    assert caught.value.workflow_id == str(path)
    assert problem.path == "byte 22 (line 2)" and "must be UTF-8" in problem.message


@pytest.mark.parametrize("loader", [load_config, lambda p: load_script(p, default_tools)])
def test_config_and_script_files_must_be_utf8(tmp_path: Path, loader: Any) -> None:
    path = tmp_path / "settings.yaml"
    path.write_bytes("tools: {}\n".encode("utf-16"))
    err = refused(loader, path)
    assert err.source == str(path) and "must be UTF-8" in err.message


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_file_over_the_cap_is_refused_from_its_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:  # 50 MB, sparse: refusing it must not read it
        f.truncate(50_000_000)
    err = refused(loading.read_text, path)
    assert "50,000,000 bytes; the limit is 2,000,000" in err.message
    with pytest.raises(WorkflowValidationError, match="the limit is 2,000,000"):
        load_workflow(path)


def test_a_stream_over_the_cap_is_refused_after_reading_one_byte_past_it() -> None:
    stream = io.BytesIO(b"1" * 101)
    err = refused(loading.read_stream, stream, source="--data -", limit=100)
    assert "more than the limit of 100 bytes" in err.message
    assert stream.tell() == 101
    assert loading.read_stream(io.BytesIO(b"1" * 100), source="-", limit=100) == "1" * 100


@pytest.mark.timeout(10)
def test_a_device_that_never_ends_is_refused_at_the_cap() -> None:
    err = refused(loading.read_text, "/dev/zero")
    assert "more than the limit of 2,000,000 bytes" in err.message


def test_text_with_a_lone_surrogate_is_refused() -> None:
    """Python turns command-line bytes that are not UTF-8 into lone surrogates."""
    err = refused(loading.parse_json, '{"a":\n "\udcff"}', source="--data")
    assert err.where == "character 8 (line 2)" and "lone surrogate '\\udcff'" in err.message


def test_text_over_the_cap_is_refused() -> None:
    err = refused(loading.parse_json, "1" * 2_000_001, source="--data")
    assert err.source == "--data" and "2,000,001 characters" in err.message


def test_a_directory_is_refused_as_such(tmp_path: Path) -> None:
    err = refused(loading.read_text, tmp_path)
    assert err.message == "is a directory, not a file"


def test_a_missing_file_is_still_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        loading.load_file(tmp_path / "nope.yaml")


# --- YAML ---------------------------------------------------------------------------------


@pytest.fixture(params=[c.__name__ for c in loading._LOADERS])
def parse_yaml(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """parse_yaml over each loader: libyaml's parser when installed, and the pure-Python one."""
    loader = next(c for c in loading._LOADERS if c.__name__ == request.param)

    def parse(text: str, source: str = "<string>") -> Any:
        return loading._parse_yaml_with(loader, text, source)

    return parse


def test_yaml_duplicate_keys_name_both_lines(parse_yaml: Callable[..., Any]) -> None:
    text = "id: w\nnodes:\n  price: {type: end}\n  other: {type: end}\n  price: {type: end}\n"
    err = refused(parse_yaml, text, source="flow.yaml")
    assert err.message == "key 'price' at line 5 is already defined at line 3"
    assert err.where.startswith("line 5")


def test_yaml_keys_that_python_equates_are_duplicates_too(parse_yaml: Callable[..., Any]) -> None:
    err = refused(parse_yaml, "1: a\ntrue: b\n")
    assert err.message == "key 'true' at line 2 is the same key as '1' at line 1"


def test_a_workflow_defining_a_node_twice_is_invalid() -> None:
    text = "id: w\nnodes:\n  a: {type: end}\n  a: {type: end}\n"
    with pytest.raises(WorkflowValidationError, match="key 'a' at line 4 is already defined"):
        Workflow.from_yaml(text)


@pytest.mark.timeout(10)
def test_a_yaml_alias_bomb_is_refused_at_its_first_anchor(parse_yaml: Callable[..., Any]) -> None:
    err = refused(parse_yaml, ALIAS_BOMB, source="bomb.yaml")
    assert err.where.startswith("line 2,")
    assert "anchors and aliases (&a0) are not allowed" in err.message


def test_a_lone_alias_is_refused_too(parse_yaml: Callable[..., Any]) -> None:
    err = refused(parse_yaml, "a: *nowhere\n")
    assert "(*nowhere)" in err.message


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("x: " + "[" * 100_000, 1),  # flow: refused by the scanner
        ("x:\n" + "".join("  " * i + "- \n" for i in range(1, 200)), 101),  # block
    ],
)
def test_yaml_nested_past_the_limit_is_refused(
    text: str, line: int, parse_yaml: Callable[..., Any]
) -> None:
    err = refused(parse_yaml, text)
    assert err.message == "nested deeper than 100 levels"
    assert err.where.startswith(f"line {line},")


def test_yaml_nesting_up_to_the_limit_is_fine(parse_yaml: Callable[..., Any]) -> None:
    assert parse_yaml("[" * 100 + "]" * 100) is not None


def test_yaml_integers_over_1000_digits_are_refused_with_their_line(
    parse_yaml: Callable[..., Any],
) -> None:
    err = refused(parse_yaml, "a: 1\nb: " + "9" * 5000 + "\n")
    assert err.where.startswith("line 2") and "5,000 digits" in err.message
    assert parse_yaml("b: " + "9" * 1000)["b"] == int("9" * 1000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when: 2001-13-01", "cannot read this value: month must be in 1..12"),
        ("when: !!timestamp soon", "cannot read this value as !!timestamp"),
        ("n: !!int", "cannot read this value as !!int"),
        ("x: \x01", "character '\\x01' is not allowed in YAML"),
        ("x: [1, 2", "expected ',' or ']'"),
    ],
)
def test_unreadable_yaml_values_are_typed_errors(
    text: str, message: str, parse_yaml: Callable[..., Any]
) -> None:
    assert message in refused(parse_yaml, text).message


# --- JSON -------------------------------------------------------------------------------------


def test_json_duplicate_keys_name_the_object_by_path_and_both_lines() -> None:
    text = '{"a": {"b": [1, {"c": 1,\n "c\\u0022": 0, "c": 2}]}}'
    err = refused(loading.parse_json, text, source="--data")
    assert str(err) == "--data, $.a.b[1]: key 'c' at line 2 is already defined at line 1 — keep one"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[1, 2], [3, {"k": 1, "k": 2}]]', "$[1][1]"),
        ('{"x": [{}, {"a\\"b": {"k": 1}}], "y": {"k": 1, "k": 2}}', "$.y"),
        ('{"a b": {"k": [1, "k"], "k": 3}}', '$["a b"]'),
    ],
)
def test_json_duplicate_keys_are_found_in_nested_objects(text: str, where: str) -> None:
    err = refused(loading.parse_json, text)
    assert err.where == where and err.message.startswith("key 'k' at line 1 is already defined")


@pytest.mark.timeout(10)
def test_json_nested_past_the_recursion_limit_is_a_typed_error() -> None:
    err = refused(loading.parse_json, "[" * 100_000, source="--data")
    assert err.message == "nested deeper than 100 levels"


def test_json_nested_past_the_limit_names_the_path() -> None:
    assert loading.parse_json("[" * 100 + "]" * 100) is not None
    err = refused(loading.parse_json, '{"a": ' + "[" * 100 + "]" * 100 + "}")
    assert err.where == "$.a[0][0][0]...[0][0][0][0]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"n": ' + "1" * 5000 + "}", "an integer of 5,000 digits; at most 1,000 allowed"),
        ('{"n": 1e999}', "the number 1e999 is out of range"),
        ('{"n": NaN}', "not valid JSON: NaN is not a JSON value"),
        ('{"n": -Infinity}', "not valid JSON: -Infinity is not a JSON value"),
        ('{"n": }', "not valid JSON: Expecting value"),
    ],
)
def test_json_values_python_would_misread_are_typed_errors(text: str, message: str) -> None:
    err = refused(loading.parse_json, text, source="--var n")
    assert err.message == message and err.where.startswith("line 1")


def test_json_syntax_errors_carry_the_decoder_error_as_their_cause() -> None:
    """So ``--var name=VALUE`` can tell "not JSON" (kept as text) from "bad JSON"."""
    assert isinstance(refused(loading.parse_json, "{nope").__cause__, json.JSONDecodeError)
    assert isinstance(refused(loading.parse_json, "NaN").__cause__, json.JSONDecodeError)
    deep = refused(loading.parse_json, "[" * 200 + "]" * 200)
    assert deep.__cause__ is None


def test_json_files_are_read_as_json_and_yaml_files_as_yaml(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text('{"n": 1e3, "b": "yes"}')
    (tmp_path / "v.yaml").write_text('{"n": 1e3, "b": yes}')
    assert loading.load_file(tmp_path / "v.json") == {"n": 1000.0, "b": "yes"}
    assert loading.load_file(tmp_path / "v.yaml") == {"n": 1000.0, "b": True}  # YAML 1.1
    (tmp_path / "w.json").write_text('{"b": yes}')
    with pytest.raises(InputError, match="not valid JSON"):
        loading.load_file(tmp_path / "w.json")


def test_a_json_workflow_file_with_a_duplicate_node_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text('{"id": "w", "nodes": {"a": {"type": "end"}, "a": {"type": "end"}}}')
    with pytest.raises(WorkflowValidationError) as caught:
        load_workflow(path)
    (problem,) = caught.value.problems
    assert problem.path == "$.nodes"
    assert problem.message == "key 'a' at line 1 is already defined at line 1"


# --- templates --------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_a_run_of_unclosed_braces_compiles_in_linear_time() -> None:
    """50,000 '{{' took 89 s with the old regex; the error and its position are unchanged."""
    with pytest.raises(ExpressionError) as caught:
        compile_template("{{" * 50_000)
    assert caught.value.message == "unclosed '{{'" and caught.value.position == 0


@pytest.mark.timeout(10)
def test_many_template_parts_compile() -> None:
    template = compile_template("x{{ 1 }}" * 10_000)
    assert template.render({}) == "x1" * 10_000


@pytest.mark.parametrize(
    ("source", "position"),
    [
        ("a {{ 1 }} b {{ 2", 12),
        ("{{ 1 +  }}", 6),
        ("}} {{ x {{ y }}", 6),
        ("{{ vars.a }} {{ 1 + * 2 }}", 20),
    ],
)
def test_template_errors_keep_their_positions(source: str, position: int | None) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_template(source, names={"vars"})
    assert caught.value.position == position


# --- anything at all --------------------------------------------------------------------------

_YAML_BITS = [
    *"{}[]:,-&*!|>'\"#%@`? \n\t0123456789eE.+\u00e9\x00\ufeff",
    *["id: w\n", "nodes:\n", "  a: ", "{type: end}", "!!int ", "!!timestamp ", "<<: ", "NaN"],
]
_HOSTILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_YAML_BITS), max_size=150)
    .map("".join)
    .flatmap(
        lambda s: st.sampled_from(["utf-8", "utf-16", "utf-16-le", "latin-1"]).map(
            lambda codec: s.encode(codec, "replace")
        )
    ),
)


@given(data=_HOSTILE_BYTES, suffix=st.sampled_from([".yaml", ".json"]))
def test_any_bytes_as_a_workflow_file_give_only_typed_errors(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"flow{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(WorkflowValidationError):
            load_workflow(path)


@given(data=_HOSTILE_BYTES)
def test_any_bytes_as_data_give_a_value_or_an_input_error(data: bytes) -> None:
    try:
        text = loading.read_stream(io.BytesIO(data), source="--data -")
        loading.parse_json(text, source="--data -")
    except InputError:
        pass


@pytest.mark.parametrize("loader", loading._LOADERS, ids=lambda c: c.__name__)
@given(text=st.lists(st.sampled_from(_YAML_BITS), max_size=150).map("".join))
def test_any_text_as_yaml_gives_a_value_or_an_input_error(loader: Any, text: str) -> None:
    with contextlib.suppress(InputError):
        loading._parse_yaml_with(loader, text, "<text>")


class _Obj(list[tuple[str, Any]]):
    """A JSON object written as its members, so a test can repeat a key."""


_TREES = st.recursive(
    st.one_of(st.integers(-5, 5), st.sampled_from(["k", "a b", 'q"'])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(st.sampled_from(["k", "a b", 'q"', "z"]), inner), max_size=4).map(_Obj),
    ),
    max_leaves=20,
)


def _write(tree: Any) -> str:
    if isinstance(tree, _Obj):
        return "{" + ",\n".join(f"{json.dumps(k)}: {_write(v)}" for k, v in tree) + "}"
    if isinstance(tree, list):
        return "[" + ", ".join(_write(v) for v in tree) + "]"
    return json.dumps(tree)


def _first_repeat(tree: Any, path: Any = None) -> Any:
    """The path (as nested (parent, key) pairs) to the object holding the first repeated key,
    in the order the text reads; False if there is none."""
    if isinstance(tree, _Obj):
        seen = set()
        for k, v in tree:
            if k in seen:
                return path
            seen.add(k)
            found = _first_repeat(v, (path, k))
            if found is not False:
                return found
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found = _first_repeat(v, (path, i))
            if found is not False:
                return found
    return False


@given(tree=_TREES)
def test_json_duplicates_are_refused_exactly_where_they_are(tree: Any) -> None:
    text = _write(tree)
    expected = _first_repeat(tree)
    if expected is False:
        assert loading.parse_json(text) == json.loads(text)
        return
    err = refused(loading.parse_json, text)
    assert "is already defined at line" in err.message
    assert err.where == loading._json_path(expected)


def test_numbers_with_an_exponent_and_no_dot_are_numbers(parse_yaml: Callable[..., Any]) -> None:
    """YAML 1.1 reads 1e5 as text, so `timeout_s: 4e9` was "expected a number, got a string"
    while `--var x=1e5` was a number (found by a hostile trial)."""
    assert parse_yaml("a: 1e5\nb: -2E-3\nc: 1.5e2\nd: '1e5'\ne: 1e") == {
        "a": 100000.0,
        "b": -0.002,
        "c": 150.0,
        "d": "1e5",
        "e": "1e",
    }
