"""Two OS processes on one SQLite file: many rooms at once, and a race for the same room.

Processes are started together through a barrier (each prints ``ready`` and waits for a
line on its standard input) and are held mid-node the same way; nothing waits on a timer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from openrooms import EventType, RoomStatus, Runtime, load_workflow, open_runtime, replay

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
SAVINGS = ROOT / "examples" / "savings_loop.yaml"

# Creates and runs rooms ("create"), or runs rooms someone else created ("run"), after a barrier.
WORKER = r"""
import json, sys
from openrooms import RoomLeasedError, load_workflow, open_runtime

db, mode, payload = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
rt = open_runtime(db)
print("ready", flush=True)
sys.stdin.readline()
out = {"ran": [], "leased": []}
if mode == "create":
    wf = load_workflow(payload["workflow"])
    for variables in payload["rooms"]:
        room = rt.create_room(wf, variables)
        rt.run(room.id)
        out["ran"].append(room.id)
else:
    for room_id in payload["rooms"]:
        try:
            rt.run(room_id)
        except RoomLeasedError:
            out["leased"].append(room_id)
        else:
            out["ran"].append(room_id)
rt.close()
print(json.dumps(out), flush=True)
"""

# Runs a one-node room whose tool reports the key it got, then (in "block" mode) waits for a
# line on stdin before returning: the room is held mid-node for as long as the test needs.
GATED = r"""
import json, sys
from openrooms import ToolContext, WorkflowBuilder, open_runtime, tool

db, mode, room_id, force = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "force"

@tool(name="gate")
def gate(ctx: ToolContext) -> str:
    print("entered " + ctx.idempotency_key, flush=True)
    if mode == "block":
        sys.stdin.readline()
    return ctx.idempotency_key

wf = (WorkflowBuilder("gated").tool("pass", "gate", output="key").end("done")
      .transition("pass", "done").build())
rt = open_runtime(db)
if room_id == "new":
    room_id = rt.create_room(wf).id
    print("room " + room_id, flush=True)
print("owner " + rt.owner, flush=True)
try:
    state = rt.run(room_id, force=force)
except Exception as exc:
    print("error " + type(exc).__name__ + ": " + str(exc), flush=True)
else:
    print("final " + json.dumps({"status": state.status.value, "vars": dict(state.variables)}))
rt.close()
"""


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def read_line(proc: subprocess.Popen[str], prefix: str) -> str:
    """The next line of *proc*'s output, which must start with *prefix* (blocks until it comes)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        rest, err = proc.communicate(timeout=60)
        pytest.fail(f"expected {prefix!r}, got {line!r}{rest!r}\n{err}")
    return line[len(prefix) :].strip()


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return out


def together(*procs: subprocess.Popen[str]) -> list[str]:
    """Start *procs* at the same moment (all ready first) and return their outputs."""
    try:
        for p in procs:
            read_line(p, "ready")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return [finish(p) for p in procs]
    finally:  # a failure above must not leave the other process (and its pipes) behind
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def savings(balance: float, rate: float, target: float, max_years: int) -> dict[str, Any]:
    """examples/savings_loop.yaml, computed in Python."""
    history, year = [], 0
    while True:
        history.append(balance)
        year += 1
        balance = round(balance * (1 + rate), 2)
        if balance >= target or year >= max_years:
            return {"balance": balance, "year": year, "history": history}


def variables_for(process: int, count: int) -> list[dict[str, Any]]:
    return [
        {"balance": 1000 + 10 * i, "rate": 0.05 + 0.01 * ((process * count + i) % 7)}
        for i in range(count)
    ]


def check_room(rt: Runtime, room_id: str) -> None:
    """Completed once, gapless log, each committed node completion exactly once per visit."""
    state = rt.get_room(room_id)
    log = rt.events(room_id)
    assert [e.seq for e in log] == list(range(1, len(log) + 1)), room_id
    assert replay(log) == state
    types = Counter(e.type for e in log)
    assert types[EventType.ROOM_STARTED] == 1
    assert types[EventType.ROOM_COMPLETED] == 1
    # every visit of a node but the end one completed exactly once (an end node only ends)
    completed = Counter(e.node for e in log if e.type is EventType.NODE_COMPLETED)
    assert completed == {n: v for n, v in state.visits.items() if n != state.current_node}
    assert state.current_node is not None and state.visits[state.current_node] == 1


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


ROOMS_EACH = 15


def test_two_processes_create_and_run_rooms_on_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    db = f"sqlite:///{path}"
    plans = [variables_for(p, ROOMS_EACH) for p in (0, 1)]
    procs = [
        python(WORKER, db, "create", json.dumps({"workflow": str(SAVINGS), "rooms": plan}))
        for plan in plans
    ]
    outputs = [json.loads(out.strip().splitlines()[-1]) for out in together(*procs)]

    defaults = dict(load_workflow(SAVINGS).variables)
    with open_runtime(db) as rt:
        assert len(rt.list_rooms(limit=1000)) == 2 * ROOMS_EACH
        assert [w.id for w in rt.list_workflows()] == ["savings_loop"]  # registered once
        for plan, out in zip(plans, outputs, strict=True):
            assert len(out["ran"]) == ROOMS_EACH
            for variables, room_id in zip(plan, out["ran"], strict=True):
                state = rt.get_room(room_id)
                assert state.status is RoomStatus.COMPLETED, state.reason
                v = {**defaults, **variables}
                expected = savings(v["balance"], v["rate"], v["target"], v["max_years"])
                assert {k: state.variables[k] for k in expected} == expected
                check_room(rt, room_id)
    assert integrity(path) == "ok"


