"""Durability across runners: fenced logs, lost leases, slow stores, infrastructure errors.

Every runner here is a real :class:`~openrooms.runtime.Runtime` over real stores. The test
devices are stores, not mocks: :class:`SlowStore` adds a delay to every call of a real
store, :class:`GatedLog` holds one read of a real log until the test lets it go, and
:class:`FailingStore` is a memory store that refuses chosen commits.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from openrooms import (
    BackendUnavailableError,
    EventType,
    LeaseLostError,
    RoomStatus,
    Runtime,
    ToolContext,
    ToolRegistry,
    WorkflowBuilder,
    serde,
    tool,
)
from openrooms.backends import Lease, MemoryStore, SQLiteStore
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.types import RoomId


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class Gate:
    """A tool's first call is held until the test opens the gate; later calls are not."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.cancelled = threading.Event()

    def registry(self, first: int, later: int) -> ToolRegistry:
        registry = ToolRegistry()

        @tool(name="gated", registry=registry)
        async def gated() -> int:
            """Return a number; the first call waits for the gate."""
            self.calls += 1
            if self.calls > 1:
                return later
            self.entered.set()
            deadline = time.monotonic() + 15  # a test that fails must not hang
            try:
                while not self.opened.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return first

        return registry


def gated_workflow(registry: ToolRegistry) -> Any:
    return (
        WorkflowBuilder("gated", variables={"x": 0})
        .tool("call", "gated", {}, output="x")
        .end("done")
        .transition("call", "done")
        .build(tools=registry)
    )


class RunInThread:
    """``rt.run(room_id, ...)`` in a thread of its own; its result or error kept."""

    def __init__(self, rt: Runtime, room_id: str, **kwargs: Any) -> None:
        self.result: RoomState | None = None
        self.error: BaseException | None = None
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(rt, room_id, kwargs))
        self._thread.start()

    def _run(self, rt: Runtime, room_id: str, kwargs: dict[str, Any]) -> None:
        try:
            self.result = rt.run(room_id, **kwargs)
        except BaseException as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    def join(self, timeout_s: float = 20.0) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the run did not end"


class GatedLog:
    """An event log whose first ``read`` waits until ``opened`` is set (a test device: the
    real log behind it does the work)."""

    def __init__(self, log: MemoryStore | SQLiteStore) -> None:
        self._log = log
        self.reading = threading.Event()
        self.opened = threading.Event()

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        self._log.append(events, lease=lease)

    def fence(self, room_id: RoomId, token: int) -> None:
        self._log.fence(room_id, token)

    def read(self, room_id: RoomId, **kwargs: Any) -> list[Event]:
        if not self.reading.is_set():
            self.reading.set()
            assert self.opened.wait(20)
        return self._log.read(room_id, **kwargs)

    def last_seq(self, room_id: RoomId) -> int:
        return self._log.last_seq(room_id)

    def close(self) -> None:
        pass


@pytest.fixture(params=["memory+memory", "sqlite+memory", "memory+sqlite"])
def split(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    kinds = request.param.split("+")
    states, log = (
        MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / f"{i}.db")
        for i, kind in enumerate(kinds)
    )
    yield states, log
    states.close()
    log.close()


def test_a_stale_runner_s_step_never_comes_back_with_split_stores(
    split: tuple[Any, Any],
) -> None:
    """The issue's case, with real runners: A is mid-node when B takes the room over; A's
    node then returns x=999 and A commits it after B took the lease but before B read the
    log. The log refuses it (B fenced it first), A stops with LeaseLostError, and B's room
    never sees 999."""
    states, log = split
    gate = Gate()
    registry = gate.registry(first=999, later=1)
    a = Runtime(states, log, tools=registry, lease_ttl_ms=60_000)  # no renewal in the test
    room = a.create_room(gated_workflow(registry))
    gated_log = GatedLog(log)
    b = Runtime(states, gated_log, tools=registry)
    run_a = RunInThread(a, room.id)
    assert gate.entered.wait(10)
    run_b = RunInThread(b, room.id, force=True)
    assert gated_log.reading.wait(10)  # B holds the lease and has fenced the log
    gate.opened.set()  # A's node returns x=999; A commits
    run_a.join()
    gated_log.opened.set()
    run_b.join()
    assert isinstance(run_a.error, LeaseLostError), run_a.error
    assert run_b.error is None, run_b.error
    assert run_b.result is not None and run_b.result.variables["x"] == 1
    events = a.events(room.id)
    assert "999" not in repr([e.data for e in events])
    assert a.replay(room.id) == a.get_room(room.id) == run_b.result
    resumed = [e for e in events if e.type is EventType.ROOM_RESUMED]
    assert [e.data.get("previous_lease") for e in resumed] == ["taken over"]
    b.close()
    a.close()


