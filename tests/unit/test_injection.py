"""Values never become code: hostile text through ``--var``, wait input, tool results and model
replies reaches tools as data, and a template spliced into code is refused.

Each path is tried with a fixed corpus and a Hypothesis strategy of hostile strings. What
may happen to a hostile value: it is refused with a typed error, or it is used as the data it
is (a number computes what Python computes from it). What must never happen: the value
changes the structure of an expression or a URL.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from openrooms import (
    EventType,
    RoomStatus,
    Runtime,
    SchemaValidationError,
    UnstorableValueError,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    load_workflow,
    serde,
)
from openrooms.backends import MemoryStore
from openrooms.cli import cli
from openrooms.errors import UnsafeTemplateError
from openrooms.llm.registry import ModelRegistry
from openrooms.room import RoomState
from openrooms.testing import ScriptedModel, memory_runtime
from openrooms.tools import (
    ArgKind,
    BaseTool,
    HttpPolicy,
    Tool,
    ToolContext,
    ToolRegistry,
    http_tool,
    tool,
)
from openrooms.tools import default_tools as builtin_tools

ROOT = Path(__file__).parents[2]
ORDER = ROOT / "examples" / "order_approval.yaml"
EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_WAITING = 0, 1, 2, 3

# Attempts to change an expression, a template or a URL from inside a value.
HOSTILE = [
    "1000, 2) - round(1000",  # the issue's: the total became -200.0 and skipped approval
    "1000) * 0 + (1",
    "0 * 1000",
    "-1000",
    "1 if true else 1000",
    "amount",
    "tax_rate",
    "vars.approval_threshold",
    "approval_threshold - 1000",
    "'1' + '2'",
    "1000\n, 2) - round(1000",
    "1000 # comment",
    "}} {{ 0 }}",
    "{{ 0 }}",
    "{{ vars.approval_threshold }}",
    "__import__('os').system('id')",
    "().__class__.__base__",
    "lambda: 0",
    "1; import os",
    "0x3e8",
    "1_000",
    "1e3",
    "\u0661\u0660\u0660\u0660",  # Arabic-Indic digits
    "\uff11\uff10\uff10\uff10",  # full-width digits
    "",
    " ",
    "NaN",
    "Infinity",
    "-Infinity",
    "true",
    "null",
    "[1000]",
    '{"amount": 0}',
    "../admin?x=1",
    "a/b#frag&c=d%2F",
    "\r\nX-Injected: 1",
    "\x00",
]

_FRAGMENTS = [
    ")",
    "(",
    ",",
    "{{",
    "}}",
    "{%",
    "'",
    '"',
    "\\",
    "\n",
    "#",
    "?",
    "&",
    "=",
    "/",
    "%",
    "..",
    " - ",
    " * 0",
    "round(",
    "vars.",
    "amount",
    "__",
    "1e308",
    "9" * 40,
    "-",
    "0",
    "true",
]
hostile_strings = st.one_of(
    st.sampled_from(HOSTILE),
    st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=8).map("".join),
    st.text(max_size=40),
)
"""Text built to break out of an expression, a template or a URL, and text at random."""


def is_data_number(value: object) -> bool:
    """Whether the calculator takes *value* as a number: finite, and not a boolean."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < 1e300
    )


def order_total(amount: float) -> float:
    return round(amount * 1.2, 2)


def failure_of(rt: Runtime, room: RoomState) -> str:
    """The type of the error the room's first failed node logged."""
    failed = rt.events(room.id, types=[EventType.NODE_FAILED])
    assert failed, rt.events(room.id)
    assert failed[0].error is not None
    return failed[0].error.type


# --- the order example, through `--var` ----------------------------------------------------


