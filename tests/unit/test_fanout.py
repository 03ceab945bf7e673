"""parallel, map and subworkflow nodes: joins, failures, and no re-run of finished work."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrooms import (
    Event,
    EventType,
    RoomStatus,
    Runtime,
    ToolContext,
    Workflow,
    WorkflowValidationError,
    default_tools,
    serde,
    tool,
)
from openrooms.registries import Registries, validating_with, validation_registries
from tests.conftest import BACKENDS, make_store

calls: Counter[str] = Counter()


async def fanout_echo(value: Any, label: str = "") -> Any:
    """Return the value, counting calls per label."""
    calls[label or str(value)] += 1
    return value


def fanout_fail(message: str) -> str:
    """Always fails."""
    raise ValueError(message)


@pytest.fixture(autouse=True)
def registries() -> Iterator[Registries]:
    """This test's registries, with the module's tools; workflows are checked against them."""
    regs = Registries()
    tool(name="fanout_echo", registry=regs.tools)(fanout_echo)
    tool(name="fanout_fail", registry=regs.tools)(fanout_fail)
    with validating_with(regs):
        yield regs


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path, registries: Registries) -> Iterator[Runtime]:
    store = make_store(request.param, tmp_path)
    runtime = Runtime(store, store, registries=registries)
    calls.clear()
    yield runtime
    runtime.close()


def wf_from(text: str) -> Any:
    return serde.workflow_from_text(text, source="test.yaml")


PARALLEL = """
id: fan
variables: {topic: owls}
nodes:
  both:
    type: parallel
    branches:
      left:
        {type: tool, tool: fanout_echo, args: {value: "{{ vars.topic }}-L", label: left}, output: l}
      right: {type: set, assign: {r: "{{ vars.topic }}-R"}}
    output: joined
  done: {type: end}
transitions:
  - {from: both, to: done}
"""


def test_parallel_branches_join_into_their_variables(rt: Runtime) -> None:
    state = rt.run(rt.create_room(wf_from(PARALLEL)).id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["l"] == "owls-L"
    assert state.variables["r"] == "owls-R"  # a set branch's assignments land too
    assert set(state.variables["joined"]) == {"left", "right"}
    done = rt.events(state.id, types=[EventType.BRANCH_COMPLETED])
    assert sorted(e.data["branch"] for e in done) == ["left", "right"]


def test_a_failing_branch_routes_the_node_on_error_after_the_others_finish(rt: Runtime) -> None:
    wf = wf_from(
        """
id: fan-fail
nodes:
  both:
    type: parallel
    branches:
      good: {type: tool, tool: fanout_echo, args: {value: 1, label: good}, output: g}
      bad: {type: tool, tool: fanout_fail, args: {message: nope}, output: b}
  recovered: {type: set, assign: {handled: true}}
  done: {type: end}
transitions:
  - {from: both, to: done}
  - {from: both, to: recovered, on: error, when: "'bad' in error.message"}
  - {from: recovered, to: done}
"""
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables == {"handled": True}
    assert calls["good"] == 1
    failed = rt.events(state.id, types=[EventType.NODE_FAILED])
    assert "nope" in failed[0].error.message  # type: ignore[union-attr]


class Crash(BaseException):
    """Stands in for the process dying mid-node."""


def test_a_branch_finished_before_a_crash_is_not_run_again(rt: Runtime) -> None:
    left_done = asyncio.Event()
    crashes: list[int] = []

    @tool(name="fanout_crash_once", registry=rt.tools)
    async def crash_once(value: int) -> int:
        await left_done.wait()
        if not crashes:
            crashes.append(1)
            raise Crash
        return value

    def watch(e: Event) -> None:
        if e.type is EventType.BRANCH_COMPLETED and e.data["branch"] == "left":
            left_done.set()

    wf = wf_from(
        """
id: fan-crash
nodes:
  both:
    type: parallel
    branches:
      left: {type: tool, tool: fanout_echo, args: {value: 1, label: left}, output: l}
      right: {type: tool, tool: fanout_crash_once, args: {value: 2}, output: r}
  done: {type: end}
transitions:
  - {from: both, to: done}
