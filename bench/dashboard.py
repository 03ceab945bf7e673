"""The dashboard's pages over a big store, beside the API answers they build on, same run.

    python bench/dashboard.py                  # 10,000 rooms, a 5,000-event room, best of 5
    python bench/dashboard.py --rooms 2000 --events 1000 --repeat 3

One SQLite file is filled through the library (``--rooms`` rooms of a one-node workflow,
and one room whose log has about ``--events`` events: a loop of ``set`` and ``decision``
nodes), then the app is driven in this process through Starlette's TestClient, so a row's
time is the server's time for the request (no network). Rows, best of ``--repeat``:

- ``GET /api/rooms?limit=50``: the API's first page of rooms (the baseline);
- ``GET /``: the rooms list (first page of 50, the counts per status; issue #10's target:
  under 300 ms with 10,000 rooms);
- ``GET /?q=PREFIX`` and ``GET /?status=completed``: a search and a filter;
- ``GET /api/rooms/{id}``: the long room as JSON;
- ``GET /rooms/{id}``: its page (graph, the first 200 events; the rest load on scroll).

The machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from openrooms import open_runtime  # noqa: E402
from openrooms_server import Settings, create_app  # noqa: E402

TARGET_MS = 300.0
ONE_NODE = {"id": "one", "nodes": {"done": {"type": "end"}}}


def loop(times: int) -> dict[str, object]:
    return {
        "id": "loop",
        "max_steps": 2 * times + 10,
        "variables": {"i": 0},
        "nodes": {
            "inc": {"type": "set", "assign": {"i": "{{ vars.i + 1 }}"}},
            "check": {"type": "decision"},
            "done": {"type": "end"},
        },
        "transitions": [
            {"from": "inc", "to": "check"},
            {"from": "check", "to": "inc", "when": f"vars.i < {times}"},
            {"from": "check", "to": "done"},
        ],
    }


def fill(db: Path, rooms: int, events: int) -> str:
    """The store: *rooms* rooms (a third run to completion), and the long room's id."""
    from openrooms.workflow import Workflow

    with open_runtime(f"sqlite:///{db}") as rt:
        one = rt.register_workflow(Workflow.from_dict(ONE_NODE))
        for i in range(rooms):
            state = rt.create_room(one)
            if i % 3 == 0:
                rt.run(state.room_id)
        long = rt.create_room(Workflow.from_dict(loop(max(1, events // 6))))
        rt.run(long.room_id)
        return long.room_id


def best(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The best and the median time of *call*, in ms."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "rooms.db"
        t0 = time.perf_counter()
        long_id = fill(db, args.rooms, args.events)
        print(f"filled {args.rooms} rooms in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        settings = Settings(db=f"sqlite:///{db}", env={})
        with TestClient(create_app(settings)) as client:
            n_events = len(client.app.state.runtime.events(long_id))  # type: ignore[attr-defined]
            prefix = long_id[:6]

            def get(path: str) -> Callable[[], object]:
                def call() -> object:
                    r = client.get(path)
                    assert r.status_code == 200, (path, r.status_code, r.text[:300])
                    return r

                return call

            rows = [
                ("GET /api/rooms?limit=50", get("/api/rooms?limit=50")),
                ("GET /  (rooms list)", get("/")),
                (f"GET /?q={prefix}", get(f"/?q={prefix}")),
                ("GET /?status=completed", get("/?status=completed")),
                ("GET /api/rooms/{long}", get(f"/api/rooms/{long_id}")),
                ("GET /rooms/{long}  (page)", get(f"/rooms/{long_id}")),
            ]
            for _, call in rows:  # warm up
                call()
            results = [(name, *best(call, args.repeat)) for name, call in rows]
    base = results[0][1]
    print(f"\n{args.rooms} rooms; the long room has {n_events} events; best of {args.repeat}\n")
    print(f"{'request':<28} {'best ms':>9} {'median ms':>10} {'vs API page':>12}")
    for name, low, mid in results:
        print(f"{name:<28} {low:>9.1f} {mid:>10.1f} {low / base:>11.1f}x")
    rooms_list = results[1][1]
    verdict = "meets" if rooms_list < TARGET_MS else "misses"
    print(f"\nthe rooms list {verdict} the {TARGET_MS:.0f} ms target ({rooms_list:.0f} ms)")


if __name__ == "__main__":
    main()
