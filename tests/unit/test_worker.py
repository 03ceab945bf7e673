"""openrooms.worker.Worker in-process: what it runs, when it stops, what it leaves alone.

The worker runs on the real clock here; its timers are a fraction of a second long and
``run(idle_exit_s=...)`` ends it, so no test sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from openrooms import (
    Event,
    EventType,
    RoomStatus,
    Runtime,
    SchemaValidationError,
    WorkflowBuilder,
    WorkflowNotFoundError,
)
from openrooms.backends import MemoryJobQueue, MemoryStore, StoredWorkflow
from openrooms.types import RoomId
from openrooms.worker import Worker
from tests.conftest import BACKENDS, make_store

TIMED = (
    WorkflowBuilder("timed")
    .wait("ask", timeout_s=0.3)
    .end("done")
    .end("late", reason="timed out")
    .transition("ask", "done")
    .transition("ask", "late", on="timeout")
    .build()
)

SHORT = WorkflowBuilder("short").set("one", {"x": 1}).end("done").transition("one", "done").build()

LOOP = (
    WorkflowBuilder("loop", variables={"i": 0}, max_steps=1_000_000)
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 2000")
    .transition("inc", "done")
    .build()
)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_worker_runs_queued_rooms_jobs_and_due_timers(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path)
    rt = Runtime(store, store)
    timed = rt.run(rt.create_room(TIMED).id)
    assert timed.status is RoomStatus.WAITING and timed.wake_at is not None
    queued = rt.enqueue(rt.create_room(SHORT).id)
    assert queued.status is RoomStatus.QUEUED
    job = rt.create_room(SHORT)
    jobs = MemoryJobQueue()
    jobs.enqueue(job.id)
    started: list[RoomId] = []
    worker = Worker(rt, queue=jobs, on_start=started.append)
    # idle_exit_s: the waiting room's timer (0.3 s) is due before the worker is idle that long
    runs = asyncio.run(worker.run(idle_exit_s=1.0))
    assert runs == 3
    assert started[0] == job.id  # in-process jobs first, then due rooms, earliest first
    assert set(started) == {job.id, queued.id, timed.id}
    assert rt.get_room(queued.id).status is RoomStatus.COMPLETED
    assert rt.get_room(job.id).status is RoomStatus.COMPLETED
    late = rt.get_room(timed.id)
    assert late.status is RoomStatus.COMPLETED and late.current_node == "late"
    failed = [e for e in rt.events(timed.id) if e.type is EventType.NODE_FAILED]
    assert timed.wake_at <= failed[0].timestamp < timed.wake_at + 500
    assert store.due_rooms(rt.now()) == [] and store.next_wake_at() is None
    rt.close()


def test_a_delayed_job_runs_once_its_delay_has_passed() -> None:
    store = MemoryStore()
    rt = Runtime(store, store)
    room = rt.create_room(SHORT)
    jobs = MemoryJobQueue()
    jobs.enqueue(room.id, delay_s=0.2)
    assert jobs.pop_due() is None and jobs.next_due_in() == pytest.approx(0.2, abs=0.05)
    asyncio.run(Worker(rt, queue=jobs).run(idle_exit_s=0.5))
    assert rt.get_room(room.id).status is RoomStatus.COMPLETED
    assert len(jobs) == 0


def test_stop_from_another_thread_leaves_the_running_room_resumable(tmp_path: Path) -> None:
    store = make_store("sqlite", tmp_path)
    rt = Runtime(store, store)
    room = rt.enqueue(rt.create_room(LOOP).id)
    seen = threading.Event()

    def on_event(e: Event) -> None:
        if e.type is EventType.NODE_COMPLETED and e.data["assign"]["i"] == 50:
            seen.set()

    worker = Worker(rt, on_event=on_event)

    def stopper() -> None:
        seen.wait()
        worker.stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    assert asyncio.run(worker.run()) == 1
    thread.join()
    state = rt.get_room(room.id)
    assert state.status is RoomStatus.RUNNING and 50 <= state.variables["i"] < 2_000
    assert store.find_lease(room.id) is None
    assert rt.replay(room.id) == state
    other = Runtime(store, store)  # a new process would go on from there
    assert other.run(room.id).variables["i"] == 2_000
    rt.close()


class ForgetfulStore(MemoryStore):
    """A MemoryStore that has lost one workflow's definition (a test device, not a mock)."""

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        if workflow_id == "short":
            raise WorkflowNotFoundError(workflow_id, version)
        return super().get_workflow(workflow_id, version)


def test_a_room_that_cannot_run_is_reported_and_left_alone_meanwhile() -> None:
    store = ForgetfulStore()
    maker = Runtime(store, store)
    bad = maker.enqueue(maker.create_room(SHORT).id)
    good = maker.enqueue(maker.create_room(TIMED).id)
    rt = Runtime(store, store)  # knows no workflow but from the store
    errors: list[tuple[RoomId, Exception]] = []
    runs = asyncio.run(Worker(rt, on_error=lambda r, e: errors.append((r, e))).run(idle_exit_s=0))
    assert runs == 1
    assert [(r, type(e)) for r, e in errors] == [(bad.id, WorkflowNotFoundError)]
    assert rt.get_room(good.id).status is RoomStatus.WAITING
    assert rt.get_room(bad.id).status is RoomStatus.QUEUED  # untouched, still due


@pytest.mark.parametrize(("setting", "value"), [("concurrency", 0), ("poll_s", 0.0)])
def test_bad_settings_are_refused(setting: str, value: float) -> None:
    store = MemoryStore()
    with pytest.raises(SchemaValidationError, match=setting):
        Worker(Runtime(store, store), **{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_worker_recovers_a_room_whose_runner_died_with_its_lease(
    kind: str, tmp_path: Path
) -> None:
    """A room left mid-node under a lease that expired unreleased (``expired_rooms``)."""
    from openrooms import engine

    store = make_store(kind, tmp_path)
    rt = Runtime(store, store)
    state = rt.get_room(rt.create_room(SHORT).id)
    step = engine.start(SHORT, state, now=rt.now())
    store.commit(step.state, step.events, expected_version=state.version)
    # a runner on another host took it and died: its lease ran out ten seconds ago
    store.acquire_lease(state.room_id, "elsewhere:1:dead", ttl_ms=1000, now=rt.now() - 11_000)
    assert asyncio.run(Worker(rt).run(idle_exit_s=0)) == 1
    done = rt.get_room(state.room_id)
    assert done.status is RoomStatus.COMPLETED
    resumed = rt.events(state.room_id, types=[EventType.ROOM_RESUMED])
    assert [e.data["previous_lease"] for e in resumed] == ["expired"]
    store.close()
