"""Ctrl-C on a real ``openrooms`` process: the first stops at a step boundary, a second at once.

Each test runs the command in a subprocess, waits for a line on its standard error (never
a fixed sleep), sends SIGINT by pid, and then runs the ``resume`` command the process
printed, word for word, to show the room is left resumable.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from openrooms import EventType, RoomStatus, open_runtime

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]

# tools for the workflows below; the test opens the "gate" by creating a file
PLUGIN = """
import os
import sys
import time

from openrooms import tool


def gate_open() -> bool:
    '''Whether the test has opened the gate.'''
    return os.path.exists(os.environ["SIGNAL_TEST_GATE"])


def hold() -> str:
    '''Block until the gate opens.'''
    print("hold: entered", file=sys.stderr, flush=True)
    while not os.path.exists(os.environ["SIGNAL_TEST_GATE"]):
        time.sleep(0.02)
    return "released"


def register(registries):
    tool(registry=registries.tools)(gate_open)
    tool(registry=registries.tools)(hold)
"""

# loops until the gate opens: busy, many steps, no end of its own
LOOP = """
id: busy_loop
max_steps: 10000000
variables: {i: 0}
nodes:
  count:
    type: set
    assign: {i: "{{ vars.i + 1 }}"}
  look:
    type: tool
    tool: gate_open
    output: open
  check:
    type: decision
  done:
    type: end
transitions:
  - {from: count, to: look}
  - {from: look, to: check}
  - {from: check, to: done, when: "vars.open"}
  - {from: check, to: count}
"""

# a savings_loop-like loop of set and decision nodes only: its steps never wait on anything
COUNT = """
id: count_loop
max_steps: 10000000
variables: {i: 0, target: 1000}
nodes:
  add:
    type: set
    assign: {i: "{{ vars.i + 1 }}"}
  check:
    type: decision
  done:
    type: end
transitions:
  - {from: add, to: check}
  - {from: check, to: add, when: "vars.i < vars.target"}
  - {from: check, to: done}
"""

HOLD = """
id: holding
nodes:
  wait_here:
    type: tool
    tool: hold
    output: held
  done:
    type: end
transitions:
  - {from: wait_here, to: done}
"""


class Process:
    """``openrooms`` in a subprocess, its standard error read line by line on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """The first line of standard error (from here on) that contains *text*."""
        while True:
            line = self.lines.get(timeout=timeout)
            assert line is not None, f"exited before printing {text!r}: {''.join(self.seen)}"
            self.seen.append(line)
            if text in line:
                return line

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        """Wait for the exit; return status, standard output and the rest of standard error.

        A process that does not exit in time is made to dump its threads' stacks
        (faulthandler, on SIGABRT) into the failure message.
        """
        assert self.proc.stdout is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=timeout)
            dumped = []
            while (line := self.lines.get(timeout=timeout)) is not None:
                dumped.append(line)
            pytest.fail(f"no exit within {timeout} s:\n{''.join(self.seen + dumped)}")
        out = self.proc.stdout.read()
        rest: list[str] = []
        while (line := self.lines.get(timeout=timeout)) is not None:
            rest.append(line)
        self.proc.stdout.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code, out, "".join(self.seen + rest)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dict[str, str], Path]:
    (tmp_path / "signal_tools.py").write_text(PLUGIN)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "SIGNAL_TEST_GATE": str(tmp_path / "gate"),
        "PYTHONFAULTHANDLER": "1",
    }
    for name in ("OPENROOMS_DB", "OPENROOMS_SCRIPT", "OPENROOMS_CONFIG", "OPENROOMS_PLUGINS"):
        env.pop(name, None)
    return env, tmp_path


def openrooms(*args: str) -> list[str]:
    return [sys.executable, "-m", "openrooms.cli", *args]


def printed_command(stderr: str, room_id: str) -> list[str]:
    """The resume command the process printed, split as a shell would, ready to run."""
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "Resume it with:" in line)
    words = shlex.split(lines[at + 1])
    assert words[0] == "openrooms" and words[-2:] == ["resume", room_id], words
    return openrooms(*words[1:])


