"""``openrooms worker`` as a real process: timers fire by themselves, on time.

Every test polls the SQLite file (read-only) with a deadline; nothing sleeps to synchronise.
Event timestamps and the stored ``timeout_at`` / ``due_at`` come from the processes' clocks
(the same machine's), so "within a second of the deadline" is measured on them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from openrooms import Event, EventType, RoomStatus, open_runtime
from openrooms.backends import SQLiteStore
from openrooms.errors import DatabaseNotFoundError
from openrooms.types import RoomId

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]

TIMED_WAIT = """
id: timed_wait
nodes:
  approve: {type: wait, prompt: Approve?, timeout_s: 3}
  done: {type: end}
  expired: {type: end, status: failed, reason: nobody answered}
transitions:
  - {from: approve, to: done}
  - {from: approve, to: expired, on: timeout}
"""

# fails at its first attempt (1 / 0), succeeds at its second, after a 3 s backoff
FLAKY = """
id: flaky
nodes:
  divide:
    type: tool
    tool: calculator
    args: {expression: "1 / (a - 1)", values: {a: "{{ room.attempt }}"}}
    output: result
    retry: {max_attempts: 2, backoff_s: 3}
  done: {type: end}
transitions:
  - {from: divide, to: done}
"""

T = TypeVar("T")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def openrooms(db: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "openrooms.cli", "--db", f"sqlite:///{db}", *args],
        env=environment(),
        cwd=db.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; whatever is still alive at the end is killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate()


def poll(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """*probe*'s first result that is not None, looked for until *timeout_s* passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)  # polling interval, not synchronisation: the probe decides


def reader(db: Path) -> SQLiteStore:
    return SQLiteStore(db, read_only=True)


def only_room(db: Path) -> RoomId | None:
    try:
        store = reader(db)
    except DatabaseNotFoundError:  # not made yet, or its tables not yet
        return None
    try:
        rooms = store.list_rooms()
    finally:
        store.close()
    return rooms[0].room_id if rooms else None


def events(db: Path, room_id: RoomId) -> list[Event]:
    store = reader(db)
    try:
        return store.read(room_id)
    finally:
        store.close()


def finished(db: Path, room_id: RoomId) -> list[Event] | None:
    store = reader(db)
    try:
        state = store.get(room_id)
        return store.read(room_id) if state.status.is_terminal else None
    finally:
        store.close()


def one(log: list[Event], type_: EventType, **data: Any) -> Event:
    (found,) = [e for e in log if e.type is type_ and data.items() <= e.data.items()]
    return found


