"""Many short rooms: what a run costs around its steps (its event loop, the environment's
secrets, its lease), and that taking the lease in the first commit keeps its rules."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from openrooms import Runtime, Workflow, WorkflowBuilder
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.backends.base import Lease
from openrooms.errors import RoomLeasedError
from openrooms.events import Event, EventType
from openrooms.room import RoomState, RoomStatus
from openrooms.scrub import environment_scrubber
from openrooms.tools import ToolRegistry, default_tools, tool


def short() -> Workflow:
    b = WorkflowBuilder("short", variables={"n": 0})
    for name in "abcd":
        b.set(name, {"n": "{{ vars.n + 1 }}"})
    return b.end("done").transitions(("a", "b"), ("b", "c"), ("c", "d"), ("d", "done")).build()


def with_tool(registry: ToolRegistry) -> Workflow:
    return (
        WorkflowBuilder("tooled", variables={"r": None})
        .set("a", {"r": "0"})
        .tool("call", "probe", output="r")
        .end("done")
        .transitions(("a", "call"), ("call", "done"))
        .build(tools=registry)
    )


def test_the_sync_api_runs_every_room_on_one_event_loop_and_lease_keeper_until_close() -> None:
    registry = default_tools.copy()
    loops: list[asyncio.AbstractEventLoop] = []
    keepers: list[threading.Thread] = []

    @tool(name="probe", registry=registry)
    async def probe() -> int:
        """Note the event loop the node runs on, and the thread keeping its lease."""
        loops.append(asyncio.get_running_loop())
        keepers.extend(
            t
            for t in threading.enumerate()
            if t.name == "openrooms-lease-keeper" and t not in before  # not another test's
        )
        return 1

    before = set(threading.enumerate())
    store = MemoryStore()
    rt = Runtime(store, store, tools=registry)
    wf = with_tool(registry)
    for _ in range(3):
        assert rt.run(rt.create_room(wf).id).status is RoomStatus.COMPLETED
    assert len(loops) == 3 and loops[0] is loops[1] is loops[2]
    assert len(keepers) == 3 and keepers[0] is keepers[1] is keepers[2]
    assert not loops[0].is_closed()
    rt.close()
    assert loops[0].is_closed() and not keepers[0].is_alive()


def test_the_sync_api_refuses_to_run_inside_a_running_event_loop() -> None:
    store = MemoryStore()
    rt = Runtime(store, store)
    room = rt.create_room(short())

    async def inside() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            rt.run(room.id)  # the coroutine it made is closed: no "never awaited" warning

    asyncio.run(inside())
    assert rt.run(room.id).status is RoomStatus.COMPLETED
    rt.close()


def test_the_environment_scrubber_is_made_again_only_when_the_environment_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = environment_scrubber()
    assert environment_scrubber() is first
    monkeypatch.setenv("SHORTROOMS_TEST_API_KEY", "s3cr3t-value-123")
    changed = environment_scrubber()
    assert changed is not first
    assert changed.text("key s3cr3t-value-123") == "key [redacted]"
    assert environment_scrubber() is changed
    monkeypatch.setenv("SHORTROOMS_TEST_API_KEY", "an0ther-value-456")
    assert environment_scrubber().text("an0ther-value-456 s3cr3t-value-123") == (
        "[redacted] s3cr3t-value-123"
    )


def traced(store: SQLiteStore) -> list[str]:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store._nowait_connection().set_trace_callback(statements.append)
    return statements


def test_a_run_with_an_io_node_takes_the_lease_in_its_first_commit_and_lets_it_go_in_its_last(
    tmp_path: Path,
) -> None:
    """Start and ``a`` are committed in the transaction that takes the lease; the tool runs
    under it; its call, its completion and the end commit together and release the lease:
    two writes, not five."""
    registry = default_tools.copy()
    store = SQLiteStore(tmp_path / "rooms.db")
    held: list[Lease | None] = []

    @tool(name="probe", registry=registry)
    def probe() -> int:
        """Note who holds the room's lease while the node runs."""
        held.append(store.find_lease(room.room_id))
        return 7

    rt = Runtime(store, store, tools=registry)
    room = rt.create_room(with_tool(registry))
    statements = traced(store)
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED and state.variables["r"] == 7
    assert held[0] is not None and held[0].owner == rt.owner
    assert statements.count("BEGIN IMMEDIATE") == 2
    assert store.find_lease(room.room_id) is None
    assert [e.seq for e in rt.events(room.id)] == list(range(1, state.version + 1))
    rt.close()


class Interloper(MemoryStore):
    """A memory store that lets another runtime run the room just before the first
    lease-taking commit of the runtime under test (a test device: the race made certain)."""

    def __init__(self) -> None:
        super().__init__()
        self.other: Runtime | None = None
        self.raced = 0

    def acquire_and_commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        owner: str,
        ttl_ms: int,
        now: int,
        force: bool = False,
        release: bool = False,
    ) -> Lease:
        other, self.other = self.other, None
        if other is not None:  # on a thread of its own: this one runs an event loop
            done: list[RoomState] = []
            thread = threading.Thread(target=lambda: done.append(other.run(state.room_id)))
            thread.start()
            thread.join()
            self.raced += 1
            assert done[0].status is RoomStatus.COMPLETED
        return super().acquire_and_commit(
            state,
            events,
            expected_version=expected_version,
            owner=owner,
            ttl_ms=ttl_ms,
            now=now,
            force=force,
            release=release,
        )


def test_a_runner_that_got_there_between_the_read_and_the_first_commit_wins() -> None:
    """The room is read without the lease; another runner runs it to its end meanwhile: the
    first commit is refused whole, and the run takes the lease the usual way and finds the
    room completed. No step is made twice."""
    store = Interloper()
    rt = Runtime(store, store)
    room = rt.create_room(short())
    store.other = Runtime(store, store)
    state = rt.run(room.id)
    assert store.raced == 1
    assert state.status is RoomStatus.COMPLETED and state.variables["n"] == 4
    log = rt.events(room.id)
    assert [e.seq for e in log] == list(range(1, state.version + 1))
    assert sum(e.type is EventType.ROOM_COMPLETED for e in log) == 1
    assert store.find_lease(room.id) is None


def test_a_room_leased_by_a_live_runner_is_refused_from_a_read(tmp_path: Path) -> None:
    """RoomLeasedError as before, found by reading the lease: no write is even begun."""
    store = SQLiteStore(tmp_path / "rooms.db")
    rt = Runtime(store, store)
    room = rt.create_room(short())
    other = store.acquire_lease(room.id, f"elsewhere:{os.getpid()}:x", ttl_ms=60_000, now=rt.now())
    statements = traced(store)
    with pytest.raises(RoomLeasedError):
        rt.run(room.id)
    assert "BEGIN IMMEDIATE" not in statements
    assert rt.get_room(room.id) == room and store.find_lease(room.id) == other
    assert rt.run(room.id, force=True).status is RoomStatus.COMPLETED
    assert store.find_lease(room.id) is None
    rt.close()
