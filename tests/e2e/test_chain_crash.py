"""A real process SIGKILLed in the middle of a chain of pure nodes: the steps since its last
commit run again on resume, giving the same state and the same events."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from openrooms import EventType, RoomStatus, Runtime, Workflow
from openrooms.backends import SQLiteStore
from openrooms.types import RoomId

pytestmark = pytest.mark.slow

DEFINITION: dict[str, Any] = {
    "id": "chain",
    "max_steps": 1_000_000,
    "variables": {"i": 0, "total": 0, "trail": ""},
    "nodes": {
        "add": {
            "type": "set",
            "assign": {"i": "{{ vars.i + 1 }}", "total": "{{ vars.total + vars.i * 3 }}"},
        },
        "mark": {"type": "set", "assign": {"trail": "{{ vars.i % 3 }}"}},
        "check": {"type": "decision"},
        "done": {"type": "end", "reason": "total {{ vars.total }}"},
    },
    "transitions": [
        {"from": "add", "to": "mark", "when": "vars.i % 7 == 0"},
        {"from": "add", "to": "check"},
        {"from": "mark", "to": "check"},
        {"from": "check", "to": "add", "when": "vars.i < 20000"},
        {"from": "check", "to": "done"},
    ],
}

CHILD = textwrap.dedent(
    """
    import sys
    from openrooms import Runtime, Workflow
    from openrooms.backends import SQLiteStore
    from tests.e2e.test_chain_crash import DEFINITION

    store = SQLiteStore(sys.argv[1])
    rt = Runtime(store, store, commit_every_steps=97, commit_every_ms=60_000)
    room = rt.create_room(Workflow.from_dict(DEFINITION), room_id="victim")
    rt.run(room.id)
    """
)


def run(path: Path, room_id: str | None = None) -> Runtime:
    store = SQLiteStore(path)
    rt = Runtime(store, store, commit_every_steps=97, commit_every_ms=60_000)
    if room_id is None:
        room_id = rt.create_room(Workflow.from_dict(DEFINITION), room_id="ref").id
    rt.run(room_id)
    return rt


def committed(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COALESCE(MAX(last_seq), 0) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # no tables yet


def shape(rt: Runtime, room_id: str) -> list[tuple[Any, ...]]:
    """The log without its times and without the note that a runner took over."""
    return [
        (e.type, e.level, e.node, e.data, e.error)
        for e in rt.events(room_id)
        if e.type is not EventType.ROOM_RESUMED
    ]


def test_sigkill_mid_chain_then_resume_makes_the_same_state_and_events(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    victim = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env)
    deadline = time.monotonic() + 120
    while committed(path) < 5_000:
        assert victim.poll() is None, "the run finished before it could be killed; lengthen it"
        assert time.monotonic() < deadline, "no progress within 2 minutes"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    store = SQLiteStore(path)
    left = store.get(RoomId("victim"))
    assert left.status is RoomStatus.RUNNING and left.version == committed(path)
    store.close()
    resumed = run(path, "victim")
    ref = run(tmp_path / "ref.db")
    final, expected = resumed.get_room("victim"), ref.get_room("ref")
    assert final.status is RoomStatus.COMPLETED
    for field in ("variables", "visits", "steps", "reason", "memory", "usage"):
        assert getattr(final, field) == getattr(expected, field), field
    assert shape(resumed, "victim") == shape(ref, "ref")
    assert resumed.replay("victim") == final
    resumed.close()
    ref.close()
