"""The exit statuses of docs/cli.md: 0 completed, 1 failed, 2 usage or input error, 3 waiting,
4 not done for another reason (130, Ctrl-C, is in tests/e2e/test_cli_signals.py)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from openrooms import open_runtime
from openrooms.cli import EXIT_ERROR, EXIT_INVALID, cli
from openrooms.types import RoomId

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
SAVINGS = str(EXAMPLES / "savings_loop.yaml")
ORDER = str(EXAMPLES / "order_approval.yaml")

Invoke = Callable[..., Result]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'codes.db'}"


@pytest.fixture
def invoke(db: str) -> Invoke:
    def call(*args: str, globals_: tuple[str, ...] = ()) -> Result:
        return CliRunner().invoke(cli, ["--db", db, *globals_, *args])

    return call


def room_of(result: Result) -> str:
    found = re.search(r"room ([0-9a-f]{22})", result.output)
    assert found, result.output
    return found.group(1)


def one_line_error(result: Result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert "Traceback" not in result.output
    assert "Error: " in result.output and text in result.output, result.output


def test_room_outcomes_are_0_1_and_3(invoke: Invoke) -> None:
    assert invoke("run", SAVINGS).exit_code == 0
    assert invoke("run", SAVINGS, "--var", "max_years=2", "--var", "target=1e9").exit_code == 1
    assert invoke("run", ORDER, "--var", "amount=250").exit_code == 3


def test_a_missing_file_is_an_input_error(invoke: Invoke, tmp_path: Path) -> None:
    one_line_error(invoke("run", str(tmp_path / "nope.yaml")), 2, "no such file")
    one_line_error(invoke("graph", str(tmp_path / "nope.yaml")), 2, "no such file")


def test_a_plugin_that_cannot_be_imported_is_an_input_error(invoke: Invoke) -> None:
    result = invoke("rooms", globals_=("--plugin", "no_such_plugin_module"))
    one_line_error(result, 2, "cannot load plugin 'no_such_plugin_module': ModuleNotFoundError")


def test_a_version_conflict_is_an_input_error(invoke: Invoke, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("id: twice\nnodes:\n  done: {type: end}\n")
    assert invoke("run", str(flow)).exit_code == 0
    flow.write_text("id: twice\ndescription: changed\nnodes:\n  done: {type: end}\n")
    one_line_error(invoke("run", str(flow)), 2, "bump 'version'")


def test_invalid_variables_config_input_and_db_urls_are_input_errors(
    invoke: Invoke, tmp_path: Path
) -> None:
    one_line_error(invoke("run", SAVINGS, "--var", "9lives=1"), 2, "variables")
    config = tmp_path / "bad.yaml"
    config.write_text("htp: {}\n")
    one_line_error(invoke("rooms", globals_=("--config", str(config))), 2, "unknown section")
    waiting = room_of(invoke("run", ORDER, "--var", "amount=250"))
    one_line_error(invoke("input", waiting, "--data", '{"approved": "yes"}'), 2, "approved")
    result = CliRunner().invoke(cli, ["--db", "nosuch://x", "rooms"])
    one_line_error(result, 2, "unknown backend scheme 'nosuch'")


def test_unknown_rooms_and_operations_the_status_does_not_allow_are_input_errors(
    invoke: Invoke,
) -> None:
    for command in (["show", "missing"], ["resume", "missing"]):  # no database yet
        one_line_error(invoke(*command), 2, "no database at")
    done = room_of(invoke("run", SAVINGS))
    for command in (["show", "missing"], ["logs", "missing"], ["resume", "missing"]):
        one_line_error(invoke(*command), 2, "no room 'missing'")
    one_line_error(invoke("input", done, "--data", "{}"), 2, "completed")
    one_line_error(invoke("cancel", done), 2, "completed")


def test_usage_errors_stay_2(invoke: Invoke) -> None:
    assert invoke("run", SAVINGS, "--no-such-option").exit_code == 2
    assert invoke("no-such-command").exit_code == 2


def test_a_room_another_runner_holds_is_4_and_says_how_to_take_it_over(
    invoke: Invoke, db: str
) -> None:
    room = room_of(invoke("run", ORDER, "--var", "amount=250"))
    expires = int(time.time() * 1000) + 600_000
    with open_runtime(db) as rt:
        rt.states.acquire_lease(
            RoomId(room), "elsewhere:1:ab", ttl_ms=600_000, now=expires - 600_000
        )
    result = invoke("resume", room)
    one_line_error(result, EXIT_ERROR, f"room {room!r} is being run by 'elsewhere:1:ab'")
    assert socket.gethostname() != "elsewhere"
    # the lease's end as a time a person reads, and how far off it is
    assert re.search(
        r"its lease expires at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, in (9|10) min", result.output
    )
    assert "ms)" not in result.output
    assert f"openrooms --db {db} resume {room} --force" in result.output


# a process in which psycopg cannot be imported, as where the extra is not installed
WITHOUT_PSYCOPG = """
import sys
sys.modules["psycopg"] = sys.modules["psycopg_pool"] = None  # import raises ModuleNotFoundError
from openrooms.cli import main
sys.argv = ["openrooms", "--db", "postgresql://127.0.0.1:1/x", "rooms"]
main()
"""


def test_a_missing_optional_dependency_is_4() -> None:
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == EXIT_ERROR, run.stderr
    assert "pip install 'openrooms[postgres]'" in run.stderr
    assert "to use the postgresql:// backend, install the 'postgres' extra" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_statuses_are_the_documented_ones() -> None:
    table = (ROOT / "docs" / "cli.md").read_text().split("## Exit status", 1)[1].split("##")[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", table, flags=re.MULTILINE))
    assert sorted(rows, key=int) == ["0", "1", "2", "3", "4", "130"]
    assert "input" in rows[str(EXIT_INVALID)] and "lease" in rows[str(EXIT_ERROR)]
