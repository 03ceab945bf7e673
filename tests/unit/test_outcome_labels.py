"""Transitions ``on:`` a label the node type can never produce are refused when a workflow
is built, with a "did you mean"; custom executors declare their own labels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrooms import (
    NodeContext,
    NodeExecutor,
    Outcome,
    Workflow,
    WorkflowValidationError,
    open_runtime,
    register_node_type,
)
from openrooms.registries import Registries, validating_with
from openrooms.workflow import Node


class Review(NodeExecutor):
    labels = frozenset({"ok", "approved", "rejected"})

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(label="approved" if ctx.variables["amount"] < 100 else "rejected")


class OldStyle(NodeExecutor):
    """Written before labels were declared: any label is allowed."""

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(label="whatever")


class Switch(NodeExecutor):
    """Its labels come from its config (and ``ok``, when no case applies)."""

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(label=ctx.node.config["cases"][0])

    def labels_for(self, node: Node) -> frozenset[str] | None:
        return frozenset({"ok", *node.config.get("cases", ())})


@pytest.fixture(autouse=True)
def registries() -> Iterator[Registries]:
    """This test's registries with the module's node types; workflows are checked against them."""
    regs = Registries()
    register_node_type("test_labels_review", Review(), registry=regs.node_types)
    regs.node_types.register("test_labels_old", OldStyle())
    regs.node_types.register("test_labels_switch", Switch())
    with validating_with(regs):
        yield regs


def workflow(node: dict[str, Any], *labels: str) -> dict[str, Any]:
    return {
        "id": "labels",
        "variables": {"amount": 5},
        "nodes": {"a": node, "c": {"type": "end"}},
        "transitions": [{"from": "a", "to": "c", "on": label} for label in labels]
        + [{"from": "a", "to": "c"}],
    }


TOOL = {"type": "tool", "tool": "calculator", "args": {"expression": "1 + 1"}}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(WorkflowValidationError) as info:
        Workflow.from_dict(data)
    return [str(p) for p in info.value.problems]


def test_a_misspelt_outcome_on_a_tool_node_is_refused_with_a_hint() -> None:
    """It used to validate, then fail at run time: no transition matches outcome 'error'."""
    (problem,) = problems(workflow(TOOL, "eror"))
    assert problem.startswith("transitions[0].on: a 'tool' node never ends with outcome 'eror'")
    assert "did you mean 'error'?" in problem


@pytest.mark.parametrize(
    ("node", "label"),
    [
        (TOOL, "approved"),
        ({"type": "set", "assign": {"x": 1}}, "done"),
        ({"type": "decision"}, "yes"),
        ({"type": "wait"}, "approved"),
        ({"type": "test_labels_review"}, "maybe"),
    ],
)
def test_a_label_the_node_type_never_produces_is_refused(node: dict[str, Any], label: str) -> None:
    (problem,) = problems(workflow(node, label))
    assert f"never ends with outcome {label!r}" in problem
    assert "ok" in problem  # the hint lists what the node can end with


@pytest.mark.parametrize(
    ("node", "labels"),
    [
        (TOOL, ("error", "timeout")),
        ({"type": "wait", "timeout_s": 5}, ("timeout",)),
        ({"type": "wait", "timeout_s": 5}, ("error",)),  # a wait timeout falls back to error
        ({"type": "test_labels_review"}, ("approved", "rejected", "error")),
        ({"type": "test_labels_old"}, ("anything", "at_all")),
        ({"type": "test_labels_switch", "cases": ["small", "big"]}, ("small", "big")),
    ],
)
def test_labels_the_node_type_can_produce_are_accepted(
    node: dict[str, Any], labels: tuple[str, ...]
) -> None:
    wf = Workflow.from_dict(workflow(node, *labels))
    assert set(wf.plan.nodes["a"].routes) == {*labels, "ok"}


def test_a_label_declared_from_config_is_checked_against_that_config() -> None:
    (problem,) = problems(
        workflow({"type": "test_labels_switch", "cases": ["small", "big"]}, "smal")
    )
    assert "did you mean 'small'?" in problem


def test_a_declared_custom_label_routes_a_room(tmp_path: Path, registries: Registries) -> None:
    data = workflow({"type": "test_labels_review"}, "approved")
    data["nodes"]["no"] = {"type": "end", "status": "failed", "reason": "rejected"}
    data["transitions"] = [
        {"from": "a", "to": "c", "on": "approved"},
        {"from": "a", "to": "no", "on": "rejected"},
        {"from": "a", "to": "c"},
    ]
    wf = Workflow.from_dict(data)
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}", registries=registries) as rt:
        small = rt.run(rt.create_room(wf, {"amount": 5}).room_id)
        big = rt.run(rt.create_room(wf, {"amount": 500}).room_id)
    assert (small.status.value, small.current_node) == ("completed", "c")
    assert (big.status.value, big.current_node) == ("failed", "no")