def start_worker(db: Path, procs: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    worker = openrooms(db, "worker")
    procs.append(worker)
    assert worker.stderr is not None
    assert "worker" in worker.stderr.readline()  # it is up (its first line)
    return worker


def stop(worker: subprocess.Popen[str]) -> str:
    """SIGTERM the worker; it stops gracefully with status 0. Returns what it printed."""
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    return err


def test_a_wait_times_out_within_a_second_of_its_deadline_with_only_a_worker_running(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "timed.yaml").write_text(TIMED_WAIT)
    db = tmp_path / "rooms.db"
    worker = start_worker(db, procs)
    run = openrooms(db, "run", "timed.yaml")
    procs.append(run)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 3, err  # waiting; the run is over, only the worker is left
    ended_ms = time.time_ns() // 1_000_000
    room_id = only_room(db)
    assert room_id is not None and room_id in out
    timeout_at = one(events(db, room_id), EventType.ROOM_WAITING).data["timeout_at"]
    assert ended_ms < timeout_at  # nobody but the worker was running at the deadline

    log = poll("the wait to time out", lambda: finished(db, room_id), timeout_s=30)
    failed = one(log, EventType.NODE_FAILED, outcome="timeout")
    taken = one(log, EventType.TRANSITION, on="timeout")
    assert taken.data["to"] == "expired"
    assert timeout_at <= failed.timestamp < timeout_at + 1000, failed.timestamp - timeout_at
    assert log[-1].type is EventType.ROOM_FAILED and log[-1].timestamp < timeout_at + 1000
    printed = stop(worker)
    assert f"[{room_id}] wait at 'approve' timed out" in printed
    assert f"[{room_id}] failed at 'expired': nobody answered" in printed


def test_run_lets_go_of_the_lease_during_a_long_backoff_and_a_worker_finishes_the_room(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "flaky.yaml").write_text(FLAKY)
    db = tmp_path / "rooms.db"
    run = openrooms(db, "run", "flaky.yaml")
    procs.append(run)

    def retry_scheduled() -> tuple[RoomId, int] | None:
        room_id = only_room(db)
        if room_id is None:
            return None
        found = [e for e in events(db, room_id) if e.type is EventType.RETRY_SCHEDULED]
        return (room_id, found[0].data["due_at"]) if found else None

    room_id, due_at = poll("the retry to be scheduled", retry_scheduled)
    store = reader(db)
    try:
        # the run is alive and sleeping until due_at, with the lease let go
        lease = poll(
            "the lease to be released",
            lambda: "free" if store.find_lease(room_id) is None else None,
        )
        assert lease == "free"
        assert run.poll() is None
        assert time.time_ns() // 1_000_000 < due_at
        assert store.get(room_id).status is RoomStatus.RUNNING
    finally:
        store.close()
    run.kill()  # it never comes back: the worker alone finishes the room, not after a TTL
    run.wait()
    worker = start_worker(db, procs)
    log = poll("the worker to finish the room", lambda: finished(db, room_id))
    second = one(log, EventType.NODE_STARTED, attempt=2)
    assert due_at <= second.timestamp < due_at + 1000, second.timestamp - due_at
    assert log[-1].type is EventType.ROOM_COMPLETED
    printed = stop(worker)
    assert f"[{room_id}] retrying 'divide' (attempt 2)" in printed
    with open_runtime(f"sqlite:///{db}", read_only=True) as rt:
        assert rt.get_room(room_id).variables["result"] == 1
        assert rt.replay(room_id) == rt.get_room(room_id)


def test_run_beside_a_worker_ends_with_the_room_whoever_woke_it(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "flaky.yaml").write_text(FLAKY)
    db = tmp_path / "rooms.db"
    worker = start_worker(db, procs)
    run = openrooms(db, "run", "flaky.yaml")
    procs.append(run)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert "completed at 'done'" in out
    assert "ok   divide -> 1" in err  # the second attempt is shown, whoever ran it
    stop(worker)


def test_a_queued_room_is_started_by_the_worker_and_once_exits_when_nothing_is_due(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "flaky.yaml").write_text(FLAKY.replace("backoff_s: 3", "backoff_s: 0.2"))
    db = tmp_path / "rooms.db"
    queued = openrooms(db, "run", "flaky.yaml", "--queue")
    out, err = queued.communicate(timeout=30)
    assert queued.returncode == 0, err
    room_id = only_room(db)
    assert room_id is not None and "worker" in out
    with open_runtime(f"sqlite:///{db}", read_only=True) as rt:
        assert rt.get_room(room_id).status is RoomStatus.QUEUED
    once = openrooms(db, "worker", "--once")
    _, err = once.communicate(timeout=60)
    assert once.returncode == 0, err
    assert f"[{room_id}] completed at 'done'" in err


# set and decision nodes only: its steps never give the event loop back
COUNT = """
id: count_loop
max_steps: 10000000
variables: {i: 0}
nodes:
  add: {type: set, assign: {i: "{{ vars.i + 1 }}"}}
  check: {type: decision}
  done: {type: end}
transitions:
  - {from: add, to: check}
  - {from: check, to: add, when: "vars.i < 1000000"}
  - {from: check, to: done}
"""


def test_ctrl_c_stops_the_worker_after_the_current_step_and_the_room_resumes(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    (tmp_path / "count.yaml").write_text(COUNT)
    db = tmp_path / "rooms.db"
    queued = openrooms(db, "run", "count.yaml", "--queue")
    _, err = queued.communicate(timeout=30)
    assert queued.returncode == 0, err
    room_id = only_room(db)
    assert room_id is not None
    worker = start_worker(db, procs)

    def counting() -> int | None:
        store = reader(db)
        try:
            i = store.get(room_id).variables["i"]
        finally:
            store.close()
        return i if i >= 10 else None

    poll("the worker to be counting", counting)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 130, err
    resume = f"openrooms --db sqlite:///{db} resume {room_id}"
    assert f"[{room_id}] stopped at " in err and resume in err
    with open_runtime(f"sqlite:///{db}", read_only=True) as rt:
        state = rt.get_room(room_id)
        assert state.status is RoomStatus.RUNNING and 10 <= state.variables["i"] < 1_000_000
        assert rt.replay(room_id) == state
        assert rt.states.find_lease(room_id) is None
