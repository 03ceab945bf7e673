"""Typed variables: a workflow's ``inputs`` schema checks what callers pass, and ``--var``
reads values by it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openrooms import (
    PatternTimeoutError,
    Runtime,
    SchemaValidationError,
    VariableSyntaxError,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    load_workflow,
    open_runtime,
)
from openrooms.cli import cli
from openrooms.inputs import parse_var
from openrooms.testing import memory_runtime

ROOT = Path(__file__).parents[2]
ORDER = ROOT / "examples" / "order_approval.yaml"
SAVINGS = ROOT / "examples" / "savings_loop.yaml"

INPUTS: dict[str, Any] = {
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "customer": {"type": "string", "minLength": 1},
        "rush": {"type": "boolean"},
    },
    "required": ["customer"],
}


def build(inputs: Any = INPUTS, **variables: Any) -> Workflow:
    defaults = {"amount": 10, "state": "new", **variables}
    return (
        WorkflowBuilder("typed", variables=defaults, inputs=inputs)
        .set("go", {"state": "done"})
        .end("end")
        .transition("go", "end")
        .build()
    )


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(f"sqlite:///{tmp_path / 'inputs.db'}") as runtime:
        yield runtime


def refused(rt: Runtime, wf: Workflow, variables: dict[str, Any]) -> list[str]:
    with pytest.raises(SchemaValidationError) as info:
        rt.create_room(wf, variables)
    assert not rt.list_rooms()  # nothing half-made
    return [str(p) for p in info.value.problems]


# --- create_room ------------------------------------------------------------------------------


def test_declared_inputs_are_accepted_and_defaults_fill_the_rest(rt: Runtime) -> None:
    room = rt.create_room(build(), {"customer": "ada", "amount": 250})
    assert room.variables == {"amount": 250, "state": "new", "customer": "ada"}


def test_an_unknown_name_is_refused_with_a_did_you_mean(rt: Runtime) -> None:
    """``amont=250`` used to run silently with the default amount."""
    (problem,) = refused(rt, build(), {"customer": "ada", "amont": 250})
    assert problem.startswith("variables.amont: unknown variable 'amont'")
    assert "did you mean 'amount'?" in problem


def test_a_wrong_type_says_which_and_where(rt: Runtime) -> None:
    problems = refused(rt, build(), {"customer": "ada", "amount": "250", "rush": "yes"})
    assert sorted(problems) == [
        'variables.amount: expected number, got string "250"',
        'variables.rush: expected boolean, got string "yes"',
    ]


def test_a_value_out_of_range_and_a_missing_required_input_are_refused(rt: Runtime) -> None:
    problems = refused(rt, build(), {"amount": -1})
    assert "variables.amount: expected a number at least 0, got -1" in problems
    assert any(p.startswith("variables: missing required variable 'customer'") for p in problems)


def test_a_default_the_inputs_do_not_declare_is_internal_state(rt: Runtime) -> None:
    (problem,) = refused(rt, build(), {"customer": "ada", "state": "hacked"})
    assert "unknown variable 'state'" in problem


def test_additional_properties_true_takes_undeclared_names(rt: Runtime) -> None:
    wf = build({**INPUTS, "additionalProperties": True})
    room = rt.create_room(wf, {"customer": "ada", "note": "hi"})
    assert room.variables["note"] == "hi"


def test_a_workflow_without_inputs_takes_any_variables_as_before(rt: Runtime) -> None:
    room = rt.create_room(build(None), {"amont": "anything", "customer": 5})
    assert room.variables["amont"] == "anything"


# --- validation of the workflow ---------------------------------------------------------------


def problems_of(**kwargs: Any) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        build(**kwargs)
    return [str(p) for p in info.value.problems]


def test_defaults_are_checked_against_the_inputs_when_the_workflow_is_built() -> None:
    (problem,) = problems_of(amount=-5)
    assert problem.startswith("variables.amount: default does not fit inputs")
    assert "at least 0" in problem


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"properties": {"amount": {"type": "numbr"}}}, "inputs.properties.amount.type"),
        ({"propertys": {}}, "inputs.propertys: unsupported keyword"),
        ({"type": "array"}, "inputs.type: expected 'object'"),
        ({"properties": {"2x": {}}}, "inputs.properties.2x: '2x' is not a valid variable name"),
        ("amount", "inputs: expected a JSON schema object"),
        ({"properties": {"a": {"pattern": "("}}}, "inputs.properties.a.pattern: invalid"),
    ],
)
def test_a_bad_inputs_schema_is_refused_at_its_path(inputs: Any, expected: str) -> None:
    problems = problems_of(inputs=inputs)
    assert any(p.startswith(expected) for p in problems), problems


def test_inputs_round_trip_through_the_file_format() -> None:
    wf = build()
    data = wf.to_dict()
    assert data["inputs"] == INPUTS
    assert list(data).index("inputs") == list(data).index("variables") + 1
    assert Workflow.from_dict(data) == wf
    assert "inputs" not in build(None).to_dict()  # nothing declared, nothing written


def test_the_example_declares_its_inputs() -> None:
    wf = load_workflow(ORDER)
    assert wf.inputs is not None
    assert wf.inputs["properties"]["amount"]["type"] == "number"
    assert wf.plan.inputs is not None  # compiled once, with the plan


# --- --var NAME=TEXT and NAME:=JSON -----------------------------------------------------------

TYPED = {
    "properties": {
        "amount": {"type": "number"},
        "name": {"type": "string"},
        "tags": {"type": "array"},
        "size": {"enum": ["1", "2"]},
        "maybe": {"type": ["string", "null"]},
    }
}


@pytest.mark.parametrize(
    ("pair", "inputs", "expected"),
    [
        ("amount=250", TYPED, 250),
        ("amount=2.5", TYPED, 2.5),
        ("name=250", TYPED, "250"),  # declared a string: the text as it is
        ("name={not json", TYPED, "{not json"),
        ("maybe=null", TYPED, "null"),
        ("size=1", TYPED, "1"),  # an enum of strings reads text
        ("tags=[1, 2]", TYPED, [1, 2]),
        ("amount:=250", TYPED, 250),
        ("name:=250", TYPED, 250),  # := is JSON whatever is declared; the schema then decides
        ('name:="x=y"', TYPED, "x=y"),
        ("n=3", None, 3),
        ("flag=true", None, True),
        ("x=null", None, None),
        ("label=hello world", None, "hello world"),
        ('obj={"a": 1}', None, {"a": 1}),
        ('q="quoted"', None, "quoted"),
        ("nan=NaN", None, "NaN"),  # not JSON, so text
        ("eq=a=b", None, "a=b"),
        ("empty=", None, ""),
    ],
)
def test_var_values_are_read_by_the_documented_rule(
    pair: str, inputs: dict[str, Any] | None, expected: Any
) -> None:
    name, value = parse_var(pair, inputs)
    assert name == pair.partition("=")[0].removesuffix(":")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ('a={"a":', "looks like JSON but is not: Expecting value at character 6"),
        ("a=[1, 2", "looks like JSON but is not"),
        ('a="open', "looks like JSON but is not"),
        ("a:={nope", "Expecting property name enclosed in double quotes at character 2"),
        ("a:=NaN", "NaN is not a JSON value"),
        ("a:=", "Expecting value at character 1"),
        ("novalue", "expected NAME=TEXT or NAME:=JSON"),
        ("=5", "expected NAME=TEXT or NAME:=JSON"),
    ],
)
def test_a_var_that_cannot_be_read_is_a_typed_error(pair: str, message: str) -> None:
    """``'{"a":'`` used to be kept silently as a string."""
    with pytest.raises(VariableSyntaxError) as info:
        parse_var(pair, None)
    assert message in str(info.value)


def test_text_for_a_declared_non_string_input_must_be_of_its_type() -> None:
    with pytest.raises(SchemaValidationError) as info:
        parse_var("amount=abc", TYPED)
    (problem,) = info.value.problems
    assert problem.path == "variables.amount"
    assert "expected number, got the text 'abc'" in problem.message
    assert "amount:=" in problem.hint


# --- the CLI ----------------------------------------------------------------------------------


def invoke(tmp_path: Path, *args: str) -> Any:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    return CliRunner().invoke(cli, ["--db", db, *args])


def test_cli_var_amount_arrives_as_a_number(tmp_path: Path) -> None:
    result = invoke(tmp_path, "run", str(ORDER), "--var", "amount=250", "--json")
    assert result.exit_code == 3, result.output
    final = json.loads(result.output.strip().splitlines()[-1])
    assert final["variables"]["amount"] == 250 and final["variables"]["total"] == 300.0


def test_cli_refuses_a_misspelt_var_with_a_did_you_mean(tmp_path: Path) -> None:
    result = invoke(tmp_path, "run", str(ORDER), "--var", "amont=250")
    assert result.exit_code != 0
    assert "unknown variable 'amont'" in result.output
    assert "did you mean 'amount'?" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_code_where_a_number_is_declared(tmp_path: Path) -> None:
    result = invoke(tmp_path, "run", str(ORDER), "--var", "amount=1000, 2) - round(1000")
    assert result.exit_code != 0
    assert "variables.amount: expected number" in result.output


def test_cli_refuses_broken_json_with_its_position(tmp_path: Path) -> None:
    result = invoke(tmp_path, "run", str(SAVINGS), "--var", 'target={"a":')
    assert result.exit_code == 2
    assert "looks like JSON but is not" in result.output and "character 6" in result.output
    result = invoke(tmp_path, "run", str(SAVINGS), "--var", "target:=[1,")
    assert result.exit_code == 2 and "at character 4" in result.output


def test_cli_vars_file_values_are_checked_against_the_inputs(tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.yaml"
    vars_file.write_text("amount: lots\n")
    result = invoke(tmp_path, "run", str(ORDER), "--vars-file", str(vars_file))
    assert result.exit_code != 0
    assert 'variables.amount: expected number, got string "lots"' in result.output


def test_the_readme_command_runs_in_a_real_process(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    command = [sys.executable, "-m", "openrooms.cli", "--db", db, "run", str(ORDER)]
    out = subprocess.run(
        [*command, "--var", "amount=250", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 3, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["variables"]["amount"] == 250


def test_a_subworkflow_input_is_checked_against_the_childs_inputs(rt: Runtime) -> None:
    child = Workflow.from_yaml(
        "id: typed_child\nvariables: {n: 0}\ninputs: {properties: {n: {type: integer}}}\n"
        "nodes:\n  done: {type: end}\n"
    )
    parent = Workflow.from_yaml(
        "id: typed_parent\nnodes:\n"
        "  call: {type: subworkflow, workflow: typed_child, input: {m: 2}, output: out}\n"
        "  done: {type: end}\n"
        "transitions:\n  - {from: call, to: done}\n"
    )
    rt.register_workflow(child)
    state = rt.run(rt.create_room(parent).room_id)
    assert state.status.value == "failed"
    failed = [e for e in rt.events(state.room_id) if e.type.value == "NODE_FAILED"]
    assert failed and "unknown variable 'm'" in failed[0].error.message  # type: ignore[union-attr]
    assert "allowed: n" in failed[0].error.message  # type: ignore[union-attr]


def test_an_input_pattern_that_runs_out_of_time_says_so() -> None:
    wf = Workflow.from_yaml(
        "id: slow\ninputs: {properties: {s: {type: string, pattern: '^(a|a)*$'}}}\n"
        "nodes:\n  done: {type: end}\n"
    )
    with pytest.raises(PatternTimeoutError, match="took too long"):
        memory_runtime().create_room(wf, {"s": "a" * 40 + "!"})
