"""RQ workers as real processes on the real Redis, over a SQLite file: one runner per room
however often it is queued, crashed workers recovered by the sweeper, the recovery cap,
warm shutdown, and the ``--detach`` commands.

Each test has its own RQ queue (a uuid in its name) on Redis db 15, deleted afterwards
with its jobs and markers. Workers run with a 1 s lease, renewed every 0.25 s, and sweep
every 0.3 s. A tool that must be running when a worker is killed or stopped blocks on a
loopback socket the test holds (``tests/e2e/rq_tools.py``); nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from openrooms import EventType, RoomStatus, open_runtime
from openrooms.backends.rq import JOB_FUNCTION, RQJobQueue
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.types import RoomId
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
LEASE_S, SWEEP_S = 1.0, 0.3
T = TypeVar("T")


def redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(
            f"no Redis at {REDIS_URL} ({exc}); start redis-server, or set OPENROOMS_TEST_REDIS_URL"
        )


class Setup:
    """One test's database, queue and worker processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "rooms.db"
        self.queue_name = f"t-{uuid.uuid4().hex[:12]}"
        self.queue_url = f"{REDIS_URL}?queue={self.queue_name}"
        self.procs: list[tuple[subprocess.Popen[str], Path]] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
        env.pop("REDIS_URL", None)
        env.update(
            PYTHONPATH=str(ROOT),
            OPENROOMS_DB=f"sqlite:///{self.db}",
            OPENROOMS_QUEUE_URL=self.queue_url,
            OPENROOMS_PLUGINS="tests.e2e.rq_tools",
            OPENROOMS_LEASE_TTL_S=str(LEASE_S),
            OPENROOMS_RENEW_EVERY_S="0.25",
            OPENROOMS_SWEEP_EVERY_S=str(SWEEP_S),
        )
        env.update(extra)
        return env

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "openrooms.cli", *args],
            env=self.env(**env),
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def worker(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start ``openrooms worker`` in a session of its own; its output goes to a file."""
        out = self.tmp / f"worker-{len(self.procs)}.log"
        with out.open("w") as sink:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "openrooms.cli", "worker", *args],
                env=self.env(**env),
                cwd=self.tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        self.procs.append((proc, out))
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        return next(out for p, out in self.procs if p is proc).read_text()

    def queue(self) -> RQJobQueue:
        return RQJobQueue(self.queue_url)

    def run_detached(self, workflow: str, *args: str) -> RoomId:
        (self.tmp / "wf.yaml").write_text(workflow)
        done = self.cli("run", "wf.yaml", "--detach", "--json", *args)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["status"] == "queued"
        return RoomId(answer["id"])

    def room(self, room_id: str) -> RoomState:
        with open_runtime(f"sqlite:///{self.db}", read_only=True) as rt:
            return rt.get_room(room_id)

    def events(self, room_id: str) -> list[Event]:
        with open_runtime(f"sqlite:///{self.db}", read_only=True) as rt:
            return rt.events(room_id)

    def replayed(self, room_id: str) -> RoomState:
        with open_runtime(f"sqlite:///{self.db}", read_only=True) as rt:
            return rt.replay(room_id)

    def close(self) -> None:
        for proc, _ in self.procs:
            # every process of the worker's session is ours: its horse, and RQ's scheduler,
            # which outlives a worker that was killed or stopped
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        clean_queue(self.queue_name)


def clean_queue(name: str) -> None:
    """Delete a test's queue, its RQ registries and jobs, and our markers (db 15 only)."""
    import redis
    from rq import Queue
    from rq.registry import (
        DeferredJobRegistry,
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    conn = redis.Redis.from_url(REDIS_URL)
    queue = Queue(name, connection=conn)
    ids = set(queue.get_job_ids())
    for registry in (
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
        DeferredJobRegistry,
    ):
        ids.update(registry(name, connection=conn).get_job_ids())
    for job_id in ids:
        conn.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    for key in conn.scan_iter(match=f"*{name}*", count=1000):
        conn.delete(key)
    conn.srem("rq:queues", f"rq:queue:{name}")
    for key in conn.scan_iter(match="rq:job:*", count=1000):  # any left, by their queue
        if conn.hget(key, "origin") == name.encode():
            conn.delete(key)
    conn.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    redis_or_skip()
    s = Setup(tmp_path)
    try:
        yield s
    finally:
        s.close()


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


class Gate:
    """A loopback server the ``gate`` tool reports to: it records each attempt's
    ``(idempotency key, pid)`` and answers it when the test says (or at once, with
    *hold* cleared)."""

    def __init__(self, hold: bool = True) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.calls: list[tuple[str, int]] = []
        self.answered: list[str] = []
        self._held: list[socket.socket] = []
        self.hold = hold
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            line = conn.makefile("r", encoding="utf-8").readline().split()
            with self._lock:
                self.calls.append((line[0], int(line[1])))
                if self.hold:
                    self._held.append(conn)
                    continue
            self._answer(conn, line[0])

    def _answer(self, conn: socket.socket, key: str) -> None:
        try:
            conn.sendall(b"ok\n")
            self.answered.append(key)
        except OSError:
            pass  # its process was killed meanwhile
        finally:
            conn.close()

    def release(self) -> None:
        """Answer every held call, and every later one at once."""
        with self._lock:
            self.hold = False
            held, self._held = self._held, []
            keys = [key for key, _ in self.calls[-len(held) :]] if held else []
        for conn, key in zip(held, keys, strict=True):
            self._answer(conn, key)

    def first_call(self, timeout_s: float = 30.0) -> tuple[str, int]:
        return poll(
            "the gate's first call", lambda: self.calls[0] if self.calls else None, timeout_s
        )

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.release()
    g.close()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def types(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type is kind]


def gapless(events: list[Event]) -> bool:
    return [e.seq for e in events] == list(range(1, len(events) + 1))


GATED = """
id: gated
variables: {port: 0}
nodes:
  call: {type: tool, tool: gate, args: {port: "{{ vars.port }}"}, output: answer}
  after: {type: set, assign: {seen: "{{ vars.answer }}"}}
  done: {type: end}
transitions:
  - {from: call, to: after}
  - {from: after, to: done}
"""

SHORT = """
id: short
nodes:
  one: {type: set, assign: {x: 1}}
  done: {type: end}
transitions:
  - {from: one, to: done}
"""

POISON = """
id: poison
nodes:
  crash: {type: tool, tool: die}
  done: {type: end}
transitions:
  - {from: crash, to: done}
"""

ASK = """
id: ask
nodes:
  approve: {type: wait, prompt: Approve?, timeout_s: 600}
  note: {type: set, assign: {approved: true}}
  done: {type: end}
  late: {type: end, status: failed, reason: nobody answered}
transitions:
  - {from: approve, to: note}
  - {from: approve, to: late, on: timeout}
  - {from: note, to: done}
"""


def completed(setup: Setup, room_id: str) -> RoomState | None:
    state = setup.room(room_id)
    return state if state.status is RoomStatus.COMPLETED else None


def rq_queue_drained(setup: Setup) -> bool | None:
    from rq.registry import StartedJobRegistry

    q = setup.queue()
    try:
        started = StartedJobRegistry(setup.queue_name, connection=q.redis)
        return True if len(q) == 0 and started.count == 0 else None
    finally:
        q.close()


def test_a_room_queued_ten_times_and_run_by_four_workers_has_one_runner(
    setup: Setup, gate: Gate
) -> None:
    room = setup.run_detached(GATED, "--var", f"port:={gate.port}")
    q = setup.queue()
    try:
        # the queue adds no job for a room whose job is pending ...
        assert [q.enqueue(room) for _ in range(9)] == [False] * 9
        # ... and nine more jobs put past it straight into RQ still make one runner
        for _ in range(9):
            q.queue.enqueue(JOB_FUNCTION, args=(room,), result_ttl=0, job_timeout=-1)
        assert len(q) == 10
    finally:
        q.close()
    workers = [setup.worker() for _ in range(4)]
    key, _ = gate.first_call()
    # every other job meets the live lease and leaves the room alone meanwhile
    poll(
        "the nine other jobs",
        lambda: True if sum(setup.output(w).count("left alone") for w in workers) >= 9 else None,
    )
    gate.release()
    state = poll(
        "the room to complete",
        lambda: s if (s := setup.room(room)).status is RoomStatus.COMPLETED else None,
    )
    poll("the queue to drain", lambda: rq_queue_drained(setup))
    events = setup.events(room)
    assert len(types(events, EventType.ROOM_STARTED)) == 1
    assert len(types(events, EventType.TOOL_CALLED)) == 1
    assert [e.node for e in types(events, EventType.NODE_COMPLETED)] == ["call", "after"]
    assert gate.calls == [(key, gate.calls[0][1])]  # one attempt, one process
    assert gapless(events) and setup.replayed(room) == state
    assert state.variables["seen"] == "ok"


def test_a_worker_killed_mid_tool_is_recovered_by_another_after_lease_and_sweep(
    setup: Setup, gate: Gate
) -> None:
    setup.worker()
    setup.worker()
    room = setup.run_detached(GATED, "--var", f"port:={gate.port}")
    key, horse = gate.first_call()
    worker_pid = parent_of(horse)
    # the whole worker dies mid-tool: its work horse, then the worker itself
    os.kill(horse, signal.SIGKILL)
    os.kill(worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    gate.release()  # the next attempt is answered at once
    state = poll(
        "another worker to finish the room",
        lambda: s if (s := setup.room(room)).status is RoomStatus.COMPLETED else None,
        timeout_s=LEASE_S + SWEEP_S + 10,
    )
    took = time.monotonic() - killed_at
    assert took < LEASE_S + SWEEP_S + 3.0, took
    events = setup.events(room)
    resumed = types(events, EventType.ROOM_RESUMED)
    assert len(resumed) == 1 and resumed[0].data["previous_lease"] == "expired"
    assert [e.node for e in types(events, EventType.NODE_COMPLETED)] == ["call", "after"]
    assert gapless(events) and setup.replayed(room) == state
    # the same attempt ran again, with the same idempotency key, in another process
    assert [k for k, _ in gate.calls] == [key, key] and gate.calls[1][1] != horse


def test_a_tool_that_kills_its_worker_every_time_fails_its_room_after_the_cap(
    setup: Setup,
) -> None:
    cap = "2"
    a = setup.worker(OPENROOMS_MAX_RECOVERIES=cap)
    b = setup.worker(OPENROOMS_MAX_RECOVERIES=cap)
    poison = setup.run_detached(POISON)
    good = [setup.run_detached(SHORT) for _ in range(3)]
    state = poll(
        "the poison room to fail",
        lambda: s if (s := setup.room(poison)).status is RoomStatus.FAILED else None,
        timeout_s=4 * (LEASE_S + SWEEP_S) + 15,
    )
    assert state.reason == "max recovery attempts exceeded"
    events = setup.events(poison)
    failed = types(events, EventType.ROOM_FAILED)
    assert len(failed) == 1 and failed[0].data == {
        "reason": "max recovery attempts exceeded",
        "recoveries": 3,
        "max_recoveries": 2,
    }
    assert len(types(events, EventType.ROOM_RESUMED)) == 2  # three runs died, the fourth failed it
    assert gapless(events) and setup.replayed(poison) == state
    for room in good:
        poll("the other rooms to complete", partial(completed, setup, room))
    assert a.poll() is None and b.poll() is None  # the workers lived through it
    logs = setup.output(a) + setup.output(b)
    assert f"room {poison} failed at 'crash': max recovery attempts exceeded" in logs


def test_sigterm_is_a_warm_shutdown_and_another_worker_finishes_the_room(
    setup: Setup, gate: Gate
) -> None:
    first = setup.worker()
    room = setup.run_detached(GATED, "--var", f"port:={gate.port}")
    _, horse = gate.first_call()
    assert parent_of(horse) == first.pid
    first.send_signal(signal.SIGTERM)
    poll(
        "the warm shutdown to reach the room",
        lambda: True if "warm shut down requested" in setup.output(first) else None,
    )
    gate.release()  # the step in progress finishes and is committed
    assert first.wait(timeout=30) == 0
    stopped = setup.room(room)
    assert stopped.status is RoomStatus.RUNNING and stopped.current_node == "after"
    assert f"room {room} stopped at 'after' (warm shutdown) (queued again)" in setup.output(first)
    second = setup.worker()
    state = poll(
        "the other worker to finish it",
        lambda: s if (s := setup.room(room)).status is RoomStatus.COMPLETED else None,
    )
    events = setup.events(room)
    assert [e.node for e in types(events, EventType.NODE_COMPLETED)] == ["call", "after"]
    assert len(gate.calls) == 1  # the tool's step was not run again
    # the next node was only entered: the new runner notes it takes over a released lease
    assert [e.data.get("previous_lease") for e in types(events, EventType.ROOM_RESUMED)] == [None]
    assert gapless(events) and setup.replayed(room) == state
    poll(
        "its log line",
        lambda: True if f"room {room} completed at 'done'" in setup.output(second) else None,
    )


def test_detached_run_input_resume_and_sweep_from_the_command_line(setup: Setup) -> None:
    room = setup.run_detached(ASK)
    assert setup.room(room).status is RoomStatus.QUEUED
    burst = setup.cli("worker", "--burst")
    assert burst.returncode == 0, burst.stderr
    assert f"room {room} waiting at 'approve' until its timeout" in burst.stdout + burst.stderr
    assert setup.room(room).status is RoomStatus.WAITING
    # its timeout's run is scheduled: sweeping now finds nothing due
    swept = setup.cli("sweep", "--json")
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout) == []
    given = setup.cli("input", room, "--data", '{"ok": true}', "--detach", "--json")
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout) == {"id": room, "status": "running"}
    recorded = setup.room(room)
    assert recorded.status is RoomStatus.RUNNING and recorded.current_node == "note"
    # queued once: the sweep sees it due (running, no lease) only once its job is lost
    burst = setup.cli("worker", "--burst")
    assert burst.returncode == 0, burst.stderr
    assert setup.room(room).status is RoomStatus.COMPLETED
    again = setup.cli("resume", room, "--detach")
    assert again.returncode == 2 and "already finished" in again.stderr
    # a created room: resume --detach queues it; sweep then finds it due but pending
    with open_runtime(f"sqlite:///{setup.db}") as rt:
        created = rt.create_room(rt.load_workflow(setup.tmp / "wf.yaml")).room_id
    resumed = setup.cli("resume", created, "--detach", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"id": created, "status": "queued"}
    swept = setup.cli("sweep", "--json")
    assert json.loads(swept.stdout) == [{"id": created, "why": "due", "queued": False}]
    # its job lost (the queue emptied): the sweep queues it again, once
    q = setup.queue()
    q.queue.empty()  # type: ignore[no-untyped-call]
    q.close()
    # (a marker whose job is not in Redis is its enqueuer's for 2 s: then it counts as lost)
    swept = poll("a sweep to queue it", lambda: r if (r := setup.cli("sweep")).stdout else None)
    assert swept.stdout == f"queued room {created} (due)\n"
    assert setup.cli("sweep").stdout == ""
    no_queue = setup.cli("input", room, "--data", "{}", "--detach", OPENROOMS_QUEUE_URL="")
    assert no_queue.returncode == 2 and "needs a job queue" in no_queue.stderr


def test_a_plain_rq_worker_runs_rooms_with_the_json_serializer(setup: Setup) -> None:
    rooms = [setup.run_detached(SHORT) for _ in range(2)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rq.cli",
            "worker",
            "-u",
            REDIS_URL,
            "--serializer",
            "rq.serializers.JSONSerializer",
            "--burst",
            setup.queue_name,
        ],
        env=setup.env(),
        cwd=setup.tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for room in rooms:
        assert setup.room(room).status is RoomStatus.COMPLETED
        assert f"room {room} completed at 'done'" in done.stderr