def test_losing_the_lease_cancels_the_running_node_within_a_renew_interval(
    tmp_path: Path,
) -> None:
    """A second runner forces the lease from A while A's node runs: A's next renewal fails,
    the node is cancelled, ``run`` raises LeaseLostError, and A commits nothing more."""
    db = tmp_path / "rooms.db"
    gate = Gate()
    registry = gate.registry(first=999, later=1)
    ttl_ms = 600
    a = Runtime(SQLiteStore(db), SQLiteStore(db), tools=registry, lease_ttl_ms=ttl_ms)
    room = a.create_room(gated_workflow(registry))
    run_a = RunInThread(a, room.id)
    assert gate.entered.wait(10)
    b = Runtime(
        states := SQLiteStore(db), states, tools=registry, lease_ttl_ms=60_000
    )  # one store: the lease token is checked in its commit
    taken_at = time.monotonic()
    run_b = RunInThread(b, room.id, force=True)
    run_a.join()
    run_b.join()
    assert isinstance(run_a.error, LeaseLostError), run_a.error
    assert "lost its lease" in str(run_a.error)
    assert gate.cancelled.is_set()  # the node was cancelled, not left to finish
    assert run_a.ended_at - taken_at < ttl_ms / 3000 + 1.0
    assert run_b.error is None and run_b.result is not None
    assert run_b.result.status is RoomStatus.COMPLETED and run_b.result.variables["x"] == 1
    events = b.events(room.id)
    assert "999" not in repr([e.data for e in events])
    calls = [e for e in events if e.type is EventType.TOOL_CALLED]
    assert [e.data["result"] for e in calls] == [1]
    assert b.replay(room.id) == b.get_room(room.id)
    b.close()
    a.close()


class UnreachableLeases(MemoryStore):
    """A memory store whose lease renewals fail as if the store could not be reached."""

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        raise BackendUnavailableError("memory", "cannot reach the store (on purpose)")


def test_a_lease_that_cannot_be_renewed_is_lost_when_it_expires() -> None:
    """Renewals that fail for want of the store are tried again until the lease would have
    expired; then the node is cancelled and ``run`` raises LeaseLostError saying why."""
    store = UnreachableLeases()
    gate = Gate()
    registry = gate.registry(first=999, later=1)
    ttl_ms = 300
    rt = Runtime(store, store, tools=registry, lease_ttl_ms=ttl_ms)
    room = rt.create_room(gated_workflow(registry))
    started = time.monotonic()
    with pytest.raises(LeaseLostError, match="could not be renewed before it expired"):
        rt.run(room.id)
    assert gate.cancelled.is_set()
    assert time.monotonic() - started < ttl_ms / 1000 + 1.0
    stuck = rt.get_room(room.id)
    assert stuck.status is RoomStatus.RUNNING and stuck.current_node == "call"
    assert not rt.events(room.id, types=[EventType.TOOL_CALLED, EventType.NODE_FAILED])
    rt.close()


class FailingStore(MemoryStore):
    """A memory store whose commits carrying a TOOL_CALLED event fail while ``failing``."""

    failing = True

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        if self.failing and any(e.type is EventType.TOOL_CALLED for e in events):
            raise BackendUnavailableError("memory", "the store went away (on purpose)")
        super().commit(state, events, expected_version=expected_version, lease=lease)


