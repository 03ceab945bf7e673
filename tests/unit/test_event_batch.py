"""EventBatch: a chain's transitions kept compact until read, and the stores that keep it so."""

from __future__ import annotations

from pathlib import Path

import pytest

from openrooms import Runtime, Workflow, WorkflowBuilder, engine
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.events import Event, EventBatch, EventType, Level
from openrooms.nodes import Outcome
from openrooms.types import RoomId

ROOM = RoomId("r1")


def loop(n: int) -> Workflow:
    return (
        WorkflowBuilder("loop", variables={"i": 0}, max_steps=10 * n)
        .set("add", {"i": "{{ vars.i + 1 }}"})
        .decision("check")
        .end("done")
        .transition("add", "check")
        .transition("check", "add", when=f"vars.i < {n}")
        .transition("check", "done")
        .build()
    )


def created(wf: Workflow) -> engine.Step:
    return engine.create_room(wf, ROOM, now=1)


def at_first_node(wf: Workflow) -> engine.Step:
    return engine.start(wf, created(wf).state, now=2)


def one_by_one(wf: Workflow, step: engine.Step, nodes: int) -> list[Event]:
    """The events of *nodes* pure nodes decided one at a time (no chain, no batch)."""
    state, events = step.state, list[Event]()
    for _ in range(nodes):
        np = wf.plan.nodes[state.current_node or ""]
        result = np.evaluate({"vars": dict(state.variables), "memory": state.memory})
        outcome = Outcome(assign=result) if isinstance(result, dict) else result
        decided = engine.decide(wf, state, outcome, now=3, duration_ms=None)
        events += decided.events
        state = decided.state
    return events


def test_a_chain_s_events_are_a_batch_equal_to_its_nodes_decided_one_by_one() -> None:
    wf = loop(50)
    start = at_first_node(wf)
    chain = engine.advance(wf, start.state, now=3, limit=10)
    assert isinstance(chain.events, EventBatch)
    assert not chain.events.read  # nothing made yet
    assert chain.events.first_seq == start.state.version + 1
    assert chain.events.last_seq == chain.state.version
    assert not chain.events.read  # first_seq and last_seq do not make the events
    assert list(chain.events) == one_by_one(wf, start, 10)
    assert chain.events.read
    assert [e.seq for e in chain.events] == list(
        range(start.state.version + 1, chain.state.version + 1)
    )
    assert engine.apply(start.state, chain.events) == chain.state


def test_the_last_transition_of_a_chain_into_an_end_has_no_started_event_of_its_own() -> None:
    wf = loop(2)
    start = at_first_node(wf)
    chain = engine.advance(wf, start.state, now=3, limit=100)
    types = [e.type for e in chain.events]
    assert types[-3:] == [EventType.TRANSITION, EventType.NODE_STARTED, EventType.ROOM_COMPLETED]
    assert isinstance(chain.events, EventBatch)
    assert chain.events.last_seq == chain.events[-1].seq == chain.state.version
    assert chain.state.status.value == "completed"


def test_extend_keeps_transitions_compact_and_take_leaves_the_batch_empty() -> None:
    wf = loop(50)
    start = at_first_node(wf)
    first = engine.advance(wf, start.state, now=3, limit=4)
    second = engine.advance(wf, first.state, now=4, limit=4)
    pending = EventBatch(ROOM, start.events)
    pending.extend(first.events)
    pending.extend(second.events)
    assert not first.events.read and not second.events.read  # type: ignore[attr-defined]
    taken = pending.take()
    assert not pending and len(pending) == 0
    assert taken.first_seq == start.events[0].seq and taken.last_seq == second.state.version
    assert list(taken) == [*start.events, *first.events, *second.events]
    assert taken == tuple(taken) and taken != [] and taken != "text"
    assert repr(taken).startswith("EventBatch([Event(")


def test_a_batch_made_by_hand_expands_to_the_three_events_of_each_hop() -> None:
    batch = EventBatch(
        ROOM, [(5, 9, "a", {"x": 1}, 0.5, 2, "b", 3), (8, 9, "b", None, None, 0, "c", None)]
    )
    events = list(batch)
    assert [(e.seq, e.type, e.level, e.node) for e in events] == [
        (5, EventType.NODE_COMPLETED, Level.INFO, "a"),
        (6, EventType.TRANSITION, Level.DEBUG, "a"),
        (7, EventType.NODE_STARTED, Level.INFO, "b"),
        (8, EventType.NODE_COMPLETED, Level.INFO, "b"),
        (9, EventType.TRANSITION, Level.DEBUG, "b"),
    ]
    assert events[0].data == {"outcome": "ok", "assign": {"x": 1}}
    assert events[0].duration_ms == 0.5
    assert events[1].data == {"from": "a", "to": "b", "on": "ok", "index": 2}
    assert events[2].data == {"attempt": 1, "visit": 3}
    assert events[3].data == {"outcome": "ok"}
    assert batch.last_seq == 9 and batch[1:3] == tuple(events[1:3])


def test_a_memory_store_keeps_a_batch_unread_until_its_log_is_read() -> None:
    wf = loop(50)
    store = MemoryStore()
    new = created(wf)
    store.commit(new.state, new.events, expected_version=None)
    start = engine.start(wf, new.state, now=2)
    store.commit(start.state, start.events, expected_version=new.state.version)
    chain = engine.advance(wf, start.state, now=3, limit=10)
    batch = chain.events
    assert isinstance(batch, EventBatch)
    store.commit(chain.state, batch, expected_version=start.state.version)
    assert store.last_seq(ROOM) == chain.state.version
    store.fence(ROOM, 1)
    assert not batch.read  # committed, numbered and fenced without making an event
    # the next commit must follow the batch's last event
    stale = engine.advance(wf, start.state, now=3, limit=1)
    with pytest.raises(Exception, match="changed since"):
        store.append(stale.events)
    log = store.read(ROOM)
    assert batch.read
    assert [e.seq for e in log] == list(range(1, chain.state.version + 1))
    assert log[start.state.version :] == list(batch)
    assert engine.fold(log) == chain.state


def test_memory_and_sqlite_stores_keep_the_same_log_of_a_chained_run(tmp_path: Path) -> None:
    logs = []
    for store in (MemoryStore(), SQLiteStore(tmp_path / "rooms.db")):
        rt = Runtime(store, store, commit_every_steps=7)
        room = rt.create_room(loop(20), room_id="same-room")
        rt.run(room.id)
        chained = (EventType.NODE_COMPLETED, EventType.TRANSITION, EventType.NODE_STARTED)
        logs.append(
            [
                (e.seq, e.type, e.node, e.data if e.type in chained else None)
                for e in rt.events(room.id)
            ]
        )
        rt.close()
    assert logs[0] == logs[1]
    assert len(logs[0]) > 100