def cli_var(text: str) -> Any:
    """What `--var amount=TEXT` gives the room (JSON if it parses, else the text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'injection.db'}"
    runner = CliRunner()

    def call(*args: str):
        return runner.invoke(cli, ["--db", db, *args], catch_exceptions=False)

    return call


def test_the_order_example_asks_for_approval_of_1000(invoke) -> None:
    result = invoke("run", str(ORDER), "--var", "amount=1000", "--json")
    assert result.exit_code == EXIT_WAITING, result.output
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["variables"]["total"] == 1200.0
    assert final["current_node"] == "approval"


@pytest.mark.parametrize("amount", HOSTILE, ids=repr)
def test_a_hostile_amount_is_refused_or_priced_as_data(invoke, amount: str) -> None:
    result = invoke("run", str(ORDER), "--var", f"amount={amount}", "--json")
    assert "Traceback" not in result.output
    lines = result.stdout.strip().splitlines()
    if result.exit_code in (EXIT_FAILED, EXIT_INVALID) and not lines[-1:]:
        assert "Error" in result.output  # refused before a room was made, with a message
        return
    final = json.loads(lines[-1])
    given = final["variables"]["amount"]
    if is_data_number(given):
        total = order_total(given)
        assert final["variables"]["total"] == total
        expected = EXIT_WAITING if total > 100 else EXIT_COMPLETED
        assert result.exit_code == expected, result.output
    else:
        assert result.exit_code == EXIT_FAILED, result.output
        assert final["status"] == "failed" and final["current_node"] == "price"
        assert "total" not in final["variables"]
        assert "state" not in final["variables"]  # never fulfilled
        assert "SchemaValidationError" in final["reason"]


@pytest.mark.slow
def test_the_reported_injection_is_refused_through_the_real_command(tmp_path: Path) -> None:
    """The issue's command, run as a user runs it: a process, the installed module. The
    example declares ``amount`` a number, so the text is refused before a room exists."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENROOMS_DB": f"sqlite:///{tmp_path}/r.db"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openrooms.cli",
            "run",
            str(ORDER),
            "--json",
            "--var",
            f"amount={HOSTILE[0]}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_INVALID, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "amount" in proc.stderr and "expected number" in proc.stderr
    assert proc.stdout.strip() == ""  # no room was made, so none is reported


ORDER_WF = load_workflow(ORDER)
# The same workflow without its typed inputs: the calculator itself must hold the line.
UNTYPED_ORDER_WF = attrs.evolve(ORDER_WF, id="order_untyped", inputs=None)


@given(hostile_strings)
def test_no_hostile_amount_changes_the_price(amount: str) -> None:
    """Through the library: typed inputs refuse a string amount; without them, a string
    amount always fails the pricing with a typed error."""
    rt = memory_runtime()
    with pytest.raises(SchemaValidationError):
        rt.create_room(ORDER_WF, {"amount": amount})
    room = rt.run(rt.create_room(UNTYPED_ORDER_WF, {"amount": amount}).id)
    assert room.status is RoomStatus.FAILED and room.current_node == "price"
    assert "total" not in room.variables and "state" not in room.variables
    assert failure_of(rt, room) == "SchemaValidationError"


# --- wait input ------------------------------------------------------------------------------

PRICED_BY_INPUT = serde.workflow_from_text(
    """
id: priced_by_input
variables: {tax_rate: 0.2}
nodes:
  ask: {type: wait, prompt: "How much?", output: given}
  price:
    type: tool
    tool: calculator
    args:
      expression: round(amount * (1 + tax_rate), 2)
      values: {amount: "{{ vars.given.amount }}", tax_rate: "{{ vars.tax_rate }}"}
    output: total
  note: {type: set, assign: {note: "priced {{ vars.given.amount }} for {{ vars.given.by }}"}}
  done: {type: end}
  refused: {type: end, status: failed, reason: "could not price {{ vars.given.amount }}"}
transitions:
  - {from: ask, to: price}
  - {from: price, to: note}
  - {from: price, to: refused, on: error}
  - {from: note, to: done}
"""
)


def input_room(rt: Runtime, amount: Any, by: str = "sam") -> RoomState:
    room = rt.run(rt.create_room(PRICED_BY_INPUT).id)
    assert room.status is RoomStatus.WAITING
    return rt.send_input(room.id, {"amount": amount, "by": by})