def test_a_store_failure_inside_a_node_stops_the_runner_and_is_not_the_node_s_failure() -> None:
    """The journal commit of a tool call fails: no retry is used, no ``on: error`` branch is
    taken, ``run`` raises the store's error, and the room resumes where it was."""
    registry = ToolRegistry()

    @tool(name="answer", registry=registry)
    def answer() -> int:
        """Return 42."""
        return 42

    wf = (
        WorkflowBuilder("infra", variables={"x": 0})
        .tool("call", "answer", {}, output="x", retry={"max_attempts": 3})
        .end("done")
        .end("fallback", status="failed", reason="the tool failed")
        .transition("call", "done")
        .transition("call", "fallback", on="error")
        .build(tools=registry)
    )
    store = FailingStore()
    rt = Runtime(store, store, tools=registry)
    room = rt.create_room(wf)
    with pytest.raises(BackendUnavailableError, match="on purpose"):
        rt.run(room.id)
    stuck = rt.get_room(room.id)
    assert stuck.status is RoomStatus.RUNNING and stuck.current_node == "call"
    assert stuck.attempt == 1
    assert not rt.events(room.id, types=[EventType.NODE_FAILED, EventType.RETRY_SCHEDULED])
    store.failing = False
    done = rt.run(room.id)
    assert done.status is RoomStatus.COMPLETED and done.current_node == "done"
    assert done.variables["x"] == 42
    assert [e.type for e in rt.events(room.id, types=[EventType.ROOM_RESUMED])] == [
        EventType.ROOM_RESUMED
    ]


class BatchRecordingStore(FailingStore):
    """A :class:`FailingStore` that keeps the event types of every commit it took."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[EventType]] = []

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        super().commit(state, events, expected_version=expected_version, lease=lease)
        self.batches.append([e.type for e in events])


def test_a_tool_node_s_call_commits_with_its_completion_and_runs_again_if_that_is_lost() -> None:
    """One commit per tool step: the TOOL_CALLED record and the node's completion. When
    that commit fails, the call is made again on resume with the same idempotency key (at
    least once), and the log holds it once."""
    registry = ToolRegistry()
    keys: list[str] = []

    @tool(name="charge", registry=registry)
    def charge(ctx: ToolContext) -> str:
        """Charge once per idempotency key."""
        keys.append(ctx.idempotency_key)
        return "charged"

    wf = (
        WorkflowBuilder("one_commit", variables={"x": None})
        .tool("call", "charge", {}, output="x")
        .end("done")
        .transition("call", "done")
        .build(tools=registry)
    )
    store = BatchRecordingStore()
    rt = Runtime(store, store, tools=registry)
    room = rt.create_room(wf)
    with pytest.raises(BackendUnavailableError, match="on purpose"):
        rt.run(room.id)
    assert len(keys) == 1
    assert not rt.events(room.id, types=[EventType.TOOL_CALLED, EventType.NODE_COMPLETED])
    store.failing = False
    done = rt.run(room.id)
    assert done.status is RoomStatus.COMPLETED and done.variables["x"] == "charged"
    assert keys == [keys[0], keys[0]]  # made again, with the same key
    (called,) = rt.events(room.id, types=[EventType.TOOL_CALLED])
    assert called.data["idempotency_key"] == keys[0]
    (step,) = [b for b in store.batches if EventType.TOOL_CALLED in b]
    assert step.index(EventType.TOOL_CALLED) < step.index(EventType.NODE_COMPLETED)
    rt.close()


class SlowStore:
    """A real memory store behind a delay on every call (a test device, like a far-away
    database). It does not say ``may_block``, so the runner treats it as blocking."""

    def __init__(self, store: MemoryStore, delay_s: float) -> None:
        self.store, self.delay_s = store, delay_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name == "may_block" or not callable(attr):
            raise AttributeError(name)

        def slow(*args: Any, **kwargs: Any) -> Any:
            time.sleep(self.delay_s)
            return attr(*args, **kwargs)

        return slow


def test_a_slow_store_neither_loses_its_lease_nor_delays_other_rooms() -> None:
    """Every call of room A's store takes longer than the renew interval. A's lease never
    expires while A runs, and room B, run in the same event loop over a fast store, makes
    its steps meanwhile without waiting for A's store calls."""
    delay_s, ttl_ms = 0.2, 540  # renewed every 180 ms; each call takes 200 ms
    registry = ToolRegistry()

    @tool(name="pause", registry=registry)
    async def pause() -> int:
        """Yield to the event loop for a moment."""
        await asyncio.sleep(0.03)
        return 1

    def looping(name: str, times: int) -> Any:
        return (
            WorkflowBuilder(name, variables={"i": 0})
            .tool("step", "pause", {}, output="got")  # its call is committed by its journal
            .set("inc", {"i": "{{ vars.i + 1 }}"})
            .end("done")
            .transition("step", "inc")
            .transition("inc", "step", when=f"vars.i < {times}")
            .transition("inc", "done")
            .build(tools=registry)
        )

    fast_a = MemoryStore()
    slow = SlowStore(fast_a, delay_s)
    rt_a = Runtime(slow, slow, tools=registry, lease_ttl_ms=ttl_ms)
    room_a = rt_a.create_room(looping("slow", 2))
    wf_b = looping("quick", 80)
    rt_b = Runtime(MemoryStore(), MemoryStore(), tools=registry)
    room_b = rt_b.create_room(wf_b)

    stamps: list[float] = []
    stamps_a: list[float] = []
    expired: list[int] = []

    def on_b_event(e: Event) -> None:
        stamps.append(time.monotonic())
        lease = fast_a.find_lease(room_a.room_id)
        if lease is not None and lease.expires_at <= rt_a.now():
            expired.append(lease.expires_at)

    async def both() -> tuple[RoomState, RoomState]:
        task_a = asyncio.create_task(
            rt_a.arun(room_a.room_id, on_event=lambda e: stamps_a.append(time.monotonic()))
        )
        await asyncio.sleep(0)  # A starts first: its first store call is in flight
        b = await rt_b.arun(room_b.room_id, on_event=on_b_event)
        a = await task_a
        return a, b

    a, b = asyncio.run(both())
    assert a.status is RoomStatus.COMPLETED and a.variables["i"] == 2
    assert b.status is RoomStatus.COMPLETED and b.variables["i"] == 80
    assert expired == []
    # A's steps, tool calls (journal commits) included, were made while B ran ...
    during = [t for t in stamps_a if stamps[0] < t < stamps[-1]]
    assert len(during) >= 6, (len(during), len(stamps_a))
    # ... and B never waited for one of A's store calls
    gaps = [later - earlier for earlier, later in itertools.pairwise(stamps)]
    assert max(gaps) < delay_s * 0.75, max(gaps)
    rt_a.close()
    rt_b.close()


