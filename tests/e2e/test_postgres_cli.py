"""The CLI against Postgres, each command in a process of its own: `--db postgresql://...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import drop_postgres_schema, postgres_url

ROOT = Path(__file__).parents[2]
ORDER = ROOT / "examples" / "order_approval.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture
def url() -> Iterator[str]:
    made = postgres_url()
    yield made
    drop_postgres_schema(made)


def openrooms(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_run_show_logs_rooms_input_and_cancel_on_postgres(url: str) -> None:
    ran = openrooms(url, "run", str(ORDER), "--var", "amount=250", "--json")
    assert ran.returncode == 3, ran.stderr  # 3: the room waits for input
    room = json.loads(ran.stdout.strip().splitlines()[-1])
    assert room["status"] == "waiting" and room["variables"]["total"] == 300.0
    room_id = room["id"]

    shown = openrooms(url, "show", room_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["current_node"] == "approval"

    logs = openrooms(url, "logs", room_id, "--json")
    assert logs.returncode == 0, logs.stderr
    events = [json.loads(line) for line in logs.stdout.splitlines()]
    assert [e["seq"] for e in events] == list(range(1, room["version"] + 1))
    assert events[-1]["type"] == "ROOM_WAITING"

    listed = openrooms(url, "rooms", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [room_id]

    # a live tail in one process, the input from another: the tail ends with the room
    follow = subprocess.Popen(
        [sys.executable, "-m", "openrooms.cli", "--db", url, "logs", room_id, "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        given = openrooms(url, "input", room_id, "--data", '{"approved": true, "by": "sam"}')
        assert given.returncode == 0, given.stderr
        out, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
        follow.wait()
    assert follow.returncode == 0, err
    assert "ROOM_COMPLETED" in out.splitlines()[-1]
    assert json.loads(openrooms(url, "show", room_id, "--json").stdout)["status"] == "completed"

    second = json.loads(
        openrooms(url, "run", str(ORDER), "--var", "amount=500", "--json").stdout.splitlines()[-1]
    )
    cancelled = openrooms(url, "cancel", second["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    resumed = openrooms(url, "resume", second["id"])
    assert resumed.returncode != 0 and "cancelled" in resumed.stdout + resumed.stderr


def test_a_server_that_is_down_is_one_line_naming_the_host(tmp_path: Path) -> None:
    down = "postgresql://postgres:hunter2pw@127.0.0.1:1/test?connect_timeout=2"
    shown = openrooms(down, "rooms")
    assert shown.returncode != 0
    assert "127.0.0.1:1" in shown.stderr
    assert "hunter2pw" not in shown.stderr + shown.stdout
    assert "Traceback" not in shown.stderr