"""
    )
    room = rt.create_room(wf)
    with pytest.raises(Crash):
        rt.run(room.id, on_event=watch)
    assert rt.get_room(room.id).status is RoomStatus.RUNNING
    left_done.set()  # the resumed run must not wait for a left branch that will not run
    state = rt.resume(room.id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables == {"l": 1, "r": 2}
    assert calls["left"] == 1
    assert EventType.ROOM_RESUMED in [e.type for e in rt.events(room.id)]


MAP = """
id: mapper
variables: {xs: [3, 1, 2]}
nodes:
  each:
    type: map
    items: "{{ vars.xs }}"
    concurrency: 2
    node:
      type: tool
      tool: fanout_echo
      args: {value: "{{ item * 10 + index }}", label: "{{ str(index) }}"}
    output: ys
  done: {type: end}
transitions:
  - {from: each, to: done}
"""


def test_map_runs_the_node_per_item_and_keeps_item_order(rt: Runtime) -> None:
    state = rt.run(rt.create_room(wf_from(MAP)).id)
    assert state.status is RoomStatus.COMPLETED
    xs = state.variables["xs"]
    assert state.variables["ys"] == [x * 10 + i for i, x in enumerate(xs)]
    assert sorted(calls) == ["0", "1", "2"]


def test_every_branch_and_item_gets_its_own_idempotency_key(rt: Runtime) -> None:
    keys: list[str] = []

    @tool(name="fanout_key", registry=rt.tools)
    def key(n: int, ctx: ToolContext) -> int:
        keys.append(ctx.idempotency_key)
        return n

    wf = wf_from(
        """
id: fan-keys
nodes:
  each:
    type: map
    items: [1, 2]
    node: {type: tool, tool: fanout_key, args: {n: "{{ item }}"}}
  both:
    type: parallel
    branches:
      a: {type: tool, tool: fanout_key, args: {n: 1}, output: a}
      b: {type: tool, tool: fanout_key, args: {n: 2}, output: b}
  done: {type: end}
transitions:
  - {from: each, to: both}
  - {from: both, to: done}
"""
    )
    room = rt.create_room(wf)
    rt.run(room.id)
    assert sorted(keys) == [
        f"{room.id}:both:1:1/a",
        f"{room.id}:both:1:1/b",
        f"{room.id}:each:1:1/items[0]",
        f"{room.id}:each:1:1/items[1]",
    ]


def test_map_over_something_that_is_not_a_list_fails_with_the_path(rt: Runtime) -> None:
    state = rt.run(rt.create_room(wf_from(MAP), {"xs": 5}).id)
    assert state.status is RoomStatus.FAILED
    failed = rt.events(state.id, types=[EventType.NODE_FAILED])
    assert "nodes.each.items" in failed[0].error.message  # type: ignore[union-attr]


CHILD = """
id: child
variables: {n: 0}
nodes:
  double: {type: set, assign: {n: "{{ vars.n * 2 }}"}}
  done: {type: end}
transitions:
  - {from: double, to: done}
"""

PARENT = """
id: parent
variables: {amount: 21}
nodes:
  call_child:
    type: subworkflow
    workflow: child
    input: {n: "{{ vars.amount }}"}
    output: child_vars
  done: {type: end}
transitions:
  - {from: call_child, to: done}
"""


def test_a_subworkflow_runs_as_a_child_room_with_its_own_log(rt: Runtime) -> None:
    rt.register_workflow(wf_from(CHILD))
    parent = rt.create_room(wf_from(PARENT))
    state = rt.run(parent.id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["child_vars"] == {"n": state.variables["amount"] * 2}
    child_id = f"{parent.id}.call_child.1.1"
    child = rt.get_room(child_id)
    assert child.status is RoomStatus.COMPLETED
    assert child.name == f"{parent.id}/call_child"
    assert [e.type for e in rt.events(child_id)][-1] is EventType.ROOM_COMPLETED


def test_map_over_a_subworkflow_gives_each_item_its_own_child(rt: Runtime) -> None:
    rt.register_workflow(wf_from(CHILD))
    wf = wf_from(
        """
id: map-children
variables: {xs: [1, 2, 3]}
nodes:
  each:
    type: map
    items: "{{ vars.xs }}"
    node: {type: subworkflow, workflow: child, input: {n: "{{ item }}"}}
    output: results
  done: {type: end}
transitions:
  - {from: each, to: done}
