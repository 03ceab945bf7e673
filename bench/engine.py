"""Engine and durable-step overhead, against baselines measured in the same run.

    python bench/engine.py                 # 10,000 transitions per scenario, best of 3
    python bench/engine.py --transitions 30000 --repeat 5

Scenarios: a 3-node ``set`` loop (a -> b -> c -> a ...) run by OpenRooms on
``memory://`` and on ``sqlite://`` (synchronous FULL, the default, and NORMAL),
beside two baselines: a plain-Python loop doing the same variable updates, and the
raw cost of one SQLite transaction per step that inserts one event row and updates
one state row of the same size as OpenRooms writes. When the ``transitions`` package
is installed (it is in the ``dev`` extra), the same loop on it is a peer baseline.
This machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from openrooms import Runtime, Workflow, WorkflowBuilder, serde
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.backends.sqlite import _batch, _dumps


def loop_workflow(transitions: int) -> Workflow:
    """Three set nodes in a ring; each visit is one transition. ``vars.n`` counts them."""
    return (
        WorkflowBuilder(
            "bench_loop", variables={"n": 0, "a": 0, "b": 0}, max_steps=transitions + 10
        )
        .set("a", {"n": "{{ vars.n + 1 }}", "a": "{{ vars.a + 2 }}"})
        .set("b", {"n": "{{ vars.n + 1 }}", "b": "{{ vars.b + 3 }}"})
        .set("c", {"n": "{{ vars.n + 1 }}"})
        .end("done")
        .transition("a", "b")
        .transition("b", "c")
        .transition("c", "a", when=f"vars.n < {transitions}")
        .transition("c", "done")
        .build()
    )


def plain_python(transitions: int) -> dict[str, int]:
    """The same variable updates, in a bare loop over a dict."""
    v = {"n": 0, "a": 0, "b": 0}
    node = "a"
    while True:
        if node == "a":
            v = {**v, "n": v["n"] + 1, "a": v["a"] + 2}
            node = "b"
        elif node == "b":
            v = {**v, "n": v["n"] + 1, "b": v["b"] + 3}
            node = "c"
        else:
            v = {**v, "n": v["n"] + 1}
            if v["n"] < transitions:
                node = "a"
            else:
                return v


def run_openrooms(store: MemoryStore | SQLiteStore, wf: Workflow) -> tuple[int, dict[str, int]]:
    rt = Runtime(store, store)
    room = rt.create_room(wf)
    state = rt.run(room.id)
    assert state.status.value == "completed", state.reason
    return state.steps, dict(state.variables)


def raw_sqlite(path: Path, steps: int, synchronous: str, state_row: str, event_row: str) -> None:
    """One transaction per step: insert one event row, update one state row."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE rooms (id TEXT PRIMARY KEY, version INTEGER, body TEXT)")
    db.execute(
        "CREATE TABLE events (room_id TEXT, seq INTEGER, body TEXT, "
        "PRIMARY KEY (room_id, seq)) WITHOUT ROWID"
    )
    db.execute("INSERT INTO rooms VALUES ('r', 0, ?)", (state_row,))
    for i in range(steps):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO events VALUES ('r', ?, ?)", (i + 1, event_row))
        db.execute(
            "UPDATE rooms SET version = ?, body = ? WHERE id = 'r' AND version = ?",
            (i + 1, state_row, i),
        )
        db.execute("COMMIT")
    db.close()


