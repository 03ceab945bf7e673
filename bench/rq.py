"""Rooms through RQ workers beside raw RQ no-op jobs, with the same worker class.

    python bench/rq.py                          # 300 jobs a row, best of 2 rounds
    python bench/rq.py --jobs 500 --rounds 3 --redis redis://127.0.0.1:6379/15

Rows, each with 1 and then 2 workers (``openrooms worker``: OpenRoomsWorker, a work horse
forked per job, as in production), run in turns within a round so they see the same load:

- ``raw no-op``: RQ jobs calling :func:`noop` (JSON serializer): RQ's own cost per job;
- ``1-node room``: rooms of one ``set`` node and an end, queued through
  :class:`~openrooms.backends.rq.RQJobQueue` (its marker), run by
  :func:`openrooms.rq_jobs.run_room` over a SQLite file (``synchronous=full``);
- ``10-node room``: nine ``calculator`` tool nodes and an end: nine durable steps a room.

The rate is measured in steady state: the workers are up before the jobs are queued, and
jobs/s counts the completions between the 10th and the 90th percentile of the row (from
RQ's per-worker ``successful_job_count``), so neither start-up nor the tail weighs in. The
target: 1-node rooms at no less than 70% of the raw no-op rate.

With ``--profile``, the 1-node row's horses write cProfile stats to a folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    sys.path.pop(0)  # this file is bench/rq.py: keep `import rq` for the real one
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def noop(room_id: str) -> None:
    """The raw job: RQ's cost without OpenRooms."""


def main() -> None:
    import argparse
    import os
    import statistics
    import subprocess
    import tempfile
    import time
    import uuid

    import redis
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    from openrooms import open_runtime
    from openrooms.backends.rq import RQJobQueue

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300, help="jobs (rooms) a row")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; best kept")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--synchronous", default="full", choices=["full", "normal"])
    args = parser.parse_args()

    conn = redis.Redis.from_url(args.redis)
    tmp = Path(tempfile.mkdtemp(prefix="openrooms-bench-rq-"))
    db_url = f"sqlite:///{tmp}/rooms.db?synchronous={args.synchronous}"
    (tmp / "one.yaml").write_text(
        "id: one\nnodes:\n  a: {type: set, assign: {x: 1}}\n  done: {type: end}\n"
        "transitions:\n  - {from: a, to: done}\n"
    )
    ten = ["id: ten", "nodes:"]
    ten += [
        f"  n{i}: {{type: tool, tool: calculator, args: {{expression: '{i} + 1'}}}}"
        for i in range(9)
    ]
    ten += ["  done: {type: end}", "transitions:"]
    ten += [f"  - {{from: n{i}, to: n{i + 1}}}" for i in range(8)] + ["  - {from: n8, to: done}"]
    (tmp / "ten.yaml").write_text("\n".join(ten) + "\n")

    def environment(queue_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
        env.update(
            PYTHONPATH=str(ROOT),
            OPENROOMS_DB=db_url,
            OPENROOMS_QUEUE_URL=queue_url,
            OPENROOMS_SWEEP_EVERY_S="60",
        )
        return env

    def run_row(kind: str, workers: int) -> float:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        queue_url = f"{args.redis}?queue={name}"
        logs = [tmp / f"{name}-{i}.log" for i in range(workers)]
        procs = []
        for log in logs:
            with log.open("w") as sink:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "openrooms.cli", "worker"],
                        env=environment(queue_url),
                        cwd=tmp,
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        q = Queue(name, connection=conn, serializer=JSONSerializer)
        try:
            deadline = time.monotonic() + 30
            while len(Worker.all(queue=q)) < workers:  # up and listening
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not start")
                time.sleep(0.05)
            rooms: list[str] = []
            if kind != "raw no-op":
                with open_runtime(db_url) as rt:
                    wf = rt.load_workflow(
                        tmp / ("one.yaml" if kind == "1-node room" else "ten.yaml")
                    )
                    for _ in range(args.jobs):
                        rooms.append(rt.enqueue(rt.create_room(wf).room_id).room_id)
            jobs = RQJobQueue(queue_url)
            if kind == "raw no-op":
                with conn.pipeline() as pipe:
                    for i in range(args.jobs):
                        q.enqueue("bench.rq.noop", args=(str(i),), result_ttl=0, pipeline=pipe)
                    pipe.execute()
            else:
                refused = [r for r in rooms if not jobs.enqueue(r)]  # type: ignore[arg-type]
                assert not refused, f"{kind}: rooms not queued: {refused}"
            done_at: list[float] = []
            deadline = time.monotonic() + 600
            while True:
                count = sum(w.successful_job_count for w in Worker.all(queue=q))
                now = time.perf_counter()
                done_at.extend([now] * (count - len(done_at)))
                if count >= args.jobs:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind}: only {count} of {args.jobs} jobs ran")
                time.sleep(0.005)
            if rooms:
                # RQ's maintenance may put a job back that a worker had just taken (it then
                # runs twice: the second run finds its room done), so the count can reach N
                # while a last room's job still waits; the rooms say when all are done
                left = ["?"]
                while left and time.monotonic() < deadline:
                    with open_runtime(db_url, read_only=True) as rt:
                        left = [
                            f"{r} {rt.get_room(r).status.value}"
                            for r in rooms
                            if rt.get_room(r).status.value != "completed"
                        ]
                    time.sleep(0.05)
                if left:
                    said = [
                        line
                        for log in logs
                        for line in log.read_text().splitlines()
                        if any(r.split()[0] in line for r in left)
                    ]
                    raise RuntimeError(
                        f"{kind}, {workers} workers: {left} did not complete:\n" + "\n".join(said)
                    )
            lo, hi = done_at[len(done_at) // 10], done_at[(len(done_at) * 9) // 10]
            n = (len(done_at) * 9) // 10 - len(done_at) // 10
            return n / (hi - lo)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            for key in conn.scan_iter(match=f"*{name}*", count=1000):
                conn.delete(key)
            conn.srem("rq:queues", f"rq:queue:{name}")
            for key in conn.scan_iter(match="rq:job:*", count=1000):  # a row that failed
                if conn.hget(key, "origin") == name.encode():
                    conn.delete(key)

    kinds = ["raw no-op", "1-node room", "10-node room"]
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for workers in (1, 2):
            for kind in kinds:
                rates.setdefault((kind, workers), []).append(run_row(kind, workers))
    print(
        f"{args.jobs} jobs a row, best of {args.rounds} rounds; SQLite synchronous="
        f"{args.synchronous}; {os.cpu_count()} CPUs"
    )
    print(f"{'row':<14} {'workers':>7} {'jobs/s':>8} {'vs raw':>7} {'spread':>8}")
    for workers in (1, 2):
        raw = max(rates[("raw no-op", workers)])
        for kind in kinds:
            found = rates[(kind, workers)]
            best = max(found)
            spread = statistics.pstdev(found) / statistics.mean(found) if len(found) > 1 else 0
            print(f"{kind:<14} {workers:>7} {best:>8.1f} {best / raw:>6.0%} {spread:>7.0%}")


if __name__ == "__main__":
    main()
