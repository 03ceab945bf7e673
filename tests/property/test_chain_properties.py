"""Chains of pure nodes (``engine.advance``) against the same nodes decided one by one."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from openrooms import engine
from openrooms.errors import UnstorableValueError
from openrooms.events import ErrorInfo, Event
from openrooms.nodes import NodeContext, Outcome
from openrooms.room import RoomState
from openrooms.runner import room_scope
from openrooms.storable import check_events
from openrooms.tools import default_tools
from openrooms.types import RoomId
from openrooms.workflow import Workflow

# what a pure node's templates and guards may do: work, fail, or make an unstorable value
ASSIGNS = [
    {"i": "{{ vars.i + 1 }}"},
    {"i": "{{ vars.i + 1 }}", "j": "{{ vars.i * 2 }}", "s": "x{{ vars.i }}"},
    {"j": "{{ vars.nope }}"},  # an evaluation error: the node fails, not retryable
    {"i": "{{ vars.i + 1 }}", "j": "{{ vars.nope }}"},  # fails after a first assignment
    {"f": "{{ (vars.i + 1) * 1e308 * 10 }}"},  # overflows: an error outcome
    {"t": "é{{ vars.i }}", "l": "{{ [vars.i, {'k': vars.i}] }}"},  # not plain: checked in full
    {"i": "{{ vars.i - 0.5 }}", "b": "{{ vars.i >= 2 }}", "i2": "{{ vars.i * 2 }}"},
]
GUARDS = [None, "vars.i > 3", "vars.i % 2 == 0", "vars.nope > 1", "room.steps > 4"]


@st.composite
def pure_workflows(draw: st.DrawFn) -> Workflow:
    """Workflows of set and decision nodes (and the odd tool, wait and end between them),
    with guards, retries, a step limit and sometimes a budget that is already spent."""
    n = draw(st.integers(min_value=1, max_value=6))
    names = [f"n{i}" for i in range(n)]
    nodes: dict[str, dict[str, Any]] = {}
    for name in names:
        kind = draw(st.sampled_from(["set", "set", "decision", "tool", "wait"]))
        node: dict[str, Any] = {"type": kind}
        if kind == "set":
            node["assign"] = draw(st.sampled_from(ASSIGNS))
            if draw(st.booleans()):
                node["retry"] = {"max_attempts": 2, "backoff_s": 0.0}
        elif kind == "tool":
            node.update(tool="calculator", args={"expression": "1"}, output="r")
        elif kind == "wait":
            node["prompt"] = "go {{ vars.i }}?"
        nodes[name] = node
    nodes["done"] = {"type": "end", "reason": "i={{ vars.i }}"}
    nodes["bad"] = {"type": "end", "status": "failed"}
    transitions: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        for _ in range(draw(st.integers(0, 2))):
            when = draw(st.sampled_from(GUARDS))
            if when is not None:
                target = draw(st.sampled_from([*names, "done"]))
                transitions.append({"from": name, "to": target, "when": when})
        transitions.append({"from": name, "to": "bad", "on": "error"})
        if i == n - 1:  # "done" stays reachable, however the default below loops
            transitions.append({"from": name, "to": "done", "when": "vars.i > 1000"})
        nxt = names[i + 1] if i + 1 < n else draw(st.sampled_from(["done", names[0]]))
        transitions.append({"from": name, "to": nxt})
    definition: dict[str, Any] = {
        "id": "chain",
        "variables": {"i": 0},
        "max_steps": draw(st.integers(3, 40)),
        "nodes": nodes,
        "transitions": transitions,
    }
    if draw(st.integers(0, 4)) == 0:
        definition["budget"] = {"max_wall_s": 0.5}
    return Workflow.from_dict(definition)


def started(wf: Workflow) -> RoomState:
    state = engine.create_room(wf, RoomId("room"), now=1_000).state
    return engine.start(wf, state, now=1_000).state


def one_by_one(wf: Workflow, state: RoomState, limit: int, now: int) -> engine.Step:
    """What the runner did before chains: each node's executor run (``execute``, as an
    IO node is), then the outcome decided alone, an unstorable one failing the node."""
    events: list[Event] = []
    loop = asyncio.new_event_loop()
    try:
        for _ in range(limit):
            if not engine.can_advance(wf, state):
                break
            np = wf.plan.nodes[state.current_node or ""]
            ctx = NodeContext(state, np.node, np.prepared, default_tools, room_scope(state))
            try:
                outcome = loop.run_until_complete(np.executor.execute(ctx))
            except Exception as exc:
                outcome = Outcome.from_exception(exc)
            step = engine.decide(wf, state, outcome, now=now)
            try:
                check_events(step.events)
            except UnstorableValueError as exc:
                info = ErrorInfo.from_exception(exc, with_traceback=False)
                step = engine.decide(wf, state, Outcome.failed(info, retryable=False), now=now)
            events += step.events
            state = step.state
    finally:
        loop.close()
    return engine.Step(state, tuple(events))


@given(pure_workflows(), st.integers(1, 50), st.integers(0, 2_000))
def test_a_chain_makes_the_events_and_state_of_its_nodes_run_one_by_one(
    wf: Workflow, limit: int, later: int
) -> None:
    state = started(wf)
    now = 1_000 + later
    chained = engine.advance(wf, state, now=now, limit=limit)
    single = one_by_one(wf, state, limit, now)
    assert chained.events == single.events
    assert chained.state == single.state


@given(pure_workflows(), st.lists(st.integers(1, 7), min_size=1, max_size=12))
def test_folding_a_chained_log_reproduces_the_state(wf: Workflow, limits: list[int]) -> None:
    step = engine.create_room(wf, RoomId("room"), now=1_000)
    log = list(step.events)
    step = engine.start(wf, step.state, now=1_000)
    log += step.events
    state = step.state
    for i, limit in enumerate(limits):
        if engine.can_advance(wf, state):
            step = engine.advance(wf, state, now=2_000 + i, limit=limit)
        elif engine.next_action(state) == "run":  # an IO node: its attempt succeeds
            step = engine.decide(wf, state, Outcome.ok(1), now=2_000 + i)
        elif engine.next_action(state) == "wait":
            step = engine.receive_input(wf, state, {"ok": True}, now=2_000 + i)
        elif engine.next_action(state) == "sleep":
            assert state.wake_at is not None
            step = engine.wake(wf, state, now=state.wake_at)
        else:
            break
        log += step.events
        state = step.state
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert engine.fold(log) == state
        assert state.steps <= wf.max_steps


def test_a_chain_leaves_the_state_it_started_from_untouched() -> None:
    wf = Workflow.from_dict(
        {
            "id": "w",
            "variables": {"i": 0},
            "nodes": {
                "a": {"type": "set", "assign": {"i": "{{ vars.i + 1 }}"}},
                "b": {"type": "decision"},
                "done": {"type": "end"},
            },
            "transitions": [
                {"from": "a", "to": "b"},
                {"from": "b", "to": "a", "when": "vars.i < 10"},
                {"from": "b", "to": "done"},
            ],
        }
    )
    state = started(wf)
    before = (dict(state.variables), dict(state.visits), state.version)
    after = engine.advance(wf, state, now=2_000, limit=100).state
    assert (dict(state.variables), dict(state.visits), state.version) == before
    assert after.status.value == "completed"
    assert after.variables == {"i": 10}
    assert after.visits == {"a": 10, "b": 10, "done": 1}
