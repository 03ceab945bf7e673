"""The RQ job queue and the job entry point in this process, on the real Redis (db 15, a
queue of its own per test): URLs, the per-room marker, the sweeper, and a room's run with
its next run queued. Workers as processes are in tests/e2e/test_rq_workers.py."""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from openrooms import RoomStatus, WorkflowBuilder, engine, open_runtime
from openrooms.backends import MemoryStore
from openrooms.backends.rq import DEFAULT_QUEUE, JOB_FUNCTION, RQJobQueue, parse_queue_url
from openrooms.errors import BackendConfigError
from openrooms.room import RoomState
from openrooms.sweeper import Swept, sweep
from openrooms.types import RoomId
from tests.conftest import REDIS_URL

redis = pytest.importorskip("redis")
rq = pytest.importorskip("rq")


@pytest.fixture
def queue() -> Iterator[RQJobQueue]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}); start redis-server")
    name = f"u-{uuid.uuid4().hex[:12]}"
    q = RQJobQueue(f"{REDIS_URL}?queue={name}")
    yield q
    from rq.registry import ScheduledJobRegistry

    scheduled = ScheduledJobRegistry(name, connection=q.redis).get_job_ids()  # type: ignore[no-untyped-call]
    for job_id in [*q.queue.get_job_ids(), *scheduled]:
        q.redis.delete(f"rq:job:{job_id}")
    for key in q.redis.scan_iter(match=f"*{name}*", count=1000):
        q.redis.delete(key)
    q.redis.srem("rq:queues", f"rq:queue:{name}")
    for key in q.redis.scan_iter(match="rq:job:*", count=1000):  # any left, by their queue
        if q.redis.hget(key, "origin") == name.encode():
            q.redis.delete(key)
    q.close()


@pytest.mark.parametrize(
    ("url", "redis_url", "name"),
    [
        ("rq://127.0.0.1:6379/0?queue=rooms", "redis://127.0.0.1:6379/0", "rooms"),
        ("redis://h:1/2", "redis://h:1/2", DEFAULT_QUEUE),
        (
            "rediss://u:p@h:6380/0?queue=a.b&ssl_cert_reqs=none",
            "rediss://u:p@h:6380/0?ssl_cert_reqs=none",
            "a.b",
        ),
    ],
)
def test_queue_urls_name_a_redis_server_and_a_queue(url: str, redis_url: str, name: str) -> None:
    assert parse_queue_url(url) == (redis_url, name)


@pytest.mark.parametrize(
    "url", ["sqlite:///x.db", "rq:///0", "rq://h:1/0?queue=", "rq://h:1/0?queue=a%20b"]
)
def test_a_bad_queue_url_says_what_one_looks_like(url: str) -> None:
    with pytest.raises(BackendConfigError):
        parse_queue_url(url)


def test_a_room_with_a_pending_job_gets_no_second_one(queue: RQJobQueue) -> None:
    room = RoomId("r.1:x")
    assert queue.enqueue(room) is True
    assert queue.enqueue(room) is False
    assert queue.enqueue(room, delay_s=60) is False  # a later run: the pending one comes first
    [job_id] = queue.queue.get_job_ids()
    job = rq.job.Job.fetch(job_id, connection=queue.redis, serializer=queue.queue.serializer)
    assert (job.func_name, list(job.args), job.result_ttl) == (JOB_FUNCTION, ["r.1:x"], 0)
    # JSON on the wire, never pickle
    stored = queue.redis.hget(f"rq:job:{job_id}", "data")
    assert isinstance(stored, bytes)
    data = zlib.decompress(stored)
    assert json.loads(data)[0] == JOB_FUNCTION  # JSON (RQ compresses it)
    queue.claim(room, job_id)  # the job starts: the room may be queued again
    assert queue.enqueue(room) is True
    assert len(queue) == 2


def test_an_earlier_run_is_queued_before_a_later_pending_one(queue: RQJobQueue) -> None:
    room = RoomId("r")
    assert queue.enqueue(room, delay_s=600) is True  # a wait's timeout
    assert len(queue) == 0  # scheduled, not queued
    assert queue.enqueue(room) is True  # input arrived: run it now
    assert queue.enqueue(room, delay_s=1) is False
    assert len(queue) == 1