"""
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.COMPLETED
    assert [r["n"] for r in state.variables["results"]] == [2 * x for x in state.variables["xs"]]
    children = [r for r in rt.list_rooms() if r.workflow_id == "child"]
    assert len(children) == 3


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("both: {type: parallel, branches: {}}", "nodes.both.branches"),
        (
            "both: {type: parallel, branches: {a: {type: tool, tool: calculator}}}",
            "nodes.both.branches.a.output",
        ),
        (
            "both: {type: parallel, branches: {a: {type: wait, output: x}}}",
            "nodes.both.branches.a.type",
        ),
        (
            "both: {type: parallel, branches: {a: {type: tool, tool: nosuch, output: x}}}",
            "nodes.both.branches.a.tool",
        ),
        ("both: {type: map, items: [1], node: {type: set}}", "nodes.both.node.assign"),
        (
            "both: {type: map, items: '{{ vars.x +', node: {type: set, assign: {a: 1}}}",
            "nodes.both.items",
        ),
        (
            "both: {type: map, items: [1], concurrency: 0, node: {type: set, assign: {a: 1}}}",
            "nodes.both.concurrency",
        ),
        ("both: {type: subworkflow}", "nodes.both.workflow"),
        (
            "both: {type: map, items: [1], node: {type: set, assign: {a: 1}, output: x}}",
            "nodes.both.node.output",
        ),
        (  # a branch's output is a room variable: '_' names are reserved, as everywhere
            "both: {type: parallel, branches: {a: {type: tool, tool: calculator, output: _x}}}",
            "nodes.both.branches.a.output",
        ),
    ],
)
def test_bad_fanout_nodes_are_refused_with_their_path(text: str, path: str) -> None:
    doc = (
        f"id: bad\nnodes:\n  {text}\n  done: {{type: end}}\n"
        "transitions:\n  - {from: both, to: done}\n"
    )
    with pytest.raises(WorkflowValidationError) as info:
        wf_from(doc)
    assert path in [p.path for p in info.value.problems]


def test_fanout_tools_are_registered_for_validation(registries: Registries) -> None:
    assert "fanout_echo" in validation_registries().tools
    assert "fanout_echo" not in default_tools  # the test's own registries, not the defaults


@pytest.mark.parametrize("name", ["{{ vars.w }}", "Other", "a b"])
def test_a_subworkflow_must_name_a_workflow_id(name: str) -> None:
    """Found by a hostile trial: a template here validated, then failed at run time."""
    with pytest.raises(
        WorkflowValidationError, match=r"nodes\.call\.workflow: .* is not a workflow id"
    ):
        Workflow.from_dict(
            {
                "id": "caller",
                "nodes": {
                    "call": {"type": "subworkflow", "workflow": name},
                    "done": {"type": "end"},
                },
                "transitions": [{"from": "call", "to": "done"}],
            }
        )


UNSTORABLE_REPLY = """
id: fan_unstorable
agents: {a: {model: scripted/x}}
nodes:
  both:
    type: parallel
    branches:
      bad: {type: agent, agent: a, prompt: "first", output: bad}
      good: {type: agent, agent: a, prompt: "second", output: good}
      third: {type: tool, tool: fanout_echo, args: {value: 3}, output: third}
  done: {type: end}
  failed: {type: end, status: failed, reason: a branch failed}
transitions:
  - {from: both, to: done}
  - {from: both, to: failed, on: error}
"""


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_branch_whose_calls_cannot_be_stored_fails_the_node_after_the_others_end(
    kind: str, tmp_path: Path, registries: Registries
) -> None:
    """A model's reply that no store can keep (a lone surrogate) fails its branch, not the
    node's run: the other branches end and commit first, and the room takes ``on: error``
    instead of being left running (with a store called from the IO thread the others went
    on committing after the node had failed, and the room's last commit was refused)."""
    from openrooms.llm import ModelRegistry
    from openrooms.testing import ScriptedModel

    store = make_store(kind, tmp_path)
    models = ModelRegistry(fallback=ScriptedModel(["\ud800", "fine"]))
    runtime = Runtime(store, store, registries=registries, models=models)
    try:
        room = runtime.create_room(wf_from(UNSTORABLE_REPLY))
        state = runtime.run(room.room_id)
        assert state.status is RoomStatus.FAILED, state
        assert state.current_node == "failed"
        log = runtime.events(room.room_id)
        ended = {
            e.data["branch"]: e.data["ok"] for e in log if e.type is EventType.BRANCH_COMPLETED
        }
        assert ended == {"bad": False, "good": True, "third": True}
        failed = next(e for e in log if e.type is EventType.BRANCH_COMPLETED and not e.data["ok"])
        assert failed.error is not None and failed.error.type == "UnstorableValueError"
        # every branch's commit came before the node's end: the log folds to the state
        assert runtime.replay(room.room_id) == state
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
    finally:
        runtime.close()
