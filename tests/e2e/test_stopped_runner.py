"""A runner frozen with SIGSTOP mid-node loses its room, and writes nothing when it thaws.

Process A runs a room whose tool blocks; the test freezes A (SIGSTOP), waits for its lease
to expire, lets process B resume the room to the end, then thaws A (SIGCONT) and lets its
tool return at once. Whatever A sees first (its lease keeper's refused renewal, or its
refused commit), it must stop with LeaseLostError and leave the log exactly as B left it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrooms import EventType, RoomStatus, replay
from openrooms.backends import SQLiteStore
from openrooms.types import RoomId

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]

HOLD = r"""
import json, sys
from openrooms import ToolContext, WorkflowBuilder, open_runtime, tool

db, mode, room_id = sys.argv[1], sys.argv[2], sys.argv[3]

@tool(name="gate")
def gate(ctx: ToolContext) -> str:
    print("entered " + ctx.idempotency_key, flush=True)
    if mode == "block":
        sys.stdin.readline()
    return ctx.idempotency_key

wf = (WorkflowBuilder("gated").tool("pass", "gate", output="key").end("done")
      .transition("pass", "done").build())
rt = open_runtime(db, lease_ttl_ms=1500)
if room_id == "new":
    room_id = rt.create_room(wf).id
    print("room " + room_id, flush=True)
try:
    state = rt.run(room_id)
except Exception as exc:
    print("error " + type(exc).__name__ + ": " + str(exc), flush=True)
else:
    print("final " + state.status.value, flush=True)
rt.close()
"""


def python(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def line(proc: subprocess.Popen[str], prefix: str) -> str:
    assert proc.stdout is not None
    got = proc.stdout.readline()
    if not got.startswith(prefix):
        proc.kill()
        rest, err = proc.communicate()
        pytest.fail(f"expected {prefix!r}, got {got!r}{rest!r}\n{err}")
    return got[len(prefix) :].strip()


def test_a_frozen_runner_loses_its_room_and_writes_nothing_when_it_thaws(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'rooms.db'}"
    a = python(db, "block", "new")
    try:
        room_id = RoomId(line(a, "room "))
        first_key = line(a, "entered ")
        os.kill(a.pid, signal.SIGSTOP)
        store = SQLiteStore(tmp_path / "rooms.db", read_only=True)
        deadline = time.monotonic() + 30
        while True:  # until A's lease has run out (nobody renews it: A is frozen)
            lease = store.find_lease(room_id)
            assert lease is not None
            if lease.expires_at < time.time() * 1000:
                break
            assert time.monotonic() < deadline, "the frozen runner's lease never expired"
            time.sleep(0.05)
        b = python(db, "pass", room_id)
        assert line(b, "entered ") == first_key  # the same attempt, the same key
        assert line(b, "final ") == "completed"
        b.communicate(timeout=60)
        after_b = store.read(room_id)
        os.kill(a.pid, signal.SIGCONT)
        assert a.stdin is not None
        a.stdin.write("go on\n")  # its tool returns at once: its commit must be refused
        a.stdin.flush()
        out, err = a.communicate(timeout=60)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.communicate()
    assert out.startswith("error LeaseLostError"), (out, err)
    events = store.read(room_id)
    state = store.get(room_id)
    store.close()
    assert events == after_b  # the thawed runner wrote nothing
    assert replay(events) == state
    assert state.status is RoomStatus.COMPLETED and state.variables["key"] == first_key
    resumed = [e for e in events if e.type is EventType.ROOM_RESUMED]
    assert len(resumed) == 1 and resumed[0].data["previous_lease"] == "expired"
    assert [e.type for e in events].count(EventType.NODE_COMPLETED) == 1
