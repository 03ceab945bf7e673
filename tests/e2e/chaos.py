"""Fault scenarios on the production backends, shared by tests/e2e/test_faults.py (one short
trial each, in the normal suite) and ``nox -s chaos`` (``python -m tests.e2e.chaos``: many
trials, a table of trials, failures and recovery times).

Everything is real: ``openrooms worker`` processes (RQ; each in a session of its own, and a
signal goes to every process of that session by its PID: the worker, its work horse, which
RQ puts in a process group of its own, and RQ's scheduler), Postgres and Redis, and the
loopback HTTP service of :mod:`tests.e2e.chaos_kit` that the rooms' ``http`` tool calls.
Each scenario runs one trial and returns its recovery time in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from openrooms import EventType, RoomStatus, engine
from openrooms.backends.rq import RQJobQueue
from openrooms.errors import BackendUnavailableError
from openrooms.types import RoomId
from tests.e2e.chaos_kit import (
    LEASE_S,
    MARGIN_S,
    PAID,
    POISON,
    SWEEP_S,
    ApplyService,
    Cluster,
    PrivatePostgres,
    PrivateRedis,
    Unavailable,
    check_paid_room,
    of,
    poll,
)

# -- the scenarios: each runs one trial and returns its recovery time (s) or None -----------

KILL_POINTS = ("before", "during", "after", "commit")
"""Where a worker is killed in the ``pay`` step of a PAID room: ``before`` its request is
applied (held on arrival), ``during`` it (applied, its answer held), ``after`` it (a seeded
random delay of 0-20 ms after the answer: in the tool's return, the commit or the next
node), or ``commit``: inside the step's commit (the log table locked by the test, the
worker's insert waiting on the lock; on Postgres), its statement then dropped by the server
(``pg_terminate_backend``) or run once the lock is let go, by a seeded coin."""


@contextlib.contextmanager
def events_locked(cluster: Cluster) -> Iterator[Callable[[], int | None]]:
    """Lock the cluster's events table (inserts wait; reads go on); yields a probe for the
    pid of a Postgres backend waiting on that lock."""
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(cluster.pg_server.split("?", 1)[0])
    try:
        conn.execute(
            sql.SQL("LOCK TABLE {}.events IN EXCLUSIVE MODE").format(sql.Identifier(cluster.schema))
        )
        me = conn.info.backend_pid

        def blocked() -> int | None:
            with psycopg.connect(cluster.pg_server.split("?", 1)[0], autocommit=True) as other:
                row = other.execute(
                    "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (me,),
                ).fetchone()
            return None if row is None else int(row[0])

        yield blocked
    finally:
        conn.rollback()
        conn.close()


COMMITS_AFTER_DEATH = {True: 0, False: 0}
"""Kills inside a commit by whether the dead worker's step was committed after all (its
statement was in the server's hands) or not (the next runner ran the step again)."""

POINT_NAMES = {
    "before": "before a tool call",
    "during": "during a tool call",
    "after": "after a tool call",
    "commit": "inside a commit",
}


