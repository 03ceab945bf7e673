"""The runner's batches of pure steps: how often they commit, and never past an IO node."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from openrooms import (
    NodeContext,
    NodeExecutor,
    Outcome,
    Runtime,
    Workflow,
    WorkflowBuilder,
    engine,
    open_runtime,
    register_node_type,
)
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.backends.base import Lease
from openrooms.errors import Problem
from openrooms.events import Event, EventType
from openrooms.registries import Registries
from openrooms.room import RoomState, RoomStatus
from openrooms.tools import default_tools, tool
from openrooms.types import RoomId
from openrooms.workflow import Node


class CountingStore(MemoryStore):
    """A real MemoryStore that also keeps each commit's events (a test device)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Event]] = []

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        super().commit(state, events, expected_version=expected_version, lease=lease)
        self.batches.append(list(events))


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


def node_steps(batch: list[Event]) -> int:
    return sum(1 for e in batch if e.type is EventType.NODE_STARTED)


def test_pure_steps_commit_together_at_most_every_n_steps() -> None:
    store = CountingStore()
    rt = Runtime(store, store, commit_every_steps=50, commit_every_ms=60_000)
    room = rt.create_room(loop(300))
    state = rt.run(room.id)
    assert state.status.value == "completed"
    assert state.variables == {"i": 300}
    runs = store.batches[1:]  # after the room's creation
    assert all(node_steps(b) <= 50 for b in runs)
    # 601 node steps: 13 commits of at most 50, not one per step
    assert len(runs) == 13
    log = rt.events(room.id)
    assert [e for b in store.batches for e in b] == log
    assert engine.fold(log) == state


def test_a_slow_chain_commits_by_time_too() -> None:
    store = CountingStore()
    rt = Runtime(store, store, commit_every_steps=1_000_000, commit_every_ms=0)
    room = rt.create_room(loop(100))
    rt.run(room.id)
    # every engine call's chain (at most 64 nodes) is committed at once when the time is up
    assert len(store.batches) > 1 + 201 // 64


def test_a_short_pure_room_commits_once_after_its_creation() -> None:
    store = CountingStore()
    rt = Runtime(store, store)
    room = rt.create_room(loop(2))
    state = rt.run(room.id)
    assert state.status.value == "completed"
    assert len(store.batches) == 2  # created; started, run and completed