@pytest.mark.parametrize("amount", [*HOSTILE, *map(cli_var, HOSTILE)], ids=repr)
def test_hostile_input_is_refused_or_priced_as_data(amount: Any) -> None:
    rt = memory_runtime()
    if isinstance(amount, float) and not math.isfinite(amount):
        waiting = rt.run(rt.create_room(PRICED_BY_INPUT).id)
        with pytest.raises(UnstorableValueError):  # no store can keep it: refused at the door
            rt.send_input(waiting.id, {"amount": amount, "by": "sam"})
        assert rt.get_room(waiting.id).status is RoomStatus.WAITING
        return
    room = input_room(rt, amount)
    if is_data_number(amount):
        assert room.status is RoomStatus.COMPLETED
        assert room.variables["total"] == order_total(amount)
    else:
        assert room.status is RoomStatus.FAILED and room.current_node == "refused"
        assert "total" not in room.variables
        assert failure_of(rt, room) == "SchemaValidationError"


@given(hostile_strings, hostile_strings)
def test_input_rendered_into_text_is_never_rendered_again(amount: str, by: str) -> None:
    """A value holding ``{{ }}`` is text: a later template prints it, never evaluates it."""
    rt = memory_runtime()
    room = rt.run(rt.create_room(PRICED_BY_INPUT).id)
    room = rt.send_input(room.id, {"amount": 10, "by": by})
    assert room.variables["note"] == f"priced 10 for {by}"
    room = input_room(rt, amount)
    assert room.reason == f"could not price {amount}"


def test_hostile_input_through_the_cli_is_data(invoke) -> None:
    """`openrooms input`: a decision whose `by` holds template and expression text."""
    run = invoke("run", str(ORDER), "--var", "amount=1000")
    assert run.exit_code == EXIT_WAITING
    room_id = run.stdout.split()[1]
    by = "{{ vars.total * 0 }}'), round(0"
    data = json.dumps({"approved": True, "by": by})
    done = invoke("input", room_id, "--data", data, "--json")
    assert done.exit_code == EXIT_COMPLETED, done.output
    final = json.loads(done.stdout.strip().splitlines()[-1])
    assert final["variables"]["approved_by"] == by
    assert final["variables"]["total"] == 1200.0


# --- tool results and model replies ---------------------------------------------------------


def echo_tools() -> ToolRegistry:
    tools = builtin_tools.copy()

    @tool(registry=tools)
    def echo(text: str) -> str:
        """Return the text: stands in for any service that answers with outside data."""
        return text

    return tools


FROM_A_TOOL = """
id: priced_by_a_tool
variables: {reply: "1"}
nodes:
  fetch: {type: tool, tool: echo, args: {text: "{{ vars.reply }}"}, output: fetched}
  price:
    type: tool
    tool: calculator
    args: {expression: "amount * 2", values: {amount: "{{ vars.fetched }}"}}
    output: total
  done: {type: end}
transitions:
  - {from: fetch, to: price}
  - {from: price, to: done}
"""


@given(hostile_strings)
def test_a_tool_result_reaches_the_calculator_as_data(reply: str) -> None:
    tools = echo_tools()
    wf = Workflow.from_yaml(FROM_A_TOOL, tools=tools)
    rt = memory_runtime(tools=tools)
    room = rt.run(rt.create_room(wf, {"reply": reply}).id)
    assert room.variables["fetched"] == reply
    assert room.status is RoomStatus.FAILED and "total" not in room.variables
    assert failure_of(rt, room) == "SchemaValidationError"


MODEL_ANSWER = """
id: priced_by_a_model
agents:
  estimator: {model: scripted/estimator, system_prompt: Estimate the amount.}
nodes:
  estimate: {type: agent, agent: estimator, prompt: Estimate., output: estimate}
  price:
    type: tool
    tool: calculator
    args: {expression: "round(amount * 1.2, 2)", values: {amount: "{{ vars.estimate }}"}}
    output: total
  done: {type: end}
transitions:
  - {from: estimate, to: price}
  - {from: price, to: done}
"""


def model_runtime(model: ScriptedModel) -> Runtime:
    models = ModelRegistry()
    models.register_provider("scripted", model)
    store = MemoryStore()
    return Runtime(store, store, models=models)


@pytest.mark.parametrize("reply", HOSTILE, ids=repr)
def test_a_model_reply_reaches_the_calculator_as_data(reply: str) -> None:
    rt = model_runtime(ScriptedModel([ScriptedModel.text(reply)]))
    room = rt.run(rt.create_room(Workflow.from_yaml(MODEL_ANSWER)).id)
    assert room.variables["estimate"] == reply
    assert room.status is RoomStatus.FAILED and "total" not in room.variables
    assert failure_of(rt, room) == "SchemaValidationError"