class FailingChildren(MemoryStore):
    """A memory store whose commits for sub-workflow child rooms (ids with a ``.``) fail
    while ``failing``."""

    failing = True

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        if self.failing and "." in state.room_id and expected_version is not None:
            raise BackendUnavailableError("memory", "the store went away (on purpose)")
        super().commit(state, events, expected_version=expected_version, lease=lease)


def test_a_store_failure_in_a_map_branch_is_not_the_branch_s_failure() -> None:
    """A child room of a ``map`` item cannot be committed: the parent's runner stops with the
    store's error; the item is not failed, and the map does not take ``on: error``."""
    child = (
        WorkflowBuilder("child", variables={"n": 0})
        .set("double", {"n": "{{ vars.n * 2 }}"})
        .end("done")
        .transition("double", "done")
        .build()
    )
    parent = serde.workflow_from_text(
        """
id: parent
variables: {xs: [1, 2]}
nodes:
  each:
    type: map
    items: "{{ vars.xs }}"
    node: {type: subworkflow, workflow: child, input: {n: "{{ item }}"}}
    output: results
  done: {type: end}
  fallback: {type: end, status: failed, reason: an item failed}
transitions:
  - {from: each, to: done}
  - {from: each, to: fallback, on: error}
""",
        source="test.yaml",
    )
    store = FailingChildren()
    rt = Runtime(store, store)
    rt.register_workflow(child)
    room = rt.create_room(parent)
    with pytest.raises(BackendUnavailableError, match="on purpose"):
        rt.run(room.id)
    stuck = rt.get_room(room.id)
    assert stuck.status is RoomStatus.RUNNING and stuck.current_node == "each"
    assert not rt.events(room.id, types=[EventType.BRANCH_COMPLETED, EventType.NODE_FAILED])
    store.failing = False
    done = rt.run(room.id)
    assert done.status is RoomStatus.COMPLETED, done.reason
    assert [r["n"] for r in done.variables["results"]] == [2, 4]


