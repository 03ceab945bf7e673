"""Engine and durable-step overhead, against baselines measured in the same run.

    python bench/engine.py                 # 10,000 transitions per scenario, best of 3
    python bench/engine.py --transitions 30000 --repeat 5

Scenarios, with the targets of issue #7 printed beside their ratios:

- a 3-node ``set`` loop (a -> b -> c -> a ...) run by OpenRooms on ``memory://``, against
  the same loop on the ``transitions`` package (the peer; in the ``dev`` extra) and a
  plain-Python loop; run alternately, best of each, so both see the same load;
- the same loop on ``sqlite://`` (FULL and NORMAL), beside one raw SQLite transaction per
  step (one event row, one state row of the sizes OpenRooms writes per step): OpenRooms
  commits chains of pure nodes in batches, so this row shows what batching saves;
- a durable step that must commit: a loop through a no-op ``tool`` node, against the raw
  transaction of the same shape (one event row + one state update), FULL and NORMAL, with
  the floors under it: the same step written by hand (await, four events and the state as
  JSON, one transaction; no engine), the same loop on ``memory://``, and the bare awaited
  call. On NORMAL the step by hand alone is about 1.26x raw: the 1.3x target leaves an
  engine about a microsecond;
- that tool loop at 1,000 / 10,000 / 50,000 steps side by side (flat per-step cost: the
  run timed, the file and the room made before);
- 1,000 rooms of 5 steps on FULL, against one raw transaction per room creation and per
  step, with the write transactions OpenRooms made per room.

This machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrooms import Runtime, Workflow, WorkflowBuilder
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.events import Event, EventType, Level
from openrooms.tools import ToolRegistry, default_tools, tool
from openrooms.types import RoomId


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


def run_and_read(store: MemoryStore, wf: Workflow) -> int:
    """:func:`run_openrooms`, then every event of the room read back from the store."""
    rt = Runtime(store, store)
    room = rt.create_room(wf)
    rt.run(room.id)
    return len(store.read(room.id))


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


def events_by_hand(transitions: int) -> list[Event]:
    """The loop's floor for any engine that logs it: the same variable updates as
    :func:`plain_python`, plus the three events OpenRooms logs per transition (NODE_STARTED,
    NODE_COMPLETED with the assignments, TRANSITION), made with ``Event.make`` and kept, as a
    store keeps them; no expression language, no checks, no state object."""
    room, now, info, debug = RoomId("r"), 0, Level.INFO, Level.DEBUG
    started, completed, moved = (
        EventType.NODE_STARTED,
        EventType.NODE_COMPLETED,
        EventType.TRANSITION,
    )
    make = Event.make
    events: list[Event] = []
    append = events.append
    v = {"n": 0, "a": 0, "b": 0}
    visits = {"a": 0, "b": 0, "c": 0}
    node, seq = "a", 0
    while True:
        visits[node] += 1
        seq += 1
        append(make(room, seq, started, info, now, node, {"attempt": 1, "visit": visits[node]}))
        if node == "a":
            assign = {"n": v["n"] + 1, "a": v["a"] + 2}
            nxt = "b"
        elif node == "b":
            assign = {"n": v["n"] + 1, "b": v["b"] + 3}
            nxt = "c"
        else:
            assign = {"n": v["n"] + 1}
            nxt = "a" if assign["n"] < transitions else "done"
        v.update(assign)
        seq += 1
        data = {"outcome": "ok", "assign": assign}
        append(make(room, seq, completed, info, now, node, data, None, 0.0))
        seq += 1
        route = {"from": node, "to": nxt, "on": "ok", "index": 0}
        append(make(room, seq, moved, debug, now, node, route))
        if nxt == "done":
            return events
        node = nxt


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


def tool_loop_workflow(steps: int, tools: ToolRegistry) -> Workflow:
    """A loop through one no-op ``tool`` node: every step is IO, so every step must commit."""
    return (
        WorkflowBuilder("bench_tool_loop", max_steps=steps + 10)
        .tool("t", "noop")
        .end("done")
        .transition("t", "t", when=f"room.steps < {steps}")
        .transition("t", "done")
        .build(tools=tools)
    )


def noop_tools() -> ToolRegistry:
    """The default tools plus ``noop``, an async tool that does nothing."""
    tools = default_tools.copy()

    async def noop() -> None:
        """Do nothing."""

    tool(registry=tools)(noop)
    return tools


def short_room_workflow() -> Workflow:
    """A room of 5 node steps: four ``set`` nodes and an ``end``."""
    b = WorkflowBuilder("bench_short", variables={"n": 0})
    for name in "abcd":
        b.set(name, {"n": "{{ vars.n + 1 }}"})
    return b.end("done").transitions(("a", "b"), ("b", "c"), ("c", "d"), ("d", "done")).build()


class CountingSQLiteStore(SQLiteStore):
    """SQLiteStore counting its write transactions (``BEGIN IMMEDIATE``), to print them: on
    its connections, so that none of its methods is changed."""

    writes = 0

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db.set_trace_callback(self._count)

    def _nowait_connection(self) -> sqlite3.Connection:
        db = super()._nowait_connection()
        db.set_trace_callback(self._count)
        return db

    @staticmethod
    def _count(sql: str) -> None:
        if sql.startswith("BEGIN IMMEDIATE"):
            CountingSQLiteStore.writes += 1


def run_rooms(
    store: SQLiteStore, wf: Workflow, rooms: int, tools: ToolRegistry | None = None
) -> None:
    rt = Runtime(store, store, tools=tools)
    for _ in range(rooms):
        room = rt.create_room(wf)
        state = rt.run(room.id)
        assert state.status.value == "completed", state.reason
    rt.close()


def run_steps(path: Path, wf: Workflow, tools: ToolRegistry) -> float:
    """Seconds to run one room of *wf* to its end on a new SQLite file (NORMAL): the steps
    only, the file, its schema and the room made before the clock starts (a cost per room,
    not per step, that would weigh on a short room's figure)."""
    store = SQLiteStore(path, synchronous="normal")
    rt = Runtime(store, store, tools=tools)
    room = rt.create_room(wf)
    started = time.perf_counter()
    state = rt.run(room.id)
    seconds = time.perf_counter() - started
    assert state.status.value == "completed", state.reason
    rt.close()
    return seconds


def run_openrooms_tools(store: MemoryStore, wf: Workflow, tools: ToolRegistry) -> None:
    rt = Runtime(store, store, tools=tools)
    state = rt.run(rt.create_room(wf).id)
    assert state.status.value == "completed", state.reason


async def _awaits(count: int) -> None:
    async def noop() -> None:
        """Do nothing."""

    for _ in range(count):
        await noop()


def raw_rooms(
    path: Path, rooms: int, steps: int, synchronous: str, state_row: str, event_row: str
) -> None:
    """Per room: one transaction creating it (state row + first event row), then one per step."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE rooms (id TEXT PRIMARY KEY, version INTEGER, body TEXT)")
    db.execute(
        "CREATE TABLE events (room_id TEXT, seq INTEGER, body TEXT, "
        "PRIMARY KEY (room_id, seq)) WITHOUT ROWID"
    )
    for r in range(rooms):
        rid = f"room{r:06d}"
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO rooms VALUES (?, 0, ?)", (rid, state_row))
        db.execute("INSERT INTO events VALUES (?, 0, ?)", (rid, event_row))
        db.execute("COMMIT")
        for i in range(steps):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (rid, i + 1, event_row))
            db.execute(
                "UPDATE rooms SET version = ?, body = ? WHERE id = ? AND version = ?",
                (i + 1, state_row, rid, i),
            )
            db.execute("COMMIT")
    db.close()


def step_by_hand(path: Path, steps: int, synchronous: str) -> None:
    """A durable tool step written by hand, the least any engine that logs this loop does:
    await the no-op call, make the step's four events (TOOL_CALLED, NODE_COMPLETED,
    TRANSITION, NODE_STARTED) and the room's new state, encode both as JSON and commit them
    in one transaction (one events row, one rooms row). No expressions, no checks, no
    retries, no lease: a floor, not an engine."""
    import json

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE rooms (id TEXT PRIMARY KEY, version INTEGER, body TEXT)")
    db.execute(
        "CREATE TABLE events (room_id TEXT, first_seq INTEGER, last_seq INTEGER, body TEXT, "
        "PRIMARY KEY (room_id, first_seq)) WITHOUT ROWID"
    )
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    state: dict[str, Any] = {
        "id": "r",
        "status": "running",
        "current_node": "t",
        "version": 1,
        "steps": 1,
        "visits": {"t": 1},
        "usage": {"tool_calls": 0},
        "variables": {},
    }
    db.execute("INSERT INTO rooms VALUES ('r', 1, ?)", (dumps(state),))

    async def noop() -> None:
        """Do nothing."""

    async def loop() -> None:
        for _ in range(steps):
            started = time.perf_counter()
            await noop()
            ms = (time.perf_counter() - started) * 1000
            seq, visit, now = state["version"], state["visits"]["t"], int(time.time() * 1000)
            key = f"r:t:{visit}:1"
            call = {"tool": "noop", "args": {}, "idempotency_key": key, "result": None}
            events = [
                [seq + 1, "TOOL_CALLED", "INFO", now, "t", call, None, ms],
                [seq + 2, "NODE_COMPLETED", "INFO", now, "t", {"outcome": "ok"}, None, ms],
                [seq + 3, "TRANSITION", "DEBUG", now, "t", {"from": "t", "to": "t"}, None, None],
                [seq + 4, "NODE_STARTED", "INFO", now, "t", {"attempt": 1, "visit": visit + 1}],
            ]
            state["version"] = seq + 4
            state["steps"] += 1
            state["visits"] = {"t": visit + 1}
            state["usage"] = {"tool_calls": state["usage"]["tool_calls"] + 1}
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO events VALUES ('r', ?, ?, ?)", (seq + 1, seq + 4, dumps(events))
            )
            db.execute(
                "UPDATE rooms SET version = ?, body = ? WHERE id = 'r' AND version = ?",
                (seq + 4, dumps(state), seq),
            )
            db.execute("COMMIT")

    asyncio.run(loop())
    db.close()


def best(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of *repeat* runs, in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def best_in_turns(repeat: int, *fns: Callable[[], object]) -> list[float]:
    """The fastest of *repeat* runs of each of *fns*, run in turns (one of each per round),
    in seconds: a burst of load falls on all of them alike."""
    times = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            times[i] = min(times[i], time.perf_counter() - started)
    return times


def row_sizes(
    wf: Workflow, tools: ToolRegistry | None = None, per: str = "commit"
) -> tuple[str, str, int]:
    """A state row and an events row of the sizes OpenRooms writes for *wf* per commit (or
    per node step, *per* = ``"step"``), and its commits per node step."""
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "sizes.db")
        rt = Runtime(store, store, tools=tools)
        room = rt.create_room(wf)
        state = rt.run(room.id)
        rows = store._db.execute(
            "SELECT COUNT(*), SUM(LENGTH(body)) FROM events WHERE room_id = ?", (room.id,)
        ).fetchone()
        body = store._db.execute("SELECT body FROM rooms WHERE id = ?", (room.id,)).fetchone()[0]
        store.close()
    commits = max(1, rows[0] - 1)  # the creation's row aside
    per_commit = rows[1] // rows[0] if per == "commit" else rows[1] // max(1, state.steps)
    return "x" * len(body), "y" * per_commit, round(commits / max(1, state.steps))


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rooms", type=int, default=1_000)
    parser.add_argument(
        "--growth", default="1000,10000,50000", help="room sizes (steps) for the flatness check"
    )
    args = parser.parse_args()
    n, repeat = args.transitions, args.repeat
    wf = loop_workflow(n)
    steps, final = run_openrooms(MemoryStore(), wf)
    assert final == plain_python(n), (final, plain_python(n))
    # the raw baseline commits every step; its event row holds one step's events
    state_row, event_row, _ = row_sizes(wf, per="step")

    tmp = Path(tempfile.mkdtemp(prefix="openrooms-bench-"))
    counter = iter(range(10**6))

    def fresh(name: str) -> Path:
        return tmp / f"{name}-{next(counter)}.db"

    rows: list[tuple[str, float, str]] = []
    targets: list[tuple[str, str, bool]] = []
    plain = best(repeat, lambda: plain_python(n))
    rows.append(("plain Python loop (baseline)", plain, ""))
    peer = transitions_library(n)
    peer_s = None
    # the peer and ours alternate, best of each: the two see the same load
    mem = float("inf")
    if peer is not None:
        assert peer() == plain_python(n)
        peer_s = float("inf")
        for _ in range(repeat):
            peer_s = min(peer_s, best(1, peer))
            mem = min(mem, best(1, lambda: run_openrooms(MemoryStore(), wf)))
        rows.append(("`transitions` library, same loop (peer baseline)", peer_s, ""))
    else:
        mem = best(repeat, lambda: run_openrooms(MemoryStore(), wf))
    note = f"{(mem - plain) / steps * 1e6:.1f} µs engine overhead/transition"
    if peer_s is not None:
        ratio = mem / peer_s
        note += f"; {ratio:.2f}x the peer (target <= 0.3x)"
        targets.append(("in-memory vs `transitions`", f"{ratio:.2f}x <= 0.3x", ratio <= 0.3))
    by_hand = best(repeat, lambda: events_by_hand(n))
    floor_note = "the loop and its 3 Event objects/transition, by hand"
    if peer_s is not None:
        floor_note += f"; {by_hand / peer_s:.2f}x the peer"
    rows.append(("hand-written loop making the same events", by_hand, floor_note))
    rows.append(("openrooms memory:// (set loop)", mem, note))
    # the store keeps a chain's events compact until its log is read (EventBatch): what
    # reading every event back costs on top
    read_back = best(repeat, lambda: run_and_read(MemoryStore(), wf))
    read_note = "every event made and read back after the run"
    if peer_s is not None:
        read_note += f"; {read_back / peer_s:.2f}x the peer"
    rows.append(("openrooms memory://, then reading its log", read_back, read_note))
    for sync in ("FULL", "NORMAL"):
        raw = best(repeat, lambda s=sync: raw_sqlite(fresh("raw"), steps, s, state_row, event_row))
        rows.append((f"raw SQLite txn/step, synchronous={sync} (baseline)", raw, ""))
        ours = best(
            repeat,
            lambda s=sync: run_openrooms(SQLiteStore(fresh("or"), synchronous=s.lower()), wf),
        )
        rows.append(
            (
                f"openrooms sqlite:// (set loop, batched), synchronous={sync}",
                ours,
                f"{ours / raw:.2f}x raw txn/step",
            )
        )

    # a durable step: a loop through a no-op tool node commits every step
    tools = noop_tools()
    tool_steps = max(1, n // 5)
    twf = tool_loop_workflow(tool_steps, tools)
    t_state, t_event, t_commits = row_sizes(twf, tools)
    tool_rows: list[tuple[str, float, str]] = []
    for sync in ("FULL", "NORMAL"):
        # in turns, round after round (best of each kept): all three see the same load
        raw, hand, ours = best_in_turns(
            repeat,
            lambda s=sync: raw_sqlite(fresh("raw"), tool_steps, s, t_state, t_event),
            lambda s=sync: step_by_hand(fresh("hand"), tool_steps, s),
            lambda s=sync: run_rooms(
                SQLiteStore(fresh("tool"), synchronous=s.lower()), twf, 1, tools
            ),
        )
        ratio = ours / raw
        tool_rows.append((f"raw SQLite txn/step, synchronous={sync} (baseline)", raw, ""))
        tool_rows.append(
            (
                f"  the same step by hand, synchronous={sync}",
                hand,
                f"{hand / raw:.2f}x raw: no engine, just its JSON and SQL (a floor)",
            )
        )
        tool_rows.append(
            (
                f"openrooms no-op tool loop, synchronous={sync}",
                ours,
                f"{ratio:.2f}x raw (target <= 1.3x); {t_commits} commits/step",
            )
        )
        targets.append(
            (
                f"tool step vs raw txn, {sync}",
                f"{ratio:.2f}x <= 1.3x (by hand {hand / raw:.2f}x)",
                ratio <= 1.3,
            )
        )
    # the floor under it: the same loop with no store IO at all, and the bare awaited call
    floor = best(repeat, lambda: run_openrooms_tools(MemoryStore(), twf, tools))
    tool_rows.append(("openrooms no-op tool loop, memory:// (no IO: the Python floor)", floor, ""))
    bare = best(repeat, lambda: asyncio.run(_awaits(tool_steps)))
    tool_rows.append(("`await noop()` alone, same count (the call's own floor)", bare, ""))

    # flat per-step cost as the room's history grows (tool loop, NORMAL)
    sizes = [int(x) for x in args.growth.split(",")]
    per_step = [float("inf")] * len(sizes)
    for _ in range(max(1, min(repeat, 2))):  # the sizes alternate, so they share the load
        for i, size in enumerate(sizes):
            seconds = run_steps(fresh("grow"), tool_loop_workflow(size, tools), tools)
            per_step[i] = min(per_step[i], seconds / size * 1e6)
    spread = max(per_step) / min(per_step) - 1
    targets.append(
        (
            "per-step cost at " + " / ".join(f"{s:,}" for s in sizes),
            f"{spread:.0%} < 20%",
            spread < 0.2,
        )
    )

    # many short rooms on FULL: ours against one raw transaction per creation and per step
    short = short_room_workflow()
    s_state, s_event, _ = row_sizes(short)
    rooms = args.rooms
    raw_r = best(repeat, lambda: raw_rooms(fresh("rawrooms"), rooms, 5, "FULL", s_state, s_event))
    CountingSQLiteStore.writes = 0
    ours_r = best(repeat, lambda: run_rooms(CountingSQLiteStore(fresh("rooms")), short, rooms))
    writes = CountingSQLiteStore.writes / repeat / rooms
    ratio_r = ours_r / raw_r
    targets.append((f"{rooms:,} rooms of 5 steps, FULL", f"{ratio_r:.2f}x <= 1.3x", ratio_r <= 1.3))

    width = max(len(r[0]) for r in rows + tool_rows)
    print(
        f"\n{steps} transitions (3-node set loop), best of {repeat}; python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus\n"
    )
    print(f"{'scenario':<{width}}  {'total s':>8}  {'µs/transition':>13}  vs baseline")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 13}  {'-' * 11}")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / steps * 1e6:>13.1f}  {note}")
    print(
        f"\nrows written per step (raw baseline): state {len(state_row)} B, "
        f"events {len(event_row)} B "
        f"(best-of-{repeat} shown)"
    )
    print(f"\n{tool_steps} steps through a no-op tool node (every step commits)\n")
    print(f"{'scenario':<{width}}  {'total s':>8}  {'µs/step':>13}  vs baseline")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 13}  {'-' * 11}")
    for name, seconds, note in tool_rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / tool_steps * 1e6:>13.1f}  {note}")
    print(f"rows written per commit: state {len(t_state)} B, events {len(t_event)} B")
    print("\nper-step cost as the room grows (tool loop, synchronous=NORMAL):")
    print(
        "  "
        + "   ".join(f"{s:>7,} steps: {us:7.1f} µs" for s, us in zip(sizes, per_step, strict=True))
    )
    print(
        f"\n{rooms:,} rooms of 5 steps, synchronous=FULL: raw {raw_r / rooms * 1e6:.0f} µs/room "
        f"(6 transactions), openrooms {ours_r / rooms * 1e6:.0f} µs/room "
        f"({writes:.1f} write transactions)"
    )
    print("\ntargets (issue #7):")
    for name, value, ok in targets:
        print(f"  {name:<44} {value:<16} {verdict(ok)}")


if __name__ == "__main__":
    main()