def test_a_model_reply_that_is_a_number_is_priced() -> None:
    wf = Workflow.from_yaml(
        MODEL_ANSWER.replace("output: estimate}", "output: estimate, output_schema: {}}")
    )
    rt = model_runtime(ScriptedModel([ScriptedModel.text("1000")]))
    room = rt.run(rt.create_room(wf).id)
    assert room.status is RoomStatus.COMPLETED
    assert room.variables["total"] == 1200.0


@pytest.mark.parametrize("amount", HOSTILE[:12], ids=repr)
def test_a_model_passing_hostile_values_gets_a_refusal_not_a_result(amount: str) -> None:
    """A model may write the expression (it is the model's own code), but text in `values`
    is refused and the refusal is the tool's answer."""
    model = ScriptedModel(
        [
            ScriptedModel.call(
                "calculator", {"expression": "round(amount * 1.2, 2)", "values": {"amount": amount}}
            ),
            ScriptedModel.text("done"),
        ]
    )
    rt = model_runtime(model)
    wf = Workflow.from_yaml(
        MODEL_ANSWER.replace("system_prompt: Estimate the amount.}", "tools: [calculator]}")
    )
    room = rt.run(rt.create_room(wf).id)
    called = rt.events(room.id, types=[EventType.TOOL_CALLED])[0]  # the agent's call
    assert called.data.get("call_id") == "call_1"
    assert called.error is not None and called.error.type == "SchemaValidationError"
    assert "result" not in called.data
    answer = json.loads(model.requests[1].messages[-1].content or "")
    assert "values.amount" in json.dumps(answer)


# --- validation refuses a template spliced into code -----------------------------------------


def calc_node(expression: str) -> dict[str, Any]:
    return {"type": "tool", "tool": "calculator", "args": {"expression": expression}}


def problems_of(text: str) -> list[str]:
    with pytest.raises(WorkflowValidationError) as caught:
        Workflow.from_yaml(text)
    return [str(p) for p in caught.value.problems]


SPLICED = [
    "round({{ vars.amount }} * 1.2, 2)",
    "{{ vars.a }} + {{ vars.b }}",
    "{{ vars.a }}{{ vars.b }}",
    "1 + {{ vars.a }}",
    "{{ vars.a }} * 2",
    "x{{ vars.a }}",
]


@pytest.mark.parametrize("expression", SPLICED)
def test_a_template_spliced_into_an_expression_is_refused_with_path_and_hint(
    expression: str,
) -> None:
    found = problems_of(
        "id: spliced\nnodes:\n"
        f"  price: {json.dumps(calc_node(expression))}\n"
        "  done: {type: end}\n"
        "transitions:\n  - {from: price, to: done}\n"
    )
    assert len(found) == 1
    assert found[0].startswith(
        "nodes.price.args.expression: tool 'calculator' parses 'expression' as code"
    )
    assert "pass values as data and name them in the code" in found[0]


def test_a_spliced_template_inside_parallel_and_map_is_refused_too() -> None:
    found = problems_of(
        json.dumps(
            {
                "id": "nested",
                "variables": {"xs": [1, 2]},
                "nodes": {
                    "both": {
                        "type": "parallel",
                        "branches": {
                            "a": {**calc_node("{{ vars.xs[0] }} + 1"), "output": "a"},
                            "b": {**calc_node("1 + 1"), "output": "b"},
                        },
                    },
                    "each": {
                        "type": "map",
                        "items": "{{ vars.xs }}",
                        "node": calc_node("{{ item }} * 2"),
                    },
                    "done": {"type": "end"},
                },
                "transitions": [{"from": "both", "to": "each"}, {"from": "each", "to": "done"}],
            }
        )
    )
    assert [p.split(":")[0] for p in found] == [
        "nodes.both.branches.a.args.expression",
        "nodes.each.node.args.expression",
    ]