def test_the_first_ctrl_c_stops_at_a_step_boundary_and_the_printed_resume_finishes(
    setup: tuple[dict[str, str], Path],
) -> None:
    env, tmp = setup
    (tmp / "loop.yaml").write_text(LOOP)
    db = f"sqlite:///{tmp / 'rooms.db'}"
    run = Process(openrooms("--db", db, "--plugin", "signal_tools", "run", "loop.yaml"), env, tmp)
    room_id = run.wait_for("room ").split()[1]
    run.wait_for("ok   check")  # a few steps have been committed: the loop is busy
    run.proc.send_signal(signal.SIGINT)
    code, _out, err = run.finish()

    assert code == 130, err
    assert "Traceback" not in err
    assert "press Ctrl-C again to abort now" in err
    assert f"room {room_id} stopped at " in err
    with open_runtime(db) as rt:
        stopped = rt.get_room(room_id)
        assert stopped.status is RoomStatus.RUNNING  # left resumable, not failed
        assert stopped.variables["i"] >= 1
        assert rt.states.find_lease(stopped.room_id) is None  # released on the way out
        at_stop = stopped.version

    (tmp / "gate").touch()
    resumed = subprocess.run(
        printed_command(err, room_id), env=env, cwd=tmp, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    with open_runtime(db) as rt:
        final = rt.get_room(room_id)
        assert final.status is RoomStatus.COMPLETED
        # the gate opened while stopped: only 'look' reads it, so a room stopped before
        # 'count' or before a 'check' of a closed gate counts once more, before 'look' not
        more = 0 if stopped.current_node == "look" else 1
        assert final.variables["i"] == stopped.variables["i"] + more
        log = rt.events(room_id)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert [e.seq for e in log if e.type is EventType.ROOM_RESUMED] == [at_stop + 1]
        assert rt.replay(room_id) == final


def test_a_second_ctrl_c_aborts_a_running_node_at_once_and_the_room_resumes(
    setup: tuple[dict[str, str], Path],
) -> None:
    env, tmp = setup
    (tmp / "hold.yaml").write_text(HOLD)
    db = f"sqlite:///{tmp / 'rooms.db'}"
    run = Process(openrooms("--db", db, "--plugin", "signal_tools", "run", "hold.yaml"), env, tmp)
    room_id = run.wait_for("room ").split()[1]
    run.wait_for("hold: entered")  # inside the node, which blocks until the gate opens
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("press Ctrl-C again to abort now")  # the first was handled: still running
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGINT)
    code, _out, err = run.finish()

    assert code == 130, err
    assert "Traceback" not in err
    assert f"room {room_id} aborted; every committed step is kept" in err
    with open_runtime(db) as rt:
        cut = rt.get_room(room_id)
        assert cut.status is RoomStatus.RUNNING and cut.current_node == "wait_here"
        assert not [e for e in rt.events(room_id) if e.type is EventType.NODE_COMPLETED]

    (tmp / "gate").touch()
    resumed = subprocess.run(
        printed_command(err, room_id), env=env, cwd=tmp, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    with open_runtime(db) as rt:
        final = rt.get_room(room_id)
        assert final.status is RoomStatus.COMPLETED
        assert final.variables["held"] == "released"


def test_ctrl_c_stops_a_loop_whose_steps_never_wait_then_resume_counts_on(
    setup: tuple[dict[str, str], Path],
) -> None:
    env, tmp = setup
    (tmp / "count.yaml").write_text(COUNT)
    db = f"sqlite:///{tmp / 'rooms.db'}"
    run = Process(openrooms("--db", db, "run", "count.yaml"), env, tmp)
    room_id = run.wait_for("room ").split()[1]
    run.wait_for("ok   add")
    run.proc.send_signal(signal.SIGINT)
    code, _out, err = run.finish()

    assert code == 130, err
    with open_runtime(db) as rt:
        stopped = rt.get_room(room_id)
        assert stopped.status is RoomStatus.RUNNING
        assert stopped.variables["i"] < 1000  # stopped early, not at the loop's own end

    resumed = subprocess.run(
        printed_command(err, room_id), env=env, cwd=tmp, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    with open_runtime(db) as rt:
        final = rt.get_room(room_id)
        assert final.status is RoomStatus.COMPLETED
        assert final.variables["i"] == 1000
        assert final.visits["add"] == 1000  # no iteration was run twice or skipped
