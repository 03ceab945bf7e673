"""What an import pulls in: the engine stays pure, ``import openrooms`` stays light, and a
corrupt log is a typed error from the engine."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import attrs
import pytest

import openrooms
from openrooms import CorruptLogError, CorruptRoomError, WorkflowBuilder, engine, open_runtime
from openrooms.cli import cli

ROOT = Path(__file__).parents[2]

NEVER_IN_THE_ENGINE = [
    "asyncio",
    "concurrent.futures",
    "socket",
    "ssl",
    "sqlite3",
    "httpx",
    "litellm",
    "jsonschema",
    "cattrs",
    "yaml",
    "openrooms.runner",
    "openrooms.runtime",
    "openrooms.journal",
    "openrooms.backends",
    "openrooms.llm",
    "openrooms.tools",
    "openrooms.nodes.builtin",
    "openrooms.nodes.agent",
    "openrooms.nodes.fanout",
    "openrooms.serde",
    "openrooms.config",
]
"""Executors, event loops, IO clients and stores: none is needed to decide a transition."""


def loaded_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after *statement* that it did not before."""
    code = (
        "import sys, json\nbefore = set(sys.modules)\n"
        f"{statement}\nprint(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    found: list[str] = json.loads(out)
    return found


def test_importing_the_engine_imports_no_executor_event_loop_or_io_client() -> None:
    loaded = loaded_after("import openrooms.engine")
    assert "openrooms.engine" in loaded  # the probe itself works
    assert "openrooms.plan" in loaded
    leaked = [
        m for m in loaded if m in NEVER_IN_THE_ENGINE or m.split(".")[0] in NEVER_IN_THE_ENGINE
    ]
    leaked += [m for m in loaded for p in NEVER_IN_THE_ENGINE if m.startswith(p + ".")]
    assert sorted(set(leaked)) == []


def test_importing_openrooms_imports_none_of_its_modules_until_a_name_is_used() -> None:
    loaded = loaded_after("import openrooms")
    assert [m for m in loaded if m.startswith("openrooms")] == ["openrooms"]
    assert {"asyncio", "attrs", "sqlite3", "jsonschema"}.isdisjoint(loaded)
    used = loaded_after("from openrooms import WorkflowBuilder, fold")
    assert "openrooms.workflow" in used and "asyncio" not in used
    every = loaded_after(f"from openrooms import {', '.join(openrooms.__all__)}")
    assert "openrooms.runtime" in every  # each name in __all__ still imports
    # a submodule is an attribute of the package, as when the package imported it
    assert "openrooms.engine" in loaded_after("import openrooms\nopenrooms.engine.fold")


def test_the_wait_and_end_plans_live_with_the_plan() -> None:
    from openrooms import plan

    wf = WorkflowBuilder("w").wait("ask", prompt="ok?").end("done").transition("ask", "done")
    nodes = wf.build().plan.nodes
    assert isinstance(nodes["ask"].prepared, plan.PreparedWait)
    assert isinstance(nodes["done"].prepared, plan.PreparedEnd)


# --- a corrupt log ---------------------------------------------------------------------------


def ran_room(tmp_path: Path) -> tuple[str, str]:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    wf = (
        WorkflowBuilder("steps", variables={"i": 0})
        .set("a", {"i": "{{ vars.i + 1 }}"})
        .set("b", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transitions(("a", "b"), ("b", "done"))
    )
    with open_runtime(db) as rt:
        room = rt.run(rt.create_room(wf).room_id)
    return db, room.room_id


def test_folding_a_log_with_a_gap_a_duplicate_or_a_bad_start_raises_corrupt_log_error(
    tmp_path: Path,
) -> None:
    db, room_id = ran_room(tmp_path)
    with open_runtime(db) as rt:
        events = rt.events(room_id)
    assert engine.fold(events).room_id == room_id  # whole, it folds
    cases = {
        "a gap": [*events[:3], *events[4:]],
        "a duplicate": [*events[:3], events[2], *events[3:]],
        "a bad start": events[1:],
    }
    for what, broken in cases.items():
        with pytest.raises(CorruptLogError) as info:
            engine.fold(broken)
        assert info.value.room_id == room_id, what
        assert isinstance(info.value, CorruptRoomError)
        assert not isinstance(info.value, ValueError)
    with pytest.raises(CorruptLogError, match="no events to fold"):
        engine.fold([])
    state = engine.fold(events[:2])
    late = attrs.evolve(events[5], seq=state.version + 2)
    with pytest.raises(CorruptLogError, match=f"event seq {state.version + 2} after"):
        engine.apply(state, [late])


def test_rerunning_a_room_whose_log_lost_a_batch_is_a_one_line_error(tmp_path: Path) -> None:
    db, room_id = ran_room(tmp_path)
    path = db.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:
        rows = conn.execute(
            "SELECT first_seq FROM events WHERE room_id = ? ORDER BY first_seq", (room_id,)
        ).fetchall()
        assert len(rows) >= 2
        conn.execute(  # the creation's batch: what is left starts with a gap
            "DELETE FROM events WHERE room_id = ? AND first_seq = ?", (room_id, rows[0][0])
        )
    with open_runtime(db) as rt, pytest.raises(CorruptLogError, match=repr(room_id)):
        rt.replay(room_id)
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["--db", db, "rerun", room_id])
    assert result.exit_code == 4, result.output
    assert result.output.startswith(f"Error: room {room_id!r} is corrupt: its event log")
    assert "Traceback" not in result.output
