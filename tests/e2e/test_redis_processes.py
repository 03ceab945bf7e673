"""The CLI on Redis in real processes: REDIS_URL alone is honoured, and a run killed with
SIGKILL is resumed by another process to the same result."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrooms import engine
from openrooms.backends import RedisStore
from openrooms.errors import BackendUnavailableError
from openrooms.room import RoomStatus
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import Workflow
from tests.conftest import open_service, redis_url

ROOT = Path(__file__).parents[2]
ORDER = ROOT / "examples" / "order_approval.yaml"

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


def _env(env: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    return {**clean, "PYTHONPATH": str(ROOT), **env}


def openrooms(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", *args],
        env=_env(env),
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_redis_url_alone_runs_rooms_in_redis_from_the_cli(tmp_path: Path) -> None:
    url = redis_url()
    store = open_service(url)
    assert isinstance(store, RedisStore)
    env = {"REDIS_URL": url}
    try:
        run = openrooms("run", str(ORDER), "--var", "amount=250", "--json", env=env, cwd=tmp_path)
        assert run.returncode == 3, run.stderr  # waiting for approval
        room = json.loads(run.stdout.strip().splitlines()[-1])["id"]
        assert store.get(RoomId(room)).status is RoomStatus.WAITING
        assert not (tmp_path / ".openrooms").exists()  # nothing went to the default SQLite
        done = openrooms(
            "input", room, "--data", '{"approved": true, "by": "ci"}', env=env, cwd=tmp_path
        )
        assert done.returncode == 0, done.stderr
        shown = openrooms("show", room, "--json", env=env, cwd=tmp_path)
        assert json.loads(shown.stdout)["status"] == "completed"
        assert room in openrooms("rooms", env=env, cwd=tmp_path).stdout
        check = openrooms("db", "check", env=env, cwd=tmp_path)
        assert (check.stdout, check.returncode) == ("ok\n", 0)
        state = store.get(RoomId(room))
        assert engine.fold(store.read(RoomId(room))) == state
    finally:
        store.close()


def test_sigkill_mid_run_on_redis_then_resume_finishes_the_room(tmp_path: Path) -> None:
    wf_file = tmp_path / "loop.yaml"
    wf_file.write_text(LOOP)
    url = redis_url()
    store = open_service(url)
    assert isinstance(store, RedisStore)
    env = {"OPENROOMS_DB": url}
    try:
        victim = subprocess.Popen(
            [sys.executable, "-m", "openrooms.cli", "run", str(wf_file)],
            env=_env(env),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            room = None
            while room is None or store.last_seq(room) < 2_000:  # poll progress, not a sleep
                assert victim.poll() is None, "the run ended before it was killed; lengthen it"
                assert time.monotonic() < deadline, "no progress within 120 s"
                rooms = store.list_rooms(limit=1)
                room = rooms[0].room_id if rooms else None
                time.sleep(0.01)
            os.kill(victim.pid, signal.SIGKILL)
        finally:
            if victim.poll() is None:
                victim.kill()
            victim.wait(timeout=30)
        killed_at = store.get(room)
        assert killed_at.status is RoomStatus.RUNNING

        resume = openrooms("resume", room, "--json", env=env, cwd=tmp_path)
        assert resume.returncode == 0, resume.stderr
        state = store.get(room)
        assert state.status is RoomStatus.COMPLETED
        assert dict(state.variables) == {"i": 3000, "total": 3000 * 3001, "target": 3000}
        log = store.read(room)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert engine.fold(log) == state
        assert store.check() == []
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    """A private redis-server on a spare loopback port, its append-only file in *folder*."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
         "yes", "--appendfsync", "always", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:  # poll until it answers
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            pass
        assert process.poll() is None, "redis-server exited"
        assert time.monotonic() < deadline, "redis-server did not answer within 20 s"
        time.sleep(0.02)


def test_a_store_reconnects_after_its_redis_server_restarts(tmp_path: Path) -> None:
    port = _free_port()
    server = _start_redis(port, tmp_path)
    store = None
    try:
        store = open_service(f"redis://127.0.0.1:{port}/0?prefix=restart:")
        rt = Runtime(store, store)
        wf = Workflow.from_yaml(LOOP.replace("target: 3000", "target: 3"))
        waiting = rt.create_room(wf)
        server.terminate()  # SIGTERM by PID: the server writes its append-only file and exits
        server.wait(timeout=30)
        with pytest.raises(BackendUnavailableError, match=f"cannot reach 127.0.0.1:{port}"):
            store.get(waiting.id)
        server = _start_redis(port, tmp_path)
        assert store.get(waiting.id) == waiting  # the same store object, a new connection
        done = rt.run(waiting.id)
        assert done.status is RoomStatus.COMPLETED and done.variables["total"] == 12
    finally:
        if store is not None:
            store.close()
        if server.poll() is None:
            server.terminate()
        server.wait(timeout=30)


def _worker(port: int, tmp_path: Path, connect_timeout_s: str) -> subprocess.Popen[str]:
    """``openrooms worker --burst`` on a queue at *port*, its own SQLite store."""
    env = _env(
        {
            "OPENROOMS_DB_URL": f"sqlite:///{tmp_path / 'rooms.db'}",
            "OPENROOMS_QUEUE_URL": f"redis://:s3cret@127.0.0.1:{port}/0",
            "OPENROOMS_CONNECT_TIMEOUT_S": connect_timeout_s,
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "openrooms.cli", "worker", "--burst"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_worker_started_before_its_redis_waits_for_it_then_works(tmp_path: Path) -> None:
    port = _free_port()
    worker = _worker(port, tmp_path, "60")
    server = None
    try:
        assert worker.stdout is not None
        said = worker.stdout.readline()  # blocks until the worker says it waits
        assert "waiting up to 60 s" in said and f"127.0.0.1:{port}" in said, said
        assert "s3cret" not in said
        server = _start_redis(port, tmp_path)  # the password is not checked: no requirepass
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, said + out
        assert "answers; working" in out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def test_a_worker_whose_redis_never_answers_gives_up_naming_the_setting(tmp_path: Path) -> None:
    port = _free_port()
    worker = _worker(port, tmp_path, "0.5")
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 4, out  # the exit code of an unavailable backend
    assert f"cannot reach redis://:***@127.0.0.1:{port}/0 (waited 0.5 s" in out, out
    assert "OPENROOMS_CONNECT_TIMEOUT_S" in out and "s3cret" not in out
