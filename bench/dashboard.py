"""What the dashboard asks of the server with 10,000 rooms, timed in-process through the ASGI
app (server time: no network, no browser), beside a raw query on the same data.

    python bench/dashboard.py                              # a fresh SQLite file
    python bench/dashboard.py --url 'redis://127.0.0.1:6379/15?prefix=bench-dash:'
    python bench/dashboard.py --url 'postgresql://postgres@127.0.0.1/test?schema=bench_dash'
    python bench/dashboard.py --rooms 100000 --repeat 10

The store is filled first (setup, not timed): *--rooms* rooms committed straight to the
store (state and first event each; six statuses, five workflows, 1% failed, a few created in
the same ms), and one room run to a log of *--events* events. A ``--url`` store must hold no
rooms (a fresh ``?schema=`` or ``?prefix=``); what the bench writes there is left in place.

Then each row is requested *--repeat* times through ``create_app`` (Starlette's TestClient,
lifespan and guards on; open, no API keys) and its median is printed, with its ratio to the
baseline row: on SQLite the raw ``SELECT ... ORDER BY created_at DESC, id DESC LIMIT 51``
the first page reads, on the other stores ``store.list_rooms(limit=51)``. The rows:

- ``GET /api/rooms``: the first page (50); ``... deep cursor``: the page after the 9,000th
  room, from its cursor; ``old deep page``: what that page cost before the store took a
  cursor (the route read a window of 9,051 rooms from the top and kept the last 51);
- ``... ?q=``: a search by workflow-id prefix; ``... ?status=failed``: the rare status;
- ``GET /api/room-counts`` (and with ``q``), ``GET /metrics`` (its rooms gauge counts them);
- ``GET /`` (the dashboard's rooms page: a page of 50 and the counts per status), with a
  search and the rare status, and ``GET /rooms/{id}`` of the room with the long log (its
  first events; the rest load on scroll): printed as skipped by an app without the
  dashboard. Target: the rooms page under 300 ms.

The machine is shared and noisy: read the ratios and the order of magnitude.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from starlette.testclient import TestClient

ROOT = Path(__file__).parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    sys.path.pop(0)  # bench/ holds redis.py and rq.py: keep `import redis` for the real one
sys.path.insert(0, str(ROOT))

from openrooms import engine  # noqa: E402 (after the path: run from a checkout)
from openrooms.backends import open_backend  # noqa: E402
from openrooms.room import RoomStatus  # noqa: E402
from openrooms.runtime import Runtime  # noqa: E402
from openrooms.types import RoomId  # noqa: E402
from openrooms.workflow import Workflow, WorkflowBuilder  # noqa: E402
from openrooms_server import Settings, create_app  # noqa: E402

TARGET_MS = 300.0
DEEP = 9000
WORKFLOWS = ("orders", "billing", "support", "ingest", "review")
STATUSES = (
    [RoomStatus.COMPLETED] * 55
    + [RoomStatus.WAITING] * 20
    + [RoomStatus.RUNNING] * 10
    + [RoomStatus.CREATED] * 8
    + [RoomStatus.QUEUED] * 3
    + [RoomStatus.CANCELLED] * 3
    + [RoomStatus.FAILED] * 1
)


def workflow(workflow_id: str) -> Workflow:
    return (
        WorkflowBuilder(workflow_id, variables={"i": 0, "n": 0})
        .set("step", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transition("step", "step", when="vars.i < vars.n")
        .transition("step", "done")
        .build()
    )


def fill(url: str, rooms: int, events: int) -> tuple[str, float]:
    """Commit *rooms* rooms straight to the store, and run one to *events* events. Returns
    that room's id and the seconds taken."""
    t0 = time.perf_counter()
    rng = random.Random(1)
    store: Any = open_backend(url)
    rt = Runtime(store, store)
    try:
        if store.list_rooms(limit=1):
            raise SystemExit(f"{url} holds rooms already: give a fresh ?schema= or ?prefix=")
        flows = {w: workflow(w) for w in WORKFLOWS}
        for wf in flows.values():
            rt.register_workflow(wf)
        now = 1_780_000_000_000
        for n in range(rooms):
            wf = flows[WORKFLOWS[n % len(WORKFLOWS)]]
            now += rng.choice((0, 1, 1, 2, 5))  # some rooms share a ms: cursors meet ties
            step = engine.create_room(wf, RoomId(f"{wf.id}-{n:06d}"), now=now)
            state = attrs.evolve(step.state, status=rng.choice(STATUSES))
            store.commit(state, step.events, expected_version=None)
        # the room with a long log: about 3 events a step, and the room's 2 of its own
        steps = max(1, -(-(events - 4) // 3))
        big = rt.create_room(flows["orders"], {"n": steps}, room_id="big-log")
        rt.run(big.id)
        return big.id, time.perf_counter() - t0
    finally:
        rt.close()


def median_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm: caches, prepared statements, the connection
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def cursor(created_at: int, room_id: str) -> str:
    """As the API writes ``next`` (openrooms_server.routes._cursor_text)."""
    return base64.urlsafe_b64encode(f"{created_at}:{room_id}".encode()).decode().rstrip("=")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a store URL (default: a fresh SQLite file)")
    p.add_argument("--rooms", type=int, default=10_000)
    p.add_argument("--events", type=int, default=5_000)
    p.add_argument("--repeat", type=int, default=30)
    a = p.parse_args()
    path = None
    url = a.url
    if url is None:
        path = Path(tempfile.mkdtemp(prefix="bench-dashboard-")) / "rooms.db"
        url = f"sqlite:///{path}"
    # setup only: a commit need not reach the disk to be timed later
    big, took = fill(f"{url}?synchronous=off" if path else url, a.rooms, a.events)
    print(f"{url}: {a.rooms:,} rooms and a {a.events:,}-event log filled in {took:.1f} s")

    rows: dict[str, float | None] = {}
    with TestClient(create_app(Settings(db=url, env={}))) as client:
        rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]

        def get(path_query: str) -> Callable[[], object]:
            def call() -> object:
                r = client.get(path_query)
                if r.status_code != 200:
                    raise SystemExit(f"GET {path_query}: {r.status_code} {r.text[:300]}")
                return r

            return call

        if path is not None:
            raw = sqlite3.connect(path)  # closed with the process
            sql = (
                "SELECT id, body, variables, memory, usage, visits FROM rooms "
                "ORDER BY created_at DESC, id DESC LIMIT 51"
            )
            rows["baseline: raw SELECT ... LIMIT 51"] = median_ms(
                lambda: raw.execute(sql).fetchall(), a.repeat
            )
        else:
            rows["baseline: store.list_rooms(limit=51)"] = median_ms(
                lambda: rt.states.list_rooms(limit=51), a.repeat
            )
        deep = rt.list_rooms(limit=DEEP)[-1]
        rows["GET /api/rooms"] = median_ms(get("/api/rooms"), a.repeat)
        deep_page = f"/api/rooms?cursor={cursor(deep.created_at, deep.room_id)}"
        rows[f"GET /api/rooms deep cursor ({DEEP:,})"] = median_ms(get(deep_page), a.repeat)
        rows[f"old deep page (window of {DEEP + 51:,})"] = median_ms(
            lambda: rt.list_rooms(limit=DEEP + 51), max(3, a.repeat // 10)
        )
        rows["GET /api/rooms?q=bill"] = median_ms(get("/api/rooms?q=bill"), a.repeat)
        rows["GET /api/rooms?status=failed"] = median_ms(get("/api/rooms?status=failed"), a.repeat)
        rows["GET /api/room-counts"] = median_ms(get("/api/room-counts"), a.repeat)
        rows["GET /api/room-counts?q=bill"] = median_ms(get("/api/room-counts?q=bill"), a.repeat)
        rows["GET /metrics"] = median_ms(get("/metrics"), a.repeat)
        # the dashboard's pages (openrooms_server/dashboard); skipped, never failed, by an
        # app that does not serve them (a tree without the dashboard)
        pages = (
            ("GET / (rooms page)", "/"),
            ("GET /?q=bill", "/?q=bill"),
            ("GET /?status=failed", "/?status=failed"),
            ("GET /rooms/{id} (5,000 events)", f"/rooms/{big}"),
        )
        for name, page in pages:
            served = client.get(page, headers={"accept": "text/html"})
            ok = served.status_code == 200 and "html" in served.headers.get("content-type", "")
            rows[name] = median_ms(get(page), a.repeat) if ok else None
        log_seq = rt.log.last_seq(RoomId(big))

    if path is not None:
        shutil.rmtree(path.parent)
    base = next(iter(rows.values()))
    assert base is not None
    print(f"median of {a.repeat} requests per row; the room with the long log has {log_seq:,}")
    print(f"{'row':<42} {'median ms':>10} {'vs baseline':>12}")
    for name, ms in rows.items():
        if ms is None:
            print(f"{name:<42} {'skipped: not served (no dashboard in this tree)':>10}")
        else:
            print(f"{name:<42} {ms:>10.2f} {ms / base:>11.1f}x")
    page = rows["GET / (rooms page)"]
    if page is not None:
        verdict = "meets" if page < TARGET_MS else "misses"
        print(f"rooms page: {page:.1f} ms server time: {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