def test_one_sweeper_a_turn(queue: RQJobQueue) -> None:
    assert queue.take_sweep_turn(10) is True
    assert queue.take_sweep_turn(10) is False


def started(store: MemoryStore, room_id: str) -> RoomState:
    wf = WorkflowBuilder("w").set("a", {"x": 1}).end("done").transition("a", "done").build()
    step = engine.create_room(wf, RoomId(room_id), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    run = engine.start(wf, step.state, now=1000)
    store.commit(run.state, run.events, expected_version=step.state.version)
    return run.state


def test_the_sweeper_queues_crashed_and_due_rooms_once(queue: RQJobQueue) -> None:
    store = MemoryStore()
    started(store, "crashed")
    store.acquire_lease(RoomId("crashed"), "dead", ttl_ms=100, now=1000)
    due = started(store, "due")
    store.replace(
        attrs.evolve(due, wake_at=1500, version=due.version + 1), expected_version=due.version
    )
    started(store, "fine")  # running, no timer, no lease: stopped on purpose, left alone
    found = sweep(store, queue, now=2000)
    assert found == [
        Swept(RoomId("crashed"), "lease expired", True),
        Swept(RoomId("due"), "due", True),
    ]
    assert [f.to_dict() for f in sweep(store, queue, now=2000)] == [
        {"id": "crashed", "why": "lease expired", "queued": False},
        {"id": "due", "why": "due", "queued": False},
    ]
    assert sweep(store, queue, now=1099) == []


def test_a_job_runs_its_room_and_queues_its_next_run(
    queue: RQJobQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openrooms import rq_jobs

    db = f"sqlite:///{tmp_path}/rooms.db"
    monkeypatch.setenv("OPENROOMS_DB", db)
    monkeypatch.setattr(rq_jobs, "_prepared", None)
    asks = (
        WorkflowBuilder("asks")
        .wait("ask", timeout_s=300)
        .end("done")
        .end("late")
        .transition("ask", "done")
        .transition("ask", "late", on="timeout")
    )
    with open_runtime(db) as rt:
        room = rt.enqueue(rt.create_room(asks).room_id).room_id
        done = rt.enqueue(
            rt.create_room(
                WorkflowBuilder("s").set("a", {"x": 1}).end("e").transition("a", "e")
            ).room_id
        ).room_id
    said = rq_jobs._run(room, queue)
    assert said == "waiting at 'ask' until its timeout (next run in 300 s)"
    assert queue.enqueue(RoomId(room), delay_s=400) is False  # its timeout's run is pending
    assert rq_jobs.run_room(done) == "completed at 'e'"  # outside a job: nothing queued
    assert rq_jobs.run_room("missing") == "not found"
    with open_runtime(db, read_only=True) as rt:
        assert rt.get_room(room).status is RoomStatus.WAITING
        assert rt.get_room(done).status is RoomStatus.COMPLETED


def test_when_a_room_needs_its_next_run() -> None:
    from openrooms.rq_jobs import next_run_in

    base = started(MemoryStore(), "r")

    def at(status: RoomStatus, wake_at: int | None) -> float | None:
        return next_run_in(attrs.evolve(base, status=status, wake_at=wake_at), now=1000)

    assert at(RoomStatus.COMPLETED, None) is None
    assert at(RoomStatus.WAITING, None) is None  # for input, no timeout
    assert at(RoomStatus.WAITING, 4000) == 3.0
    assert at(RoomStatus.RUNNING, 500) == 0.0  # a retry already due
    assert at(RoomStatus.RUNNING, None) == 0.0  # stopped by a warm shutdown
    assert at(RoomStatus.QUEUED, None) == 0.0


SHORT_YAML = """
id: short
nodes:
  one: {type: set, assign: {x: 1}}
  done: {type: end}
transitions:
  - {from: one, to: done}
"""


def test_run_detach_with_an_unreachable_queue_says_how_to_queue_the_room(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from openrooms.cli import cli

    (tmp_path / "short.yaml").write_text(SHORT_YAML)
    db = f"sqlite:///{tmp_path}/rooms.db"
    closed = socket_port()
    result = CliRunner().invoke(
        cli,
        [
            "--db",
            db,
            "--queue-url",
            f"rq://127.0.0.1:{closed}/0",
            "run",
            str(tmp_path / "short.yaml"),
            "--detach",
        ],
    )
    assert result.exit_code == 4, result.output
    assert "is saved (queued), but no job could be queued for it" in result.output
    with open_runtime(db, read_only=True) as rt:
        [room] = rt.list_rooms()
    assert room.status is RoomStatus.QUEUED  # recorded: the sweeper finds it once the queue is back
    assert f"resume {room.room_id} --detach" in result.output


def test_detached_input_needs_a_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from openrooms.cli import cli

    monkeypatch.delenv("OPENROOMS_QUEUE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(
        cli, ["--db", f"sqlite:///{tmp_path}/r.db", "input", "x", "--data", "{}", "--detach"]
    )
    assert result.exit_code == 2
    assert "input --detach needs a job queue" in result.output


def socket_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_burst_worker_runs_rooms_sweeps_and_queues_their_next_runs(
    queue: RQJobQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rq_jobs.work`` with a worker class that runs each job in this process (RQ's
    SimpleWorker way) instead of a forked horse: the rest is the real worker."""
    import signal

    from openrooms import rq_jobs

    class InProcessWorker(rq_jobs.OpenRoomsWorker):
        def execute_job(self, job: Any, queue: Any) -> None:
            self.prepare_job(job)
            execution = self.prepare_execution(job)
            self.perform_job(job, queue, execution)
            self.set_state("idle")

    db = f"sqlite:///{tmp_path}/rooms.db"
    monkeypatch.setenv("OPENROOMS_DB", db)
    monkeypatch.setattr(rq_jobs, "_prepared", None)
    asks = (
        WorkflowBuilder("asks")
        .wait("ask", timeout_s=300)
        .end("done")
        .end("late")
        .transition("ask", "done")
        .transition("ask", "late", on="timeout")
    )
    with open_runtime(db) as rt:
        waits = rt.enqueue(rt.create_room(asks).room_id).room_id
        lost = rt.enqueue(rt.create_room(asks).room_id).room_id  # queued, its job lost
    assert queue.enqueue(RoomId(waits)) is True
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ran = rq_jobs.work(queue.url, burst=True, sweep_every_s=0.05, worker_class=InProcessWorker)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert ran is True
    with open_runtime(db, read_only=True) as rt:
        assert rt.get_room(waits).status is RoomStatus.WAITING
        # the worker's first sweep found the lost room due and queued it; the burst ran it
        assert rt.get_room(lost).status is RoomStatus.WAITING
    # both timeouts' runs are scheduled: queueing them for later adds nothing
    assert queue.enqueue(RoomId(waits), delay_s=400) is False
    assert queue.enqueue(RoomId(lost), delay_s=400) is False
    assert rq_jobs._parent is None  # the worker closed its runtime


def test_an_offer_made_again_after_a_lost_answer_still_queues_its_job(queue: RQJobQueue) -> None:
    """redis-py retries a call whose answer timed out: the marker that call set names its
    own job, so the retry is told to queue it, and another caller is not."""
    key = queue.marker_key("r")
    args: list[str | int] = [0, "job-1", "rq:job:", 60_000, 2_000]
    assert queue._offer(keys=[key], args=args) == 1
    assert queue._offer(keys=[key], args=args) == 1  # the retry of that same call
    other: list[str | int] = [0, "job-2", "rq:job:", 60_000, 2_000]
    assert queue._offer(keys=[key], args=other) == 0


def test_a_worker_imports_httpx_before_its_horses_are_forked(tmp_path: Path) -> None:
    """Each horse would otherwise import httpx on its room's first http call (about 90 ms a
    job: 270 -> 190 ms for a room of two calls on Postgres)."""
    import subprocess
    import sys

    db = f"sqlite:///{tmp_path / 'w.db'}"
    code = (
        "import sys\n"
        "from openrooms import open_runtime\n"
        "from openrooms.rq_jobs import _warm_up\n"
        f"rt = open_runtime({db!r})\n"
        "assert 'httpx' not in sys.modules\n"
        "_warm_up(rt)\n"
        "print('httpx' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n"