def test_a_sqlite_commit_that_must_wait_for_a_lock_waits_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """Another connection (another process, say) holds the SQLite file's write lock: room A's
    writes, tried inline without waiting, go to the IO thread and wait there, while room B
    runs on in the same event loop; once the lock is let go, A finishes."""
    db = tmp_path / "locked.db"
    store = SQLiteStore(db, busy_timeout_ms=5_000)
    rt_a = Runtime(store, store)
    wf_a = (
        WorkflowBuilder("a", variables={"i": 0})
        .set("inc", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transition("inc", "inc", when="vars.i < 3")
        .transition("inc", "done")
        .build()
    )
    room_a = rt_a.create_room(wf_a)

    registry = ToolRegistry()

    @tool(name="pause", registry=registry)
    async def pause() -> int:
        """Yield to the event loop for a moment."""
        await asyncio.sleep(0.01)
        return 1

    wf_b = (
        WorkflowBuilder("b", variables={"i": 0})
        .tool("step", "pause", {}, output="got")
        .set("inc", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transition("step", "inc")
        .transition("inc", "step", when="vars.i < 30")
        .transition("inc", "done")
        .build(tools=registry)
    )
    rt_b = Runtime(MemoryStore(), MemoryStore(), tools=registry)
    room_b = rt_b.create_room(wf_b)
    b_events: list[float] = []
    a_events: list[float] = []

    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    unlocked_at: list[float] = []

    async def both() -> tuple[RoomState, RoomState]:
        task_a = asyncio.create_task(
            rt_a.arun(room_a.room_id, on_event=lambda e: a_events.append(time.monotonic()))
        )
        b = await rt_b.arun(room_b.room_id, on_event=lambda e: b_events.append(time.monotonic()))
        unlocked_at.append(time.monotonic())
        other.execute("ROLLBACK")  # B is done: let A write
        return await task_a, b

    a, b = asyncio.run(both())
    other.close()
    assert b.status is RoomStatus.COMPLETED and b.variables["i"] == 30
    assert a.status is RoomStatus.COMPLETED and a.variables["i"] == 3
    assert a_events and min(a_events) > unlocked_at[0]  # A waited for the lock ...
    assert len(b_events) > 90  # ... while B ran through its whole room
    rt_a.close()
    rt_b.close()


def test_a_node_that_holds_the_event_loop_does_not_lose_the_lease() -> None:
    """A tool that computes for three times the lease's time to live without yielding: the
    lease keeper's thread renews the lease meanwhile, so it never expires."""
    store = MemoryStore()
    registry = ToolRegistry()
    ttl_ms = 300
    seen: list[int] = []

    @tool(name="spin", registry=registry)
    async def spin() -> int:
        """Hold the event loop (CPU-bound work written as an async tool)."""
        end = time.monotonic() + 3 * ttl_ms / 1000
        while time.monotonic() < end:
            (room,) = store.list_rooms()
            lease = store.find_lease(room.room_id)
            assert lease is not None
            seen.append(lease.expires_at - rt.now())  # how long the lease has left
            time.sleep(0.01)  # not a yield to the event loop: the loop stays blocked
        return 1

    wf = (
        WorkflowBuilder("spin", variables={"x": 0})
        .tool("call", "spin", {}, output="x")
        .end("done")
        .transition("call", "done")
        .build(tools=registry)
    )
    rt = Runtime(store, store, tools=registry, lease_ttl_ms=ttl_ms)
    room = rt.run(rt.create_room(wf).id)
    assert room.status is RoomStatus.COMPLETED and room.variables["x"] == 1
    assert seen and min(seen) > 0  # never expired while the loop was held
    rt.close()