@pytest.mark.parametrize(
    "expression", ["{{ item }}", "  {{ item }} ", "{{ vars.formulas[index] }}"]
)
def test_a_whole_value_template_is_the_expression_on_purpose(expression: str) -> None:
    wf = Workflow.from_dict(
        {
            "id": "formulas",
            "variables": {"formulas": ["1 + 1", "2 * 3"]},
            "nodes": {
                "each": {
                    "type": "map",
                    "items": "{{ vars.formulas }}",
                    "node": calc_node(expression),
                },
                "done": {"type": "end"},
            },
            "transitions": [{"from": "each", "to": "done"}],
            "initial": "each",
        }
    )
    rt = memory_runtime()
    room = rt.run(rt.create_room(wf).id)
    assert [e.data["result"] for e in rt.events(room.id, types=[EventType.TOOL_CALLED])] == [2, 6]


@pytest.mark.parametrize(
    "expression",
    [
        "{{ 'round(' + vars.amount + ' * 1.2, 2)' }}",
        "{{ str(vars.amount) }}",
        "{{ vars.amount if true else '1' }}",
    ],
)
def test_a_whole_value_template_that_builds_code_is_refused(expression: str) -> None:
    """Found by a hostile trial: string building inside one template spliced the value
    into the code all the same (an amount of "1000, 2) - round(1000" priced at -200.0)."""
    with pytest.raises(WorkflowValidationError, match=r"nodes\.price\.args\.expression"):
        Workflow.from_dict(
            {
                "id": "builds",
                "variables": {"amount": "40"},
                "nodes": {
                    "price": {
                        "type": "tool",
                        "tool": "calculator",
                        "args": {"expression": expression},
                    },
                    "done": {"type": "end"},
                },
                "transitions": [{"from": "price", "to": "done"}],
            }
        )


def test_arguments_a_tool_does_not_declare_may_splice_values() -> None:
    wf = (
        WorkflowBuilder("ok", variables={"x": 3})
        .tool("m", "memory_query", {"query": "order {{ vars.x }}"})
        .end("done")
        .transition("m", "done")
        .build()
    )
    assert wf.nodes["m"].config["args"]["query"] == "order {{ vars.x }}"


# --- the running tool decides too (defence in depth) -----------------------------------------


def query_tool(templating: dict[str, Any], calls: list[str]) -> Tool:
    def run(query: str) -> str:
        calls.append(query)
        return query

    return Tool("query", "Run a query.", _QUERY_SCHEMA, run, templating=templating)


_QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string"}},
    "required": ["query"],
    "additionalProperties": False,
}


def test_a_tool_that_parses_code_at_run_time_refuses_what_validation_let_through() -> None:
    """Validated against a registry whose `query` takes data, run where it takes code."""
    calls: list[str] = []
    lenient, strict = ToolRegistry(), ToolRegistry()
    lenient.register(query_tool({}, calls))
    strict.register(query_tool({"query": "code"}, calls))
    wf = (
        WorkflowBuilder("late", variables={"name": "x' OR '1'='1"})
        .tool(
            "q",
            "query",
            {"query": "name = '{{ vars.name }}'"},
            output="rows",
            retry={"max_attempts": 3},
        )
        .end("done")
        .end("refused", status="failed", reason="refused")
        .transition("q", "done")
        .transition("q", "refused", on="error")
        .build(tools=lenient)
    )
    rt = memory_runtime(tools=strict)
    room = rt.run(rt.create_room(wf).id)
    assert calls == []  # the tool never saw the spliced text
    assert room.current_node == "refused"
    failed = rt.events(room.id, types=[EventType.NODE_FAILED])
    assert len(failed) == 1  # not retried: the same template would be refused again
    assert failed[0].error is not None and failed[0].error.type == "UnsafeTemplateError"
    assert failed[0].error.message.startswith("nodes.q.args.query: tool 'query' parses 'query'")
    # the same workflow on the lenient registry calls the tool with the rendered text
    rt2 = memory_runtime(tools=lenient)
    assert rt2.run(rt2.create_room(wf).id).variables["rows"] == "name = 'x' OR '1'='1'"


def test_unsafe_template_error_names_path_tool_and_fix() -> None:
    exc = UnsafeTemplateError("nodes.q.args.query", "query", "query")
    assert exc.problem.path == "nodes.q.args.query"
    assert "values" in exc.problem.hint
    assert str(exc).startswith("nodes.q.args.query: tool 'query' parses 'query' as code")


