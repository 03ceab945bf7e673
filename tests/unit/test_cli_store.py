"""The CLI over its database: inspecting creates nothing, corrupt rooms, `openrooms db check`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from openrooms import open_runtime
from openrooms.cli import cli
from openrooms.workflow import WorkflowBuilder

WF = (
    WorkflowBuilder("loop", variables={"i": 0})
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 2")
    .transition("inc", "done")
    .build()
)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database with rooms 'a' and 'b', both completed."""
    path = tmp_path / "rooms.db"
    with open_runtime(f"sqlite:///{path}") as rt:
        for room_id in ("a", "b"):
            rt.create_room(WF, room_id=room_id)
            rt.run(room_id)
    return path


def damage(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement)
    conn.close()


@pytest.mark.parametrize(
    "args",
    [
        ("show", "r1"),
        ("rooms",),
        ("logs", "r1"),
        ("rerun", "r1"),
        ("replay", "r1"),  # the deprecated name of rerun
        ("db", "check"),
        ("workflows",),
        # commands that change a room that must exist: they write, but create nothing
        ("input", "r1", "--data", "{}"),
        ("resume", "r1"),
        ("cancel", "r1"),
    ],
    ids=lambda a: a[0] if a[0] != "db" else "db-check",
)
def test_commands_on_stored_rooms_from_another_folder_create_nothing_and_say_where_they_looked(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENROOMS_DB", "OPENROOMS_STATE_URL", "OPENROOMS_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = invoke(*args)
    assert result.exit_code == 2  # input error: no such database
    expected = tmp_path / ".openrooms" / "openrooms.db"
    assert f"Error: no database at {expected}" in result.output
    assert "where you ran `openrooms run`, or pass --db" in result.output
    assert list(tmp_path.iterdir()) == []


def test_rooms_lists_the_sound_rooms_and_reports_a_corrupt_one(db: Path) -> None:
    damage(db, "UPDATE rooms SET body = '{broken' WHERE id = 'a'")
    result = invoke("--db", str(db), "rooms")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split()[:2] == ["b", "completed"]
    assert lines[2].split()[:2] == ["a", "corrupt"]
    assert "Warning: room 'a' is corrupt:" in result.stderr
    assert "table rooms, row id='a'" in result.stderr

    listed = json.loads(invoke("--db", str(db), "rooms", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [("b", "completed"), ("a", "corrupt")]
    assert "not valid JSON" in listed[1]["error"]


def test_show_and_logs_of_a_corrupt_room_are_one_line_errors(db: Path) -> None:
    damage(db, "UPDATE rooms SET body = json_remove(body, '$.status') WHERE id = 'a'")
    damage(db, "UPDATE events SET body = '[[1]]' WHERE room_id = 'b' AND first_seq = 1")
    shown = invoke("--db", str(db), "show", "a")
    assert shown.exit_code == 4  # damaged data: not an input error
    assert shown.output.startswith("Error: room 'a' is corrupt: ")
    assert "table rooms, row id='a': missing key 'status'" in shown.output
    logs = invoke("--db", str(db), "logs", "b")
    assert logs.exit_code == 4
    assert "Error: room 'b' is corrupt: " in logs.output
    assert "table events, row room_id='b' first_seq=1" in logs.output
    assert "Traceback" not in shown.output + logs.output


def test_db_check_prints_ok_or_every_problem(db: Path) -> None:
    sound = invoke("--db", str(db), "db", "check")
    assert (sound.exit_code, sound.stdout) == (0, "ok\n")
    damage(db, "UPDATE rooms SET body = '[]' WHERE id = 'a'")
    damage(db, "UPDATE events SET body = 'nope' WHERE room_id = 'b' AND first_seq = 1")
    result = invoke("--db", str(db), "db", "check")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{db}, table rooms, row id='a': expected an object, got a list",
        f"{db}, table events, row room_id='b' first_seq=1: the body is not valid JSON: "
        "Expecting value: line 1 column 1 (char 0)",
    ]
    assert "2 problems found" in result.stderr


def test_db_check_of_a_store_that_is_not_sqlite_is_a_usage_error() -> None:
    """Exit 1 would say the database is damaged; a memory store has nothing to check."""
    result = invoke("--db", "memory://", "db", "check")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: MemoryStore has no check; `db check` reads SQLite, Postgres and Redis\n"
    )


def test_db_check_of_split_state_and_log_files_checks_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states, log = tmp_path / "states.db", tmp_path / "log.db"
    monkeypatch.setenv("OPENROOMS_STATE_URL", f"sqlite:///{states}")
    monkeypatch.setenv("OPENROOMS_LOG_URL", f"sqlite:///{log}")
    monkeypatch.delenv("OPENROOMS_DB", raising=False)
    with open_runtime() as rt:
        rt.create_room(WF, room_id="a")
        rt.run("a")
    sound = invoke("db", "check")
    assert (sound.exit_code, sound.stdout) == (0, "ok\n")
    damage(log, "UPDATE events SET body = '[]' WHERE room_id = 'a' AND first_seq = 1")
    result = invoke("db", "check")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{log}, table events, row room_id='a' first_seq=1: ")


WAITING = WorkflowBuilder("asks").wait("ask", prompt="go?").end("done").transition("ask", "done")


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            "UPDATE rooms SET variables = json_set(variables, '$.n', 1) WHERE id = 'w'",
            None,  # sound: the control case
        ),
        (
            "UPDATE rooms SET variables = replace(variables, '{', '{\"n\":NaN,') WHERE id = 'w'",
            "the body holds NaN, which is not JSON",
        ),
        (
            "UPDATE rooms SET variables = replace(variables, '{', '{\"n\":1e400,') WHERE id = 'w'",
            "the body holds 1e400, a number no store writes",
        ),
        (
            "UPDATE rooms SET body = json_set(body, '$.current_node', 'nowhere') WHERE id = 'w'",
            "its current node 'nowhere' is not a node of workflow 'asks' v1",
        ),
    ],
    ids=["sound", "nan", "1e400", "unknown-node"],
)
def test_a_damaged_waiting_room_is_a_typed_error_for_every_command(
    tmp_path: Path, statement: str, problem: str | None
) -> None:
    """Found by a hostile trial: these were ValueError and KeyError tracebacks."""
    path = tmp_path / "w.db"
    with open_runtime(f"sqlite:///{path}") as rt:
        rt.run(rt.create_room(WAITING.build(), room_id="w").room_id)
    damage(path, statement)
    for args in (["resume", "w"], ["input", "w", "--data", "{}"], ["cancel", "w"]):
        result = invoke("--db", str(path), *args)
        assert "Traceback" not in result.output
        if problem is None:
            assert result.exit_code in (0, 2, 3), result.output  # waits; done; cancel: done
        elif args[0] == "cancel" and "current node" in problem:
            assert result.exit_code == 0, result.output  # the way out of a broken room
        else:
            assert result.exit_code == 4, (args, result.output)
            assert "room 'w' is corrupt" in result.output and problem in result.output