def terminate_backend(cluster: Cluster, pid: int) -> None:
    import psycopg

    with psycopg.connect(cluster.pg_server.split("?", 1)[0], autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def kill_trial(
    cluster: Cluster, service: ApplyService, point: str, rng: random.Random
) -> float | None:
    """Run one PAID room on the cluster's workers (two at least), SIGKILL the worker that holds
    it at *point*, start a replacement, and check the room completes with the invariants.

    Returns:
        Seconds from the kill to the room's next runner noting ``ROOM_RESUMED`` (expired), or
        None if the room had finished before the kill landed (``after`` only).
    """
    victim: list[subprocess.Popen[bytes]] = []
    room_box: list[RoomId] = []
    killed_at: list[float] = []

    def kill_holder() -> None:
        proc = poll("the room's holder", lambda: cluster.holder(room_box[0]), 10)
        victim.append(proc)
        cluster.kill(proc)
        killed_at.append(time.monotonic())

    if point in ("before", "during"):
        service.hold_next(apply_first=point == "during")
        room = cluster.create(PAID, port=service.port)
        room_box.append(room)
        service.held()
        kill_holder()
        service.release()
    elif point == "after":
        delay = rng.uniform(0, 0.02)
        fired = threading.Event()

        def after(key: str) -> None:
            if room_box and key.startswith(f"{room_box[0]}:pay:") and not fired.is_set():
                fired.set()
                proc = cluster.holder(room_box[0])
                time.sleep(delay)  # the seeded kill point (not synchronisation)
                if proc is not None:
                    victim.append(proc)
                    cluster.kill(proc)
                    killed_at.append(time.monotonic())

        service.on_answered = after
        try:
            room_box.append(cluster.create(PAID, port=service.port))
            room = room_box[0]
            poll("the kill", lambda: True if fired.is_set() and (victim or killed_at or
                 cluster.finished(room)) else None)  # fmt: skip
            poll("the kill", lambda: True if killed_at or not victim else None, 10)
        finally:
            service.on_answered = None
        if not killed_at:
            cluster.worker()  # keep the count; nothing to recover
            cluster.wait_finished([room], 30)
            check_paid_room(cluster, service, room)
            return None
    elif point == "commit":
        service.hold_next(apply_first=True)
        room = cluster.create(PAID, port=service.port)
        room_box.append(room)
        service.held()
        with events_locked(cluster) as blocked:
            service.release()  # the answer goes back; the step's commit waits on the lock
            backend = poll("the commit to wait on the lock", blocked, 20)
            kill_holder()
            if rng.random() < 0.5:  # the server drops the dead worker's statement, or runs it
                terminate_backend(cluster, backend)
    else:
        raise ValueError(point)
    room = room_box[0]
    cutoff = len(cluster.events(room))

    def resumed() -> float | None:
        events = cluster.events(room)
        if any(
            e.type is EventType.ROOM_RESUMED and e.data.get("previous_lease") == "expired"
            for e in events[cutoff - 1 :]
        ):
            return time.monotonic() - killed_at[0]
        return None

    took = poll("another worker to resume the room", resumed, LEASE_S + SWEEP_S + MARGIN_S + 20)
    cluster.worker()  # a replacement, for the next trial
    cluster.wait_finished([room], 30)
    events = check_paid_room(cluster, service, room)
    if point == "commit":  # did the killed worker's step commit once the lock was let go?
        resumed_at = next(e.seq for e in events if e.type is EventType.ROOM_RESUMED)
        paid = next(e.seq for e in of(events, EventType.NODE_COMPLETED) if e.node == "pay")
        COMMITS_AFTER_DEATH[paid < resumed_at] += 1
    assert took < LEASE_S + SWEEP_S + MARGIN_S, f"recovered in {took:.2f} s"
    return took


def resumed_since(cluster: Cluster, room: str, cutoff: int, since: float) -> float | None:
    """Seconds from *since* if a ``ROOM_RESUMED`` (expired) follows event *cutoff*, else None."""
    if any(
        e.type is EventType.ROOM_RESUMED and e.data.get("previous_lease") == "expired"
        for e in cluster.events(room)[cutoff:]
    ):
        return time.monotonic() - since
    return None


def stop_trial(cluster: Cluster, service: ApplyService) -> float:
    """SIGSTOP the worker whose horse is in a PAID room's ``pay`` call until its lease has
    expired by the store's clock, let another worker take the room over and finish it, then
    SIGCONT it and answer its call: its commit and renewals are refused, it stops (its log
    says so), and the room's log is exactly as the other worker left it.

    Returns:
        Seconds from the SIGSTOP to the other worker's ``ROOM_RESUMED`` (expired).
    """
    service.hold_next(apply_first=False)
    room = cluster.create(PAID, port=service.port)
    first = service.held()
    proc = poll("the room's holder", lambda: cluster.holder(room), 10)
    cluster.kill(proc, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        cutoff = len(cluster.events(room))
        states = cluster.rt.states
        clock: Callable[[], int] = states.clock_ms  # type: ignore[attr-defined]

        def expired() -> bool | None:
            lease = states.find_lease(RoomId(room))
            return True if lease is None or lease.expires_at < clock() else None

        poll("the stopped worker's lease to expire", expired, LEASE_S + 10)
        took = poll(
            "another worker to take the room over",
            lambda: resumed_since(cluster, room, cutoff, stopped_at),
            LEASE_S + SWEEP_S + MARGIN_S + 20,
        )
        cluster.wait_finished([room], 30)
        after_takeover = cluster.events(room)
        state = cluster.room(room)
    finally:
        cluster.kill(proc, signal.SIGCONT)
    service.release()  # its call returns: the commit that follows must be refused
    poll(
        "the thawed worker to give the room up",
        lambda: (
            True if f"room {room} stopped: its lease was lost" in cluster.output(proc) else None
        ),
    )
    assert proc.poll() is None, "the thawed worker died"
    assert cluster.events(room) == after_takeover, "the thawed worker wrote to the log"
    assert cluster.room(room) == state
    events = check_paid_room(cluster, service, room)
    resumed = of(events, EventType.ROOM_RESUMED)
    assert [e.data.get("previous_lease") for e in resumed] == ["expired"]
    # the takeover re-ran the same attempt (the same key); the thawed call was a repeat
    assert service.repeats.get(first.key) == 1, service.repeats
    assert took < LEASE_S + SWEEP_S + MARGIN_S, f"taken over in {took:.2f} s"
    return took


def queued_ten_times_trial(cluster: Cluster, service: ApplyService, workers: int) -> float:
    """Queue one PAID room ten times (one job through the queue's marker, nine straight into
    RQ past it) with *workers* workers running: one ``ROOM_STARTED``, one runner (every other
    job leaves the room alone), each step's call made once.

    Returns:
        Seconds from the queueing to the room's completion.
    """
    from openrooms.backends.rq import JOB_FUNCTION

    assert len(cluster.live_workers()) >= workers
    service.hold_next(apply_first=False)
    started = time.monotonic()
    room = cluster.create(PAID, queue=False, port=service.port)
    with contextlib.closing(RQJobQueue(cluster.queue_url)) as q:
        # one job (ours, or the sweeper's if it saw the queued room first); no second
        assert True not in [q.enqueue(room) for _ in range(10)][1:]
        for _ in range(9):
            q.queue.enqueue(JOB_FUNCTION, args=(room,), result_ttl=0, job_timeout=-1)
    service.held()
    poll(
        "the nine other jobs to leave the room alone",
        lambda: True if cluster.output().count(f"room {room} left alone") >= 9 else None,
    )
    service.release()
    cluster.wait_finished([room], 30)
    took = time.monotonic() - started
    events = check_paid_room(cluster, service, room)
    assert len(of(events, EventType.ROOM_STARTED)) == 1
    assert not of(events, EventType.ROOM_RESUMED)
    assert not [k for k in service.repeats if k.startswith(f"{room}:")], service.repeats
    return took


def poison_trial(cluster: Cluster, service: ApplyService, good: int = 3) -> float:
    """A room whose tool kills its process every time, beside *good* PAID rooms: it fails
    with "max recovery attempts exceeded" after the cap (the cluster's workers run with
    ``OPENROOMS_MAX_RECOVERIES``), the others complete, and the workers live on.

    Returns:
        Seconds from queueing to the poison room's failure.
    """
    cap = int(cluster.extra_env.get("OPENROOMS_MAX_RECOVERIES", "3"))
    started = time.monotonic()
    poison = cluster.create(POISON)
    rooms = [cluster.create(PAID, port=service.port) for _ in range(good)]
    state = poll(
        "the poison room to fail",
        lambda: cluster.finished(poison),
        (cap + 2) * (LEASE_S + SWEEP_S + MARGIN_S) + 10,
    )
    took = time.monotonic() - started
    assert state.status is RoomStatus.FAILED, state.status
    assert state.reason == "max recovery attempts exceeded", state.reason
    events = cluster.events(poison)
    failed = of(events, EventType.ROOM_FAILED)
    assert len(failed) == 1 and failed[0].data == {
        "reason": "max recovery attempts exceeded",
        "recoveries": cap + 1,
        "max_recoveries": cap,
    }, failed
    assert len(of(events, EventType.ROOM_RESUMED)) == cap
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert engine.fold(events) == state
    cluster.wait_finished(rooms, 60)
    for room in rooms:
        check_paid_room(cluster, service, room)
    assert all(p.poll() is None for p, _ in cluster.procs), "a worker died"
    return took


def many_rooms_trial(
    cluster: Cluster, service: ApplyService, rooms: int, rng: random.Random, kill: bool = True
) -> float:
    """*rooms* PAID rooms across the cluster's workers; with *kill*, one worker busy with a
    room is SIGKILLed when about half have finished (and replaced). All complete with the
    invariants of :func:`check_paid_room`.

    Returns:
        Seconds from the first queueing to the last completion.
    """
    started = time.monotonic()
    made = [cluster.create(PAID, port=service.port) for _ in range(rooms)]
    if kill:
        poll(
            "half the rooms to finish",
            lambda: True if sum(cluster.finished(r) is not None for r in made) >= rooms // 2
            else None,
            timeout_s=rooms,
        )  # fmt: skip
        busy = [r for r in made if cluster.finished(r) is None]
        victim = next((h for r in rng.sample(busy, len(busy)) if (h := cluster.holder(r))), None)
        if victim is not None:
            cluster.kill(victim)
            cluster.worker()
    cluster.wait_finished(made, timeout_s=rooms + 30)
    took = time.monotonic() - started
    for room in made:
        check_paid_room(cluster, service, room)
    return took


def restart_trial(
    cluster: Cluster,
    service: ApplyService,
    server: PrivateRedis | PrivatePostgres,
    down_s: float = 0.0,
) -> float:
    """Restart *server* (the cluster's queue Redis, or its Postgres) while a PAID room's
    ``pay`` call is in flight, and create three more rooms while the queue is down (or once
    Postgres is back): the workers reconnect, and every room completes with the invariants.

    *down_s*: how long the server stays down (the outage's length, a parameter of the
    scenario: the workers' calls fail meanwhile, their leases expire).

    Returns:
        Seconds from the server being back to the last room's completion.
    """
    cluster.wait_ready()
    service.hold_next(apply_first=True)
    first = cluster.create(PAID, port=service.port)
    service.held()
    server.stop()
    rooms = [first]
    if isinstance(server, PrivateRedis):
        for _ in range(3):  # recorded while the queue is down: the sweeper queues them later
            rooms.append(cluster.create(PAID, queue=False, port=service.port))
            with contextlib.closing(RQJobQueue(cluster.queue_url)) as q:
                try:
                    q.enqueue(rooms[-1])
                except BackendUnavailableError:
                    pass
                else:
                    raise AssertionError("a job was queued on a stopped Redis")
    server.start()
    back = time.monotonic()
    # the test's own pool meets its dropped connections on a read (which is made again); a
    # write on one fails rather than be made twice (it may have committed)
    cluster.rt.states.find(first)
    rooms += [cluster.create(PAID, port=service.port) for _ in range(4 - len(rooms))]
    service.release()
    cluster.wait_finished(rooms, timeout_s=LEASE_S + SWEEP_S + MARGIN_S + 60)
    took = time.monotonic() - back
    for room in rooms:
        check_paid_room(cluster, service, room)
    assert all(p.poll() is None for p, _ in cluster.procs), "a worker died"
    return took


def lost_state_trial(cluster: Cluster, service: ApplyService, server: PrivateRedis) -> float:
    """Split layout, Redis state and queue on *server* (no persistence), the log in Postgres:
    restart it while a PAID room's ``pay`` call is in flight. Its state, lease, due-room
    index and job are gone, so no sweeper can find it (a documented limit: docs/backends.md);
    named again (``openrooms resume ROOM --detach``), it is rebuilt from the log and
    completes with the invariants, its step not repeated. (Its runner, answered after the
    restart, may rebuild and finish it first; then ``resume`` says it already finished.)

    Returns:
        Seconds from the restart to the room's completion.
    """
    assert cluster.layout == "split" and cluster.redis_server == server.url
    cluster.wait_ready()
    service.hold_next(apply_first=True)
    room = cluster.create(PAID, port=service.port)
    held = service.held()
    server.restart()
    back = time.monotonic()
    service.release()
    resumed = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "resume", room, "--detach"],
        env=cluster.env(),
        cwd=cluster.tmp,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # (its runner may have rebuilt it from the log and finished it first: fine too)
    done_first = resumed.returncode == 2 and "already finished" in resumed.stderr
    assert resumed.returncode == 0 or done_first, resumed.stderr
    cluster.wait_finished([room], LEASE_S + SWEEP_S + MARGIN_S + 20)
    took = time.monotonic() - back
    events = check_paid_room(cluster, service, room)
    assert [e.node for e in of(events, EventType.TOOL_CALLED)] == ["pay", "ship"]
    assert service.applications[held.key] == 1
    return took


class Tally:
    """One scenario's row of the table: trials, failures (with their first lines), times."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.trials = 0
        self.failures: list[str] = []
        self.times: list[float] = []

    def row(self) -> tuple[str, str, str, str, str]:
        p50, worst = summary(self.times)
        return (self.name, str(self.trials), str(len(self.failures)), p50, worst)


def summary(times: list[float]) -> tuple[str, str]:
    if not times:
        return "-", "-"
    return f"{statistics.median(times):.2f}", f"{max(times):.2f}"


def _trials(
    tally: Tally, trials: int, start: Callable[[], Cluster], one: Callable[[Cluster], float | None]
) -> None:
    """Run *one* *trials* times on a cluster from *start*; a failed trial is counted and the
    cluster replaced (it may hold a stopped worker or a held call)."""
    cluster: Cluster | None = None
    try:
        for _ in range(trials):
            if cluster is None:
                cluster = start()
            tally.trials += 1
            try:
                took = one(cluster)
            except Exception as exc:  # a failed trial: counted, and reported below the table
                tally.failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                cluster.close()
                cluster = None
            else:
                if took is not None:
                    tally.times.append(took)
            print(
                f"  {tally.name}: {tally.trials} trials, {len(tally.failures)} failed", flush=True
            )
    finally:
        if cluster is not None:
            cluster.close()


def run(trials: int, seed: int, rooms: int, only: str | None = None) -> int:
    """Run every scenario *trials* times (the many-rooms run once per 10 trials, at least
    once) and print the table; returns 1 if any trial failed."""
    import tempfile

    rng = random.Random(seed)
    tallies: list[Tally] = []
    base = Path(tempfile.mkdtemp(prefix="openrooms-chaos-"))
    service = ApplyService()

    def start(workers: int = 2, **kwargs: str) -> Callable[[], Cluster]:
        def make() -> Cluster:
            folder = Path(tempfile.mkdtemp(dir=base))
            cluster = Cluster(folder, **kwargs)
            for _ in range(workers):
                cluster.worker()
            return cluster

        return make

    def scenario(name: str) -> Tally | None:
        if only is not None and only not in name:
            return None
        tally = Tally(name)
        tallies.append(tally)
        print(name, flush=True)
        return tally

    try:
        for layout in ("postgres", "split"):
            for point in KILL_POINTS:
                if t := scenario(f"SIGKILL {POINT_NAMES[point]} ({layout})"):
                    _trials(
                        t, trials, start(layout=layout),
                        lambda c, p=point: kill_trial(c, service, p, rng),  # type: ignore[misc]
                    )  # fmt: skip
        if t := scenario("SIGSTOP past the lease (postgres)"):
            _trials(t, trials, start(), lambda c: stop_trial(c, service))
        for kind, down in ((PrivateRedis, 0.0), (PrivatePostgres, 0.0), (PrivatePostgres, 5.0)):
            name = "Redis" if kind is PrivateRedis else "Postgres"
            label = f", down {down:g} s" if down else ""
            if t := scenario(f"restart {name} (private server{label})"):
                try:
                    server = kind()
                except Unavailable as exc:
                    t.failures.append(f"no private server: {exc}")
                    continue
                try:
                    make = (
                        start(redis=server.url) if name == "Redis" else start(postgres=server.url)
                    )
                    _trials(
                        t,
                        trials,
                        make,
                        lambda c, s=server, d=down: restart_trial(c, service, s, d),  # type: ignore[misc]
                    )
                finally:
                    server.close()
        if t := scenario("restart Redis holding split state"):
            try:
                redis = PrivateRedis()
            except Unavailable as exc:
                t.failures.append(f"no private server: {exc}")
            else:
                try:
                    _trials(
                        t,
                        trials,
                        start(layout="split", redis=redis.url),
                        lambda c: lost_state_trial(c, service, redis),
                    )
                finally:
                    redis.close()
        if t := scenario("one room queued 10x, 4 workers"):
            _trials(t, trials, start(4), lambda c: queued_ten_times_trial(c, service, 4))
        if t := scenario("poison room, cap 2"):
            _trials(
                t, trials, start(OPENROOMS_MAX_RECOVERIES="2"), lambda c: poison_trial(c, service)
            )
        if t := scenario(f"{rooms} rooms, 2 workers, 1 killed"):
            _trials(
                t,
                max(1, trials // 10),
                start(),
                lambda c: many_rooms_trial(c, service, rooms, rng),
            )
    finally:
        service.close()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    head = ("scenario", "trials", "failures", "recovery p50 (s)", "max (s)")
    rows = [head] + [t.row() for t in tallies]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print()
    print(
        "recovery: a kill or stop to the next runner's ROOM_RESUMED (lease "
        f"{LEASE_S:g} s, sweep {SWEEP_S:g} s); a restart: the server back to the last room "
        "done (split state: the restart to done); queued 10x: queued to done; poison: "
        "queued to failed; many rooms: all done"
    )
    landed, lost = COMMITS_AFTER_DEATH[True], COMMITS_AFTER_DEATH[False]
    if landed + lost:
        print(
            f"killed inside a commit: the dead worker's step committed anyway in {landed}, "
            f"was run again by the next runner in {lost}"
        )
    for t in tallies:
        for failure in t.failures:
            print(f"FAILED {t.name}: {failure}")
    return 1 if any(t.failures for t in tallies) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fault scenarios on Postgres, Redis and RQ.")
    parser.add_argument("--trials", type=int, default=10, help="trials per scenario")
    parser.add_argument("--seed", type=int, default=8, help="seeds the kill points")
    parser.add_argument("--rooms", type=int, default=200, help="rooms of the many-rooms run")
    parser.add_argument("-k", dest="only", help="only the scenarios whose name has this")
    args = parser.parse_args(argv)
    return run(args.trials, args.seed, args.rooms, args.only)


if __name__ == "__main__":
    sys.exit(main())
