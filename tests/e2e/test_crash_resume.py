"""A real process killed with SIGKILL mid-run, then `openrooms resume` finishes the room."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrooms import EventType, RoomStatus, open_runtime

LOOP = """
id: long_loop
max_steps: 100000
variables: {i: 0, total: 0, target: 3000}
nodes:
  add:
    type: set
    assign:
      i: "{{ vars.i + 1 }}"
      total: "{{ vars.total + vars.i * 2 }}"
  check:
    type: decision
  done:
    type: end
transitions:
  - {from: add, to: check}
  - {from: check, to: add, when: "vars.i < vars.target"}
  - {from: check, to: done}
"""

pytestmark = pytest.mark.slow


def openrooms(*args: str, db: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "OPENROOMS_DB": db}
    return subprocess.Popen(
        [sys.executable, "-m", "openrooms.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )  # type: ignore[call-overload]


def events_so_far(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COALESCE(MAX(last_seq), 0) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # tables not created yet


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    wf_file = tmp_path / "loop.yaml"
    wf_file.write_text(LOOP)

    # the reference: the same workflow, uninterrupted
    ref_db = f"sqlite:///{tmp_path / 'ref.db'}"
    ref = openrooms("run", str(wf_file), "--json", db=ref_db)
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    expected = json.loads(out.strip().splitlines()[-1])["variables"]

    # the victim: killed once its log shows real progress (polling a condition, not sleeping)
    path = tmp_path / "crash.db"
    db = f"sqlite:///{path}"
    victim = openrooms("run", str(wf_file), db=db)
    deadline = time.monotonic() + 120
    while events_so_far(path) < 2_000:
        assert victim.poll() is None, "the run finished before it could be killed; lengthen it"
        assert time.monotonic() < deadline, "no progress within 2 minutes"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)  # reaps it and closes its pipes
    assert victim.returncode == -signal.SIGKILL

    with open_runtime(db) as rt:
        (room,) = rt.list_rooms()
        assert room.status is RoomStatus.RUNNING  # left mid-run
        interrupted_at = room.version

    resumed = openrooms("resume", room.id, "--json", db=db)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["status"] == "completed"
    assert final["variables"] == expected

    with open_runtime(db) as rt:
        log = rt.events(room.id)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))  # no gap
        completed: dict[str, int] = {}
        for e in log:
            if e.type is EventType.NODE_COMPLETED:
                assert e.node is not None
                completed[e.node] = completed.get(e.node, 0) + 1
        # one completion per visit: nothing committed was executed (and logged) twice
        assert completed == {"add": 3000, "check": 3000}
        assert rt.get_room(room.id).visits == {"add": 3000, "check": 3000, "done": 1}
        resumed_events = [e for e in log if e.type is EventType.ROOM_RESUMED]
        assert len(resumed_events) == 1 and resumed_events[0].seq == interrupted_at + 1
        assert resumed_events[0].data["previous_lease"] == "its process had exited"
        assert rt.replay(room.id) == rt.get_room(room.id)
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
