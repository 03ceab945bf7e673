"""Timers: a runner never holds a room's lease through a long retry backoff.

The runtimes here run on a :class:`ManualClock`, and their ``sleep`` is a test device that
records what the store looks like while the runner sleeps, then moves the clock on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from openrooms import Event, EventType, RoomStatus, Runtime, load_workflow
from openrooms.backends import Lease, MemoryStore
from openrooms.errors import RoomLeasedError
from openrooms.testing import ManualClock
from openrooms.types import RoomId

FLAKY = """
id: flaky
nodes:
  divide:
    type: tool
    tool: calculator
    args: {expression: "1 / (a - 1)", values: {a: "{{ room.attempt }}"}}
    output: result
    retry: {max_attempts: 2, backoff_s: BACKOFF}
  done: {type: end}
transitions:
  - {from: divide, to: done}
"""


def flaky(tmp_path: Any, backoff_s: float) -> Any:
    """A workflow whose tool node fails at its first attempt, then succeeds after *backoff_s*."""
    path = tmp_path / "flaky.yaml"
    path.write_text(FLAKY.replace("BACKOFF", str(backoff_s)))
    return load_workflow(path)


Sleep = Callable[[float], Awaitable[None]]


def recording_sleep(
    rt: Runtime, clock: ManualClock, seen: list[tuple[float, Lease | None]]
) -> Sleep:
    """A sleep that notes (seconds, the room's lease at that moment), then moves the clock."""

    async def sleep(seconds: float) -> None:
        (room,) = rt.list_rooms()
        seen.append((seconds, rt.states.find_lease(room.room_id)))
        clock.advance(round(seconds * 1000))

    return sleep


def runtime(store: MemoryStore, clock: ManualClock) -> Runtime:
    return Runtime(store, store, clock=clock)


def test_a_backoff_is_slept_under_the_lease_only_up_to_the_threshold(tmp_path: Any) -> None:
    """The runtime's max_leased_sleep_s (1 s by default) decides; the room completes alike."""
    for backoff_s, threshold_s, held in [(0.5, None, True), (30, None, False), (30, 60, True)]:
        clock = ManualClock()
        rt = runtime(MemoryStore(), clock)
        if threshold_s is not None:
            rt.max_leased_sleep_s = threshold_s
        slept: list[tuple[float, Lease | None]] = []
        rt.sleep = recording_sleep(rt, clock, slept)
        room = rt.create_room(flaky(tmp_path, backoff_s))
        state = rt.run(room.id)
        assert state.status is RoomStatus.COMPLETED and state.variables["result"] == 1
        [(seconds, lease)] = slept
        assert seconds == pytest.approx(backoff_s, rel=0.2)
        assert (lease is not None and lease.owner == rt.owner) is held, (backoff_s, threshold_s)
        started = [e for e in rt.events(room.id) if e.type is EventType.NODE_STARTED]
        assert [e.data["attempt"] for e in started if e.node == "divide"] == [1, 2]
        # taking a sleeping room back is no resume
        assert EventType.ROOM_RESUMED not in [e.type for e in rt.events(room.id)]
        assert rt.replay(room.id) == state


def test_a_run_that_hands_over_returns_at_a_long_backoff_with_the_room_due(
    tmp_path: Any,
) -> None:
    clock = ManualClock()
    store = MemoryStore()
    rt = runtime(store, clock)
    room = rt.create_room(flaky(tmp_path, 30))
    state = asyncio.run(rt.arun(room.id, hand_over=True))
    assert state.status is RoomStatus.RUNNING and state.wake_at is not None
    assert store.find_lease(room.id) is None
    assert store.due_rooms(clock()) == []
    assert store.next_wake_at() == state.wake_at
    clock.advance(state.wake_at - clock())
    assert store.due_rooms(clock()) == [room.id]
    done = asyncio.run(rt.arun(room.id, hand_over=True))
    assert done.status is RoomStatus.COMPLETED


class CountingStore(MemoryStore):
    """A MemoryStore that counts the leases it refused (a test device, not a mock)."""

    refused = 0

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        try:
            return super().acquire_lease(room_id, owner, ttl_ms=ttl_ms, now=now, force=force)
        except RoomLeasedError:
            self.refused += 1
            raise


def test_a_run_follows_a_worker_that_took_the_room_while_it_slept(tmp_path: Any) -> None:
    """While the foreground run sleeps off the lease, another runtime ("the worker") takes
    the room; the run waits until it is free, shows the worker's events, and ends with it."""
    clock = ManualClock()
    store = CountingStore()
    rt = runtime(store, clock)
    worker = runtime(store, clock)
    room = rt.create_room(flaky(tmp_path, 30))
    taken: list[Lease] = []

    async def worker_runs() -> None:
        while store.refused == 0:  # until the foreground run found the room taken
            await asyncio.sleep(0)
        store.release_lease(taken[0])
        await worker.arun(room.id, hand_over=True)

    tasks = []

    async def sleep(seconds: float) -> None:
        clock.advance(round(seconds * 1000))
        taken.append(store.acquire_lease(room.id, worker.owner, ttl_ms=10_000, now=clock()))
        tasks.append(asyncio.get_running_loop().create_task(worker_runs()))

    rt.sleep = sleep
    shown: list[Event] = []

    async def both() -> Any:
        state = await rt.arun(room.id, on_event=shown.append)
        await tasks[0]
        return state

    state = asyncio.run(both())
    assert state.status is RoomStatus.COMPLETED
    assert store.refused >= 1
    assert [e.seq for e in shown] == [e.seq for e in rt.events(room.id)][1:]  # all but CREATED


def test_a_stop_request_cuts_a_long_backoff_short(tmp_path: Any) -> None:
    """request_stop (the CLI's first Ctrl-C) during a backoff slept off the lease: the run
    returns at once, the room left running and due at its wake_at, for a worker or resume."""
    store = MemoryStore()
    rt = Runtime(store, store)
    forever = asyncio.Event()

    async def sleep(seconds: float) -> None:  # a backoff that outlasts the test
        rt.request_stop()
        await forever.wait()

    rt.sleep = sleep
    room = rt.create_room(flaky(tmp_path, 3600))
    state = rt.run(room.id)
    assert state.status is RoomStatus.RUNNING and state.wake_at is not None
    assert state.wake_at - rt.now() > 30_000  # (the policy caps the delay at 60 s)
    assert store.find_lease(room.id) is None
    assert store.next_wake_at() == state.wake_at
