"""What a durable tool step costs above the raw transaction, and where it goes.

    python bench/step_floor.py                 # 2,000 steps, best of 5, FULL
    python bench/step_floor.py --steps 1000 --repeat 8 --synchronous NORMAL

Four rows, run in turns (each round runs all four, best of the rounds kept), so all four see
the same load:

- ``raw``: bench/engine.py's raw transaction per step (BEGIN IMMEDIATE, one INSERT into
  events, one UPDATE of rooms, COMMIT), the rows of the sizes OpenRooms writes;
- ``memory://``: the no-op tool loop with no store IO (the Python a step needs);
- ``memory:// + raw``: that loop on a MemoryStore whose every commit also makes the raw
  transaction (a test device: a real store plus a real SQLite file): the least a durable
  step can cost, the Python of a step with the raw transaction's IO under it;
- ``sqlite://``: the loop on SQLiteStore.

Wall time and CPU time (process_time: all threads, kernel time included) per step. Where
CPU("memory:// + raw") exceeds CPU(raw) + CPU(memory://), the difference is the Python of
the step running slower between commits (the fsync's sleep and SQLite's own work leave the
caches cold): a cost the raw loop, with almost no Python, does not pay. On FULL the tool
step's target (1.3x raw) is below ``memory:// + raw`` on a small shared machine.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from engine import (
    noop_tools,
    raw_sqlite,
    row_sizes,
    run_openrooms_tools,
    run_rooms,
    step_by_hand,
    tool_loop_workflow,
)

from openrooms.backends import MemoryStore, SQLiteStore


class RawTxnMemoryStore(MemoryStore):
    """A MemoryStore whose every commit also makes the raw transaction of bench/engine.py
    on a real SQLite file: the Python of a step with the raw IO under it."""

    def __init__(self, path: Path, synchronous: str, state_row: str, event_row: str) -> None:
        super().__init__()
        self._raw = db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("CREATE TABLE rooms (id TEXT PRIMARY KEY, version INTEGER, body TEXT)")
        db.execute(
            "CREATE TABLE events (room_id TEXT, seq INTEGER, body TEXT, "
            "PRIMARY KEY (room_id, seq)) WITHOUT ROWID"
        )
        db.execute("INSERT INTO rooms VALUES ('r', 0, ?)", (state_row,))
        self._rows = (state_row, event_row)
        self._n = 0

    def commit(self, state: Any, events: Sequence[Any], **kwargs: Any) -> None:
        super().commit(state, events, **kwargs)
        db, i = self._raw, self._n
        self._n += 1
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events VALUES ('r', ?, ?)", (i + 1, self._rows[1]))
        db.execute(
            "UPDATE rooms SET version = ?, body = ? WHERE id = 'r' AND version = ?",
            (i + 1, self._rows[0], i),
        )
        db.execute("COMMIT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()
    steps, sync = args.steps, args.synchronous
    tools = noop_tools()
    wf = tool_loop_workflow(steps, tools)
    state_row, event_row, _ = row_sizes(wf, tools)
    folder = Path(tempfile.mkdtemp(prefix="openrooms-floor-"))
    counter = iter(range(10**6))

    def fresh(name: str) -> Path:
        return folder / f"{name}-{next(counter)}.db"

    cases: dict[str, Callable[[], object]] = {
        "raw": lambda: raw_sqlite(fresh("raw"), steps, sync, state_row, event_row),
        "by hand": lambda: step_by_hand(fresh("hand"), steps, sync),
        "memory://": lambda: run_openrooms_tools(MemoryStore(), wf, tools),
        "memory:// + raw": lambda: run_openrooms_tools(
            RawTxnMemoryStore(fresh("memraw"), sync, state_row, event_row), wf, tools
        ),
        "sqlite://": lambda: run_rooms(
            SQLiteStore(fresh("ours"), synchronous=sync.lower()), wf, 1, tools
        ),
    }
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], (time.perf_counter() - w) / steps * 1e6)
            cpu[name] = min(cpu[name], (time.process_time() - c) / steps * 1e6)
    print(f"{steps:,} no-op tool steps, synchronous={sync}, best of {args.repeat}, µs/step\n")
    print(f"{'':18s} {'wall':>7s} {'/raw':>6s} {'cpu':>7s} {'/raw':>6s}")
    for name in cases:
        w, c = wall[name], cpu[name]
        print(f"{name:18s} {w:7.0f} {w / wall['raw']:5.2f}x {c:7.0f} {c / cpu['raw']:5.2f}x")
    slow = cpu["memory:// + raw"] - cpu["raw"] - cpu["memory://"]
    print(
        f"\nsqlite:// over memory:// + raw: {wall['sqlite://'] - wall['memory:// + raw']:.0f} µs"
        f" wall, {cpu['sqlite://'] - cpu['memory:// + raw']:.0f} µs cpu (the store's own cost);"
        f"\nthe step's Python between commits, over the same on memory://: {slow:.0f} µs cpu"
    )


if __name__ == "__main__":
    main()