def test_two_processes_racing_through_the_same_rooms_run_each_exactly_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "race.db"
    db = f"sqlite:///{path}"
    plan = variables_for(0, 2 * ROOMS_EACH)
    with open_runtime(db) as rt:
        wf = load_workflow(SAVINGS)
        ids = [rt.create_room(wf, variables).id for variables in plan]
    # the second starts halfway: both run rooms at the same time, then each reaches the
    # rooms the other one has run, or is running
    half = len(ids) // 2
    orders = [ids, ids[half:] + ids[:half]]
    outputs = [
        json.loads(out.strip().splitlines()[-1])
        for out in together(*(python(WORKER, db, "run", json.dumps({"rooms": o})) for o in orders))
    ]

    for room_id in ids:
        # a process that was refused a room saw the other one holding it
        assert any(room_id in out["ran"] for out in outputs), room_id
    with open_runtime(db) as rt:
        defaults = dict(wf.variables)
        for variables, room_id in zip(plan, ids, strict=True):
            state = rt.get_room(room_id)
            assert state.status is RoomStatus.COMPLETED, state.reason
            v = {**defaults, **variables}
            assert (
                state.variables["balance"]
                == savings(v["balance"], v["rate"], v["target"], v["max_years"])["balance"]
            )
            check_room(rt, room_id)
            assert EventType.ROOM_RESUMED not in {e.type for e in rt.events(room_id)}
    assert integrity(path) == "ok"


def events_of(db: str, room_id: str) -> list[Any]:
    with open_runtime(db) as rt:
        return rt.events(room_id)


def test_a_second_process_is_refused_a_room_another_one_is_running(tmp_path: Path) -> None:
    path = tmp_path / "lease.db"
    db = f"sqlite:///{path}"
    holder = python(GATED, db, "block", "new", "-")
    room_id = read_line(holder, "room ")
    holder_owner = read_line(holder, "owner ")
    key = read_line(holder, "entered ")  # the holder is inside the tool, under its lease
    before = events_of(db, room_id)

    other = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "resume", room_id],
        env={**os.environ, "OPENROOMS_DB": db},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert other.returncode == 4, other.stderr  # not done now: another runner holds it
    assert f"room {room_id!r} is being run by {holder_owner!r}" in other.stderr
    assert "Traceback" not in other.stderr
    assert events_of(db, room_id) == before  # the refused process wrote nothing

    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    out = finish(holder)
    final = json.loads(out.strip().splitlines()[-1].removeprefix("final "))
    assert final == {"status": "completed", "vars": {"key": key}}

    with open_runtime(db) as rt:
        log = rt.events(room_id)
        types = Counter(e.type for e in log)
        assert types[EventType.NODE_COMPLETED] == 1
        assert types[EventType.TOOL_CALLED] == 1
        assert types[EventType.ROOM_RESUMED] == 0
        check_room(rt, room_id)
    assert integrity(path) == "ok"


def test_a_forced_takeover_fences_out_the_old_runner(tmp_path: Path) -> None:
    """``--force`` takes a live runner's room: the attempt runs again with the same key, the
    new owner commits it, and the old runner's late result is refused, not logged twice; the
    old runner raises LeaseLostError."""
    path = tmp_path / "force.db"
    db = f"sqlite:///{path}"
    old = python(GATED, db, "block", "new", "-")
    room_id = read_line(old, "room ")
    old_owner = read_line(old, "owner ")
    old_key = read_line(old, "entered ")

    new = python(GATED, db, "run", room_id, "force")
    new_owner = read_line(new, "owner ")
    new_key = read_line(new, "entered ")
    new_final = json.loads(finish(new).strip().splitlines()[-1].removeprefix("final "))
    assert new_key == old_key  # the same attempt, executed again
    assert new_final == {"status": "completed", "vars": {"key": new_key}}

    assert old.stdin is not None
    old.stdin.write("\n")  # the old runner's tool returns now, after the takeover
    old.stdin.flush()
    old_last = finish(old).strip().splitlines()[-1]
    # it stops without overwriting anything, and says why: its lease was taken over
    assert old_last.startswith("error LeaseLostError: "), old_last
    assert "lost its lease (another runner took it over" in old_last

    with open_runtime(db) as rt:
        log = rt.events(room_id)
        types = Counter(e.type for e in log)
        assert types[EventType.NODE_COMPLETED] == 1
        assert types[EventType.TOOL_CALLED] == 1
        (resumed,) = [e for e in log if e.type is EventType.ROOM_RESUMED]
        assert resumed.data["previous_owner"] == old_owner
        assert resumed.data["idempotency_key"] == old_key
        assert new_owner != old_owner
        check_room(rt, room_id)
    assert integrity(path) == "ok"