def transitions_library(n: int) -> Callable[[], dict[str, int]] | None:
    """The same loop on the ``transitions`` package (``pip install transitions``), if present.

    The issue's scale: the fastest Python state-machine library measured here needed about
    23 µs per transition when the 15 µs target was set, so the target is ~0.65x of it.
    """
    try:
        from transitions import Machine  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None

    class Model:
        def __init__(self) -> None:
            self.v = {"n": 0, "a": 0, "b": 0}
            self.state = "start"

        def on_enter_a(self) -> None:
            self.v = {**self.v, "n": self.v["n"] + 1, "a": self.v["a"] + 2}

        def on_enter_b(self) -> None:
            self.v = {**self.v, "n": self.v["n"] + 1, "b": self.v["b"] + 3}

        def on_enter_c(self) -> None:
            self.v = {**self.v, "n": self.v["n"] + 1}

        def more(self) -> bool:
            return self.v["n"] < n

    def run() -> dict[str, int]:
        model = Model()
        machine = Machine(
            model, states=["start", "a", "b", "c", "done"], initial="start", auto_transitions=False
        )
        machine.add_transition("step", "start", "a")
        machine.add_transition("step", "a", "b")
        machine.add_transition("step", "b", "c")
        machine.add_transition("step", "c", "a", conditions="more")
        machine.add_transition("step", "c", "done")
        while model.state != "done":
            model.step()  # type: ignore[attr-defined]
        return model.v

    return run


def best(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of *repeat* runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def row_sizes(wf: Workflow) -> tuple[str, str]:
    """A state row and an events row of the sizes OpenRooms writes per step for this loop."""
    store = MemoryStore()
    rt = Runtime(store, store)
    room = rt.create_room(wf)
    state = rt.run(room.id)
    events = store.read(room.id)
    per_step = len(_batch(events)[3]) // max(1, state.steps)
    return "x" * len(_dumps(serde.state_to_dict(state))), "y" * per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.transitions, args.repeat
    wf = loop_workflow(n)
    steps, final = run_openrooms(MemoryStore(), wf)
    assert final == plain_python(n), (final, plain_python(n))
    state_row, event_row = row_sizes(wf)

    tmp = Path(tempfile.mkdtemp(prefix="openrooms-bench-"))
    counter = iter(range(10**6))

    def fresh(name: str) -> Path:
        return tmp / f"{name}-{next(counter)}.db"

    rows: list[tuple[str, float, str]] = []
    plain = best(repeat, lambda: plain_python(n))
    rows.append(("plain Python loop (baseline)", plain, ""))
    peer = transitions_library(n)
    peer_s = None
    if peer is not None:
        assert peer() == plain_python(n)
        peer_s = best(repeat, peer)
        rows.append(("`transitions` library, same loop (peer baseline)", peer_s, ""))
    mem = best(repeat, lambda: run_openrooms(MemoryStore(), wf))
    overhead_us = (mem - plain) / steps * 1e6
    note = f"{overhead_us:.1f} µs engine overhead/transition (target < 15"
    if peer_s is not None:
        note += f"; {(mem - plain) / (peer_s - plain):.2f}x the peer, target ~0.65x"
    rows.append(("openrooms memory://", mem, note + ")"))
    for sync in ("FULL", "NORMAL"):
        raw = best(repeat, lambda s=sync: raw_sqlite(fresh("raw"), steps, s, state_row, event_row))
        rows.append((f"raw SQLite txn/step, synchronous={sync} (baseline)", raw, ""))
        ours = best(
            repeat,
            lambda s=sync: run_openrooms(SQLiteStore(fresh("or"), synchronous=s.lower()), wf),
        )
        rows.append(
            (
                f"openrooms sqlite://, synchronous={sync}",
                ours,
                f"{ours / raw:.2f}x raw" + (" (target <= 1.5x)" if sync == "FULL" else ""),
            )
        )

    width = max(len(r[0]) for r in rows)
    print(
        f"\n{steps} transitions (3-node set loop), best of {repeat}; python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus\n"
    )
    print(f"{'scenario':<{width}}  {'total s':>8}  {'µs/transition':>13}  vs baseline")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 13}  {'-' * 11}")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / steps * 1e6:>13.1f}  {note}")
    print(
        f"\nrows written per step: state {len(state_row)} B, events {len(event_row)} B "
        f"(median of runs is noisier; best-of-{repeat} shown)"
    )


if __name__ == "__main__":
    main()