# --- declaring arguments ---------------------------------------------------------------------


def test_templating_names_known_parameters_and_kinds() -> None:
    with pytest.raises(ValueError, match="templating names 'sql', which is not one of"):
        query_tool({"sql": "code"}, [])
    with pytest.raises(ValueError, match="templating\\['query'\\] is 'eval'"):
        query_tool({"query": "eval"}, [])


def test_class_and_decorated_tools_declare_templating() -> None:
    class Search(BaseTool):
        name = "search"
        parameters = _QUERY_SCHEMA
        templating: ClassVar[Mapping[str, ArgKind]] = {"query": "code"}

        async def run(self, args: Any, ctx: ToolContext) -> Any:
            return []

    registry = ToolRegistry()
    assert registry.register(Search()).templating == {"query": "code"}

    @tool(registry=registry, templating={"q": "code"})
    def lookup(q: str) -> str:
        """Look up."""
        return q

    assert registry.get("lookup").templating == {"q": "code"}
    found = problems_of_with(registry, "lookup", {"q": "id = {{ vars.id }}"})
    assert found == ["nodes.t.args.q"]
    found = problems_of_with(registry, "search", {"query": "{{ vars.id }} or 1"})
    assert found == ["nodes.t.args.query"]


def test_code_nested_in_a_list_or_mapping_argument_is_refused_at_its_path() -> None:
    schema = {"type": "object", "properties": {"queries": {}}, "additionalProperties": False}
    registry = ToolRegistry()
    registry.register(Tool("batch", "Run queries.", schema, list, templating={"queries": "code"}))
    spliced = ["{{ vars.a }}", "id = {{ vars.id }}"]
    assert problems_of_with(registry, "batch", {"queries": spliced}) == ["nodes.t.args.queries[1]"]
    nested = {"first": "{{ vars.a }}", "rest": ["x", {"q": "{{ vars.a }} or 1"}]}
    assert problems_of_with(registry, "batch", {"queries": nested}) == [
        "nodes.t.args.queries.rest[1].q"
    ]


def problems_of_with(tools: ToolRegistry, name: str, args: dict[str, Any]) -> list[str]:
    builder = WorkflowBuilder("declared").tool("t", name, args).end("done").transition("t", "done")
    with pytest.raises(WorkflowValidationError) as caught:
        builder.build(tools=tools)
    return [p.path for p in caught.value.problems]


# --- URLs -------------------------------------------------------------------------------------


def url_tools(seen: list[str]) -> ToolRegistry:
    def fetch(url: str) -> str:
        seen.append(url)
        return url

    schema = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
    registry = ToolRegistry()
    registry.register(Tool("fetch", "Fetch a URL.", schema, fetch, templating={"url": "url"}))
    return registry


def fetch_workflow(url: str, tools: ToolRegistry) -> Workflow:
    return (
        WorkflowBuilder("fetch_url", variables={"id": "A-1", "q": "x"})
        .tool("get", "fetch", {"url": url}, output="got")
        .end("done")
        .transition("get", "done")
        .build(tools=tools)
    )


@given(hostile_strings)
def test_a_value_spliced_into_a_url_stays_one_path_segment(order_id: str) -> None:
    seen: list[str] = []
    tools = url_tools(seen)
    wf = fetch_workflow("https://api.example.com/orders/{{ vars.id }}?view=full", tools)
    rt = memory_runtime(tools=tools)
    rt.run(rt.create_room(wf, {"id": order_id}).id)
    (url,) = seen
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "api.example.com")
    assert parts.path == "/orders/" + quote(order_id, safe="")
    assert parts.path.count("/") == 2
    assert (parts.query, parts.fragment) == ("view=full", "")


@given(hostile_strings)
def test_a_base_that_begins_the_url_is_kept_and_the_rest_encoded(order_id: str) -> None:
    seen: list[str] = []
    tools = url_tools(seen)
    wf = fetch_workflow("{{ vars.q }}/orders/{{ vars.id }}", tools)
    rt = memory_runtime(tools=tools)
    rt.run(rt.create_room(wf, {"q": "https://api.example.com/v2", "id": order_id}).id)
    assert seen == ["https://api.example.com/v2/orders/" + quote(order_id, safe="")]


