"""Workflow definitions: builder and file agree, validation reports every problem with a path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrooms import (
    RetryPolicy,
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    load_workflow,
)

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))

YAML = """
id: triage
version: 2
variables: {label: none}
nodes:
  classify:
    type: set
    assign: {label: refund}
    retry: {max_attempts: 2, backoff_s: 0.5}
    timeout_s: 3
  route:
    type: decision
  refund:
    type: tool
    tool: calculator
    args: {expression: "1 + 1"}
    output: total
  done:
    type: end
transitions:
  - {from: classify, to: route}
  - {from: route, to: refund, when: "vars.label == 'refund'"}
  - {from: route, to: done}
  - {from: refund, to: done}
  - {from: refund, to: done, on: error}
"""


def built() -> Workflow:
    return (
        WorkflowBuilder("triage", version=2, variables={"label": "none"})
        .set(
            "classify",
            {"label": "refund"},
            retry=RetryPolicy(max_attempts=2, backoff_s=0.5),
            timeout_s=3,
        )
        .decision("route")
        .tool("refund", "calculator", {"expression": "1 + 1"}, output="total")
        .end("done")
        .transition("classify", "route")
        .transition("route", "refund", when="vars.label == 'refund'")
        .transition("route", "done")
        .transition("refund", "done")
        .transition("refund", "done", on="error")
        .build()
    )


def test_builder_and_yaml_produce_equal_workflows() -> None:
    assert Workflow.from_yaml(YAML) == built()


def test_workflow_round_trips_through_the_file_format_and_json() -> None:
    wf = built()
    assert Workflow.from_dict(wf.to_dict()) == wf
    assert Workflow.from_yaml(json.dumps(wf.to_dict())) == wf


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads_and_round_trips(path: Path) -> None:
    wf = load_workflow(path)
    assert Workflow.from_dict(wf.to_dict()) == wf


def problems_of(text: str) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        Workflow.from_yaml(text)
    return [str(p) for p in info.value.problems]


def test_unknown_target_is_reported_with_its_path_and_a_suggestion() -> None:
    found = problems_of(YAML.replace("{from: route, to: refund,", "{from: route, to: refnd,"))
    assert any(
        p.startswith("transitions[1].to: unknown node 'refnd'") and "did you mean 'refund'" in p
        for p in found
    )


def test_every_problem_is_reported_at_once() -> None:
    text = """
id: Bad Id
nodes:
  a: {type: set, assign: {x: 1}}
  b: {type: teleport}
  c: {type: decision}
  lonely: {type: end}
  d: {type: tool, tool: calculater}
transitions:
  - {from: a, to: c}
  - {from: a, to: c}
  - {from: c, to: zz, when: "vars.x >"}
  - {from: b, to: d}
"""
    found = "\n".join(problems_of(text))
    assert "id: 'Bad Id' is not a valid workflow id" in found
    assert "nodes.b.type: unknown node type 'teleport'" in found
    assert "nodes.d.tool: unknown tool 'calculater'" in found and "'calculator'" in found
    assert "transitions[1]: node 'a' already has a default transition on 'ok'" in found
    assert "transitions[2].to: unknown node 'zz'" in found
    assert "transitions[2].when:" in found
    assert "decision 'c' has no default transition" in found or "node 'c' has no way out" in found
    assert "nodes.lonely: node 'lonely' is unreachable" in found


def test_unknown_keys_are_reported_with_a_hint() -> None:
    found = problems_of("id: w\nnodes:\n  a: {type: end}\ntransitons: []\n")
    assert any(p.startswith("transitons: unknown key") and "'transitions'" in p for p in found)


def test_dead_end_and_missing_decision_default_are_refused() -> None:
    with pytest.raises(WorkflowValidationError, match="no way out"):
        WorkflowBuilder("w").set("a", {"x": 1}).build()
    with pytest.raises(WorkflowValidationError, match="no default transition"):
        (WorkflowBuilder("w").decision("d").end("e").transition("d", "e", when="vars.x").build())


def test_end_nodes_cannot_have_transitions() -> None:
    with pytest.raises(WorkflowValidationError, match="'end' node"):
        WorkflowBuilder("w").end("e").set("a", {"x": 1}).transition("e", "a").transition(
            "a", "e"
        ).build()


def test_a_wait_that_can_time_out_needs_a_timeout_route() -> None:
    with pytest.raises(WorkflowValidationError, match="no transition on 'timeout'"):
        WorkflowBuilder("w").wait("ask", timeout_s=5).end("e").transition("ask", "e").build()


def test_bad_retry_and_limits_are_refused() -> None:
    text = YAML.replace(
        "retry: {max_attempts: 2, backoff_s: 0.5}",
        "retry: {max_attempts: 0, backoff_s: -1, jitter: 3, bogus: 1}",
    )
    found = "\n".join(problems_of(text))
    assert "nodes.classify.retry.max_attempts" in found
    assert "nodes.classify.retry.backoff_s" in found
    assert "nodes.classify.retry.jitter" in found
    assert "nodes.classify.retry.bogus: unknown key" in found
    with pytest.raises(WorkflowValidationError, match="max_steps"):
        WorkflowBuilder("w", max_steps=0).end("e").build()


def test_a_bare_yaml_on_key_is_read_as_the_outcome_label() -> None:
    """YAML 1.1 reads an unquoted `on:` key as the boolean true; files must still work."""
    wf = Workflow.from_yaml(YAML)
    assert [t.on for t in wf.transitions][-1] == "error"


def test_text_that_is_not_yaml_is_a_validation_error_with_a_location() -> None:
    found = problems_of("id: w\nnodes: [\n")
    assert found and "line" in found[0]


def test_a_guard_with_an_unknown_name_is_refused_with_a_hint() -> None:
    with pytest.raises(WorkflowValidationError, match="vars"):
        (
            WorkflowBuilder("w")
            .decision("d")
            .end("e")
            .transition("d", "e", when="var.x == 1")
            .transition("d", "e")
            .build()
        )


def test_too_many_nodes_is_refused() -> None:
    b = WorkflowBuilder("big")
    for i in range(1001):
        b.set(f"n{i}", {"x": i})
    with pytest.raises(WorkflowValidationError, match="limit of 1000"):
        b.build()


def test_a_message_lists_at_most_fifty_problems_and_counts_the_rest() -> None:
    """89,142 nodes once printed 89,143 lines; the error keeps every problem for code."""
    nodes = {f"n{i}": {"type": "end"} for i in range(120)}
    with pytest.raises(WorkflowValidationError) as info:
        Workflow.from_dict({"id": "many", "nodes": nodes})
    text = str(info.value)
    assert len(info.value.problems) == 119  # every node after the first is unreachable
    assert len(text.splitlines()) == 1 + 50 + 1
    assert text.endswith("... and 69 more")