def test_an_io_node_runs_only_once_the_way_to_it_is_committed() -> None:
    seen: list[tuple[str | None, int, int]] = []
    store = CountingStore()
    tools = default_tools.copy()
    rt = Runtime(store, store, tools=tools)

    def probe(room: str) -> int:
        stored = store.get(RoomId(room))  # what a crash now would leave
        seen.append((stored.current_node, stored.version, store.last_seq(RoomId(room))))
        return stored.version

    tool(registry=tools)(probe)
    wf = (
        WorkflowBuilder("io", variables={"i": 0})
        .set("a", {"i": "{{ vars.i + 1 }}"})
        .decision("b")
        .tool("call", "probe", {"room": "{{ room.id }}"}, output="seen")
        .set("c", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transitions(("a", "b"), ("b", "call"), ("call", "c"), ("c", "done"))
        .build(tools=tools)
    )
    room = rt.create_room(wf)
    state = rt.run(room.id)
    assert state.status.value == "completed", state.reason
    (at,) = seen
    assert at[0] == "call"  # the chain a, b and the call's NODE_STARTED were committed
    log = rt.events(room.id)
    started = [e for e in log if e.type is EventType.NODE_STARTED and e.node == "call"]
    assert at[1] == at[2] == started[0].seq
    assert state.variables["seen"] == started[0].seq
    # created; started, a, b and into the call; the call with its completion (into c): one
    # commit, the TOOL_CALLED record in it; c and the end
    assert [node_steps(b) for b in store.batches] == [0, 3, 1, 1]


def test_a_short_room_makes_two_write_transactions_on_sqlite(tmp_path: Path) -> None:
    """Create; then run: take the lease, start, five pure steps and the end, and release
    the lease, in one commit. The workflow, stored with the first room, is not written
    again."""
    store = SQLiteStore(tmp_path / "rooms.db")
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    # the runner's commits go through the connection that never waits for a lock
    store._nowait_connection().set_trace_callback(statements.append)
    rt = Runtime(store, store)
    wf = loop(2)
    rt.run(rt.create_room(wf).id)
    writes = []
    for _ in range(3):
        statements.clear()
        state = rt.run(rt.create_room(wf).id)
        assert state.status.value == "completed" and state.steps == 5
        writes.append(statements.count("BEGIN IMMEDIATE"))
        assert store.find_lease(state.room_id) is None
    store.close()
    assert writes == [2, 2, 2]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_set_node_that_stores_vars_itself_stores_a_copy_not_the_working_dict(
    tmp_path: Path, backend: str
) -> None:
    """A chain changes its working variables in place: ``{{ vars }}`` assigned must be a
    snapshot, else the room's variables come to hold themselves (found by the hostile
    generators: a RecursionError and "Circular reference detected" at the commit)."""
    wf = (
        WorkflowBuilder("snapshots", variables={"n": 1})
        .set("a", {"before": "{{ vars }}", "n": "{{ vars.n + 1 }}"})
        .set("b", {"again": "{{ [vars.before, vars.n] }}", "n": "{{ vars.n + 1 }}"})
        .set("c", {"whole": "{{ vars }}"})
        .end("done")
        .transitions(("a", "b"), ("b", "c"), ("c", "done"))
        .build()
    )
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'rooms.db'}"
    with open_runtime(url) as rt:
        state = rt.run(rt.create_room(wf).id)
        assert state.status is RoomStatus.COMPLETED, state.reason
        v = state.variables
        assert v["before"] == {"n": 1}
        assert v["again"] == [{"n": 1}, 2]
        assert v["whole"] == {"n": 3, "before": {"n": 1}, "again": [{"n": 1}, 2]}
        assert rt.replay(state.id) == state == rt.get_room(state.id)
        completed = [e for e in rt.events(state.id) if e.type is EventType.NODE_COMPLETED]
        assert completed[0].data["assign"]["before"] == {"n": 1}  # as it was, not as it became


class SharedDictNode(NodeExecutor):
    """A pure node type that hands out the same dict on every call (it does not promise
    ``fresh_assignments``): a chain must copy it before it keeps it."""

    labels = frozenset({"ok"})

    def __init__(self) -> None:
        self.shared: dict[str, Any] = {"n": 1}

    def validate(self, node: Node, path: str) -> list[Problem]:
        return []

    def is_pure(self, prepared: Any) -> bool:
        return True

    def evaluate(self, prepared: Any, scope: dict[str, Any]) -> dict[str, Any]:
        return self.shared

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome(assign=self.shared)


def test_a_chain_keeps_a_copy_of_a_dict_a_node_may_hand_out_again() -> None:
    registries = Registries()
    executor = SharedDictNode()
    register_node_type("shared_dict", executor, registry=registries.node_types)
    wf = Workflow.from_dict(
        {
            "id": "shared",
            "nodes": {"s": {"type": "shared_dict"}, "done": {"type": "end"}},
            "transitions": [{"from": "s", "to": "done"}],
        },
        registries=registries,
    )
    assert wf.plan.nodes["s"].result_check == 1  # keys and values checked, the dict copied
    assert loop(3).plan.nodes["add"].result_check == 2  # set: a new dict per call, kept
    store = MemoryStore()
    rt = Runtime(store, store, registries=registries)
    state = rt.run(rt.create_room(wf).id)
    executor.shared["n"] = 999  # the node changes what it handed out
    assert state.variables["n"] == 1
    completed = rt.events(state.room_id, types=[EventType.NODE_COMPLETED])
    assert completed[0].data["assign"] == {"n": 1}
