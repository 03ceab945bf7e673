"""Engine invariants over generated workflows and outcome sequences."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms import engine
from openrooms.engine import Step
from openrooms.errors import SchemaValidationError
from openrooms.events import EventType
from openrooms.nodes import Outcome
from openrooms.room import RoomState
from openrooms.types import RoomId
from openrooms.workflow import Workflow, WorkflowBuilder
from tests.strategies import outcomes, workflows

# what happens to a room at each turn: a node outcome, an input, a timer, or a cancel
moves = st.one_of(
    outcomes.map(lambda o: ("outcome", o)),
    st.sampled_from([("input", {"ok": True}), ("wake", None), ("cancel", None)]),
)


def drive(wf: Workflow, script: list[tuple[str, Any]]) -> tuple[RoomState, list[Step]]:
    """Play *script* against a room of *wf*, skipping moves that do not apply to its state."""
    now = 1_000
    step = engine.create_room(wf, RoomId("room"), now=now)
    steps = [step]
    state = step.state
    step = engine.start(wf, state, now=now)
    steps.append(step)
    state = step.state
    for kind, value in script:
        now += 1_000
        action = engine.next_action(state)
        if action == "done":
            break
        if kind == "outcome" and action == "run":
            step = engine.decide(wf, state, value, now=now)
        elif kind == "input" and action == "wait":
            step = engine.receive_input(wf, state, value, now=now)
        elif kind == "wake" and state.wake_at is not None:
            step = engine.wake(wf, state, now=max(now, state.wake_at))
        elif kind == "cancel" and len(steps) % 7 == 0:
            step = engine.cancel(state, now=now)
        else:
            continue
        steps.append(step)
        state = step.state
    return state, steps


@given(workflows(), st.lists(moves, max_size=40))
def test_folding_the_log_reproduces_the_state(wf: Workflow, script: list[tuple[str, Any]]) -> None:
    state, steps = drive(wf, script)
    log = [e for s in steps for e in s.events]
    assert engine.fold(log) == state


@given(workflows(), st.lists(moves, max_size=40))
def test_sequence_numbers_are_gapless_and_match_the_version(
    wf: Workflow, script: list[tuple[str, Any]]
) -> None:
    state, steps = drive(wf, script)
    log = [e for s in steps for e in s.events]
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert state.version == len(log)


@given(workflows(), st.lists(moves, max_size=40))
def test_a_room_only_ever_occupies_nodes_of_its_table(
    wf: Workflow, script: list[tuple[str, Any]]
) -> None:
    _, steps = drive(wf, script)
    for s in steps:
        assert s.state.current_node in wf.nodes
        for e in s.events:
            assert e.node is None or e.node in wf.nodes
            if e.type is EventType.TRANSITION:
                assert (e.data["from"], e.data["to"]) in {
                    (t.source, t.target) for t in wf.transitions
                }


@given(workflows(), st.lists(moves, max_size=40))
def test_decide_is_deterministic(wf: Workflow, script: list[tuple[str, Any]]) -> None:
    first, steps_a = drive(wf, script)
    second, steps_b = drive(wf, script)
    assert first == second
    assert [s.events for s in steps_a] == [s.events for s in steps_b]


@given(workflows(), st.lists(outcomes, min_size=1, max_size=60))
def test_decide_is_total_and_the_step_limit_always_ends_a_room(
    wf: Workflow, script: list[Outcome]
) -> None:
    """Any outcome at any running node yields a step; no room runs past max_steps."""
    state = engine.start(wf, engine.create_room(wf, RoomId("r"), now=0).state, now=0).state
    now = 0
    # A step may take every attempt its retry policy allows, each followed by a wake-up.
    attempts = max((n.retry.max_attempts for n in wf.nodes.values() if n.retry), default=1)
    budget = (wf.max_steps + 2) * (2 * attempts + 1)
    for i in range(budget):
        outcome = script[i % len(script)]
        now += 10
        action = engine.next_action(state)
        if action == "run":
            state = engine.decide(wf, state, outcome, now=now).state
        elif action == "sleep":
            assert state.wake_at is not None
            state = engine.wake(wf, state, now=state.wake_at).state
        elif action == "wait":
            state = engine.receive_input(wf, state, None, now=now).state
        else:
            break
        assert state.steps <= wf.max_steps + 1
    assert engine.next_action(state) == "done"


def test_a_retry_past_the_step_limit_fails_the_room_instead_of_starting() -> None:
    """max_steps counts node attempts, retries included (found by the property above: a
    node reached at the limit went on retrying past it)."""
    wf = (
        WorkflowBuilder("limit", max_steps=2)
        .set("a", {"x": 1})
        .set("b", {"x": 2}, retry={"max_attempts": 5, "backoff_s": 0.0})
        .end("done")
        .transitions(("a", "b"), ("b", "done"))
        .build()
    )
    state = engine.start(wf, engine.create_room(wf, RoomId("r"), now=0).state, now=0).state
    state = engine.decide(wf, state, Outcome(), now=1).state  # a -> b: the second attempt
    assert (state.current_node, state.steps) == ("b", 2)
    state = engine.decide(wf, state, Outcome(label="error", retryable=True), now=2).state
    assert engine.next_action(state) == "sleep"
    woken = engine.wake(wf, state, now=state.wake_at or 0)
    assert woken.state.status.value == "failed" and woken.state.steps == 2
    assert "step limit of 2 reached before node 'b'" in (woken.state.reason or "")
    assert EventType.NODE_STARTED not in [e.type for e in woken.events]


@given(workflows())
def test_failures_are_retried_only_within_the_policy(wf: Workflow) -> None:
    state = engine.start(wf, engine.create_room(wf, RoomId("r"), now=0).state, now=0).state
    if engine.next_action(state) != "run":
        return
    assert state.current_node is not None
    node = wf.nodes[state.current_node]
    failure = Outcome(label="error")
    attempts = 1
    while True:
        state = engine.decide(wf, state, failure, now=0).state
        if engine.next_action(state) != "sleep":
            break
        state = engine.wake(wf, state, now=state.wake_at or 0).state
        attempts += 1
    limit = node.retry.max_attempts if node.retry else 1
    assert attempts == limit


def test_input_that_breaks_the_schema_changes_nothing() -> None:
    from openrooms import WorkflowBuilder

    wf = (
        WorkflowBuilder("w")
        .wait("ask", schema={"type": "object", "required": ["ok"]})
        .end("done")
        .transition("ask", "done")
        .build()
    )
    state = engine.start(wf, engine.create_room(wf, RoomId("r"), now=0).state, now=0).state
    with pytest.raises(SchemaValidationError, match="'ok'"):
        engine.receive_input(wf, state, {"nope": 1}, now=1)