def test_a_whole_value_url_template_is_used_as_it_is() -> None:
    seen: list[str] = []
    tools = url_tools(seen)
    wf = fetch_workflow("{{ vars.id }}", tools)
    rt = memory_runtime(tools=tools)
    rt.run(rt.create_room(wf, {"id": "https://api.example.com/a/b?c=d"}).id)
    assert seen == ["https://api.example.com/a/b?c=d"]


def test_non_text_values_in_a_url_are_encoded_as_their_json() -> None:
    seen: list[str] = []
    tools = url_tools(seen)
    wf = fetch_workflow("https://h.example/{{ vars.id }}/{{ vars.q }}", tools)
    rt = memory_runtime(tools=tools)
    rt.run(rt.create_room(wf, {"id": 42, "q": ["a", "b/c"]}).id)
    assert seen == ["https://h.example/42/" + quote('["a", "b/c"]', safe="")]


def test_a_lone_surrogate_in_a_url_value_is_a_typed_failure() -> None:
    seen: list[str] = []
    tools = url_tools(seen)
    wf = fetch_workflow("https://h.example/{{ vars.id }}", tools)
    rt = memory_runtime(tools=tools)
    with pytest.raises(SchemaValidationError, match="lone surrogate"):
        rt.create_room(wf, {"id": "\ud800"})  # refused where it enters: no room, no request
    assert seen == [] and rt.list_rooms() == []


def test_the_http_tool_encodes_spliced_values_and_refuses_header_line_breaks() -> None:
    """The real `http` tool; a stand-in DNS answer is refused, so nothing is sent."""
    policy = HttpPolicy(allow_hosts=["api.example.com"])
    tools = builtin_tools.copy()
    tools.register(http_tool(policy, resolver=lambda host, port: ["10.0.0.7"]), replace=True)
    assert tools.get("http").templating == {"url": "url"}
    wf = Workflow.from_yaml(
        """
id: fetch_order
variables: {id: A-1, token: t}
nodes:
  get:
    type: tool
    tool: http
    args:
      url: "https://api.example.com/orders/{{ vars.id }}"
      headers: {Authorization: "Bearer {{ vars.token }}"}
  done: {type: end}
transitions:
  - {from: get, to: done}
  - {from: get, to: done, on: error}
""",
        tools=tools,
    )
    rt = memory_runtime(tools=tools)
    room = rt.run(rt.create_room(wf, {"id": "../admin?x=1#y"}).id)
    (called,) = rt.events(room.id, types=[EventType.TOOL_CALLED])
    assert called.data["args"]["url"] == "https://api.example.com/orders/..%2Fadmin%3Fx%3D1%23y"
    assert called.error is not None and "private address" in called.error.message

    room = rt.run(rt.create_room(wf, {"token": "t\r\nX-Admin: 1"}).id)
    (called,) = rt.events(room.id, types=[EventType.TOOL_CALLED])
    assert called.error is not None
    assert "header 'Authorization' contains a line break" in called.error.message


@pytest.mark.parametrize("order_id", HOSTILE, ids=repr)
def test_an_id_a_model_replied_stays_one_path_segment(order_id: str) -> None:
    """As in examples/support_triage.yaml: a base from the variables, an id from a model."""
    seen: list[str] = []
    tools = url_tools(seen)
    models = ModelRegistry()
    models.register_provider("scripted", ScriptedModel([json.dumps({"order_id": order_id})]))
    store = MemoryStore()
    rt = Runtime(store, store, models=models, tools=tools)
    wf = Workflow.from_yaml(
        """
id: triage_fetch
variables: {orders_api: "https://orders.example.com"}
agents:
  triager: {model: scripted/triager, system_prompt: Find the order id.}
nodes:
  triage:
    type: agent
    agent: triager
    prompt: Which order?
    output_schema: {type: object, required: [order_id]}
    output: triage
  get:
    type: tool
    tool: fetch
    args: {url: "{{ vars.orders_api }}/orders/{{ vars.triage.order_id }}"}
  done: {type: end}
transitions:
  - {from: triage, to: get}
  - {from: get, to: done}
""",
        tools=tools,
    )
    rt.run(rt.create_room(wf).id)
    assert seen == ["https://orders.example.com/orders/" + quote(order_id, safe="")]
