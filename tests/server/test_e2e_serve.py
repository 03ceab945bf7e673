"""``openrooms serve`` as a real process on a free loopback port, driven over HTTP with
httpx: a whole flow (register, create, run, poll, answer a wait, completed), a shutdown
that leaves a running room resumable, and the refusal to serve unauthenticated beyond
loopback. Nothing sleeps to synchronise: each wait polls for its condition with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openrooms import open_runtime
from openrooms_server.app import check_bind, split_args
from openrooms_server.errors import InsecureBindError
from openrooms_server.settings import Settings, is_loopback
from tests.server.server_tools import Gate, assert_schema, gate_workflow, poll

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
ORDER_YAML = (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8")
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def server_env(**extra: str) -> dict[str, str]:
    """This process's environment without OpenRooms' variables (the caller says what it
    means), with this checkout first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    for name in ("DATABASE_URL", "REDIS_URL", "PORT"):
        env.pop(name, None)
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


class Server:
    """One ``openrooms serve`` process; its output goes to a file."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.log = tmp / f"serve-{os.urandom(3).hex()}.log"
        with self.log.open("w") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "openrooms.cli", *args, "serve", "--port", "0", *serve_args],
                env=env or server_env(),
                cwd=tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        found = poll(self._port, "the server to listen")
        self.url = f"http://127.0.0.1:{found}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _port(self) -> int | None:
        m = LISTENING.search(self.output())
        if m is not None:
            return int(m.group(1))
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited {self.proc.returncode}:\n{self.output()}")
        return None

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()


def status(server: Server, room_id: str) -> str:
    r = server.http.get(f"/api/rooms/{room_id}/status")
    assert r.status_code == 200, r.text
    found: str = r.json()["status"]
    return found


def until(server: Server, room_id: str, wanted: str) -> None:
    poll(lambda: True if status(server, room_id) == wanted else None, f"{room_id} {wanted}")


def follow(server: Server, room_id: str, lines: list[str]) -> None:
    """Append each line of the room's live log stream to *lines* as it arrives, over real
    HTTP, until the stream ends."""
    with (
        httpx.Client(base_url=server.url, timeout=60) as client,
        client.stream("GET", f"/api/rooms/{room_id}/logs/stream") as stream,
    ):
        assert stream.status_code == 200
        for line in stream.iter_lines():
            lines.append(line)


def test_a_whole_flow_over_http(tmp_path: Path, servers: list[Server]) -> None:
    db = f"sqlite:///{tmp_path}/rooms.db"
    server = Server(tmp_path, "--db", db)
    servers.append(server)
    http = server.http
    r = http.post(
        "/api/workflows", content=ORDER_YAML, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    r = http.post("/api/rooms", json={"workflow": "order_approval", "variables": {"amount": 250}})
    assert r.status_code == 201
    room_id = r.json()["id"]
    r = http.post(f"/api/rooms/{room_id}/run")
    assert r.status_code == 202 and r.json() == {"id": room_id, "status": "queued"}
    until(server, room_id, "waiting")
    logs = http.get(f"/api/rooms/{room_id}/logs", params={"type": "ROOM_WAITING"}).json()
    assert_schema(logs, "EventPage")
    assert logs["items"][-1]["data"]["prompt"] == "Approve the order of 300.0?"
    # follow the live log from the start while the wait is answered: it carries every line,
    # the ones after the answer too, and ends by itself once the room is done
    followed: list[str] = []
    follower = threading.Thread(target=follow, args=(server, room_id, followed))
    follower.start()
    poll(lambda: True if any(x.startswith("id: ") for x in followed) else None, "the stream")
    answer = {"data": {"approved": True, "by": "sam"}}
    r = http.post(f"/api/rooms/{room_id}/input", json=answer, headers={"Idempotency-Key": "a1"})
    assert r.status_code == 202, r.text
    until(server, room_id, "completed")
    follower.join(timeout=60)
    assert not follower.is_alive(), "the stream did not end with the room"
    seqs = [e["seq"] for e in http.get(f"/api/rooms/{room_id}/logs").json()["items"]]
    assert [int(x[4:]) for x in followed if x.startswith("id: ")] == seqs
    assert "event: end" in followed
    room = http.get(f"/api/rooms/{room_id}").json()
    assert_schema(room, "Room")
    assert room["variables"]["approved_by"] == "sam" and room["current_node"] == "done"
    types = [e["type"] for e in http.get(f"/api/rooms/{room_id}/logs").json()["items"]]
    assert types[0] == "ROOM_CREATED" and types[-1] == "ROOM_COMPLETED"
    assert "INPUT_RECEIVED" in types
    # the CLI reads the same store and prints the same JSON
    shown = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "--db", db, "show", room_id, "--json"],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    import json

    assert json.loads(shown.stdout) == room
    assert server.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    assert "Application shutdown complete" in server.output()


def test_shutdown_leaves_a_running_room_resumable(tmp_path: Path, servers: list[Server]) -> None:
    db = f"sqlite:///{tmp_path}/rooms.db"
    gate = Gate()
    try:
        server = Server(tmp_path, "--db", db, "--plugin", "tests.e2e.rq_tools")
        servers.append(server)
        r = server.http.post("/api/rooms?run=true", json={"definition": gate_workflow(gate.port)})
        room_id = r.json()["id"]
        gate.wait()  # the room is running, inside its tool
        server.proc.send_signal(signal.SIGTERM)
        poll(
            lambda: True if "Waiting for application shutdown" in server.output() else None,
            "the server to wait for its rooms",
        )
        gate.answer()  # the step in progress finishes and is committed; nothing more runs
        assert server.stop() in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    finally:
        gate.close()
    with open_runtime(db, read_only=True) as rt:
        left = rt.get_room(room_id)
        lease = rt.states.find_lease(left.room_id)
    assert (left.status.value, left.current_node) == ("running", "after")
    assert left.variables["opened"] == "opened"
    assert lease is None or lease.expires_at <= rt.now()  # let go: anyone may resume it
    again = Server(tmp_path, "--db", db, "--plugin", "tests.e2e.rq_tools")
    servers.append(again)
    r = again.http.post(f"/api/rooms/{room_id}/resume")
    assert r.status_code == 202 and r.json() == {"id": room_id, "status": "running"}
    until(again, room_id, "completed")
    assert again.http.get(f"/api/rooms/{room_id}").json()["variables"]["finished"] is True


def test_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "serve", "--host", "0.0.0.0"],
        env=server_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to serve on '0.0.0.0' without API keys" in done.stderr
    assert "--insecure" in done.stderr and "OPENROOMS_API_KEYS" in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened


@pytest.mark.parametrize(
    ("host", "env", "insecure", "refused"),
    [
        ("127.0.0.1", {}, False, False),
        ("127.1.2.3", {}, False, False),
        ("::1", {}, False, False),
        ("localhost", {}, False, False),
        ("0.0.0.0", {}, False, True),
        ("192.168.1.4", {"OPENROOMS_API_KEYS": " , "}, False, True),
        ("::", {}, False, True),
        ("example.com", {}, False, True),
        ("0.0.0.0", {"OPENROOMS_API_KEYS": "k1,k2"}, False, False),
        ("0.0.0.0", {}, True, False),
    ],
)
def test_check_bind(host: str, env: dict[str, str], insecure: bool, refused: bool) -> None:
    settings = Settings(host=host, env=env, insecure=insecure)
    if refused:
        with pytest.raises(InsecureBindError, match="refusing to serve"):
            check_bind(settings)
    else:
        check_bind(settings)
    assert is_loopback(host) is (host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ([], ["serve"]),
        (["--port", "8000"], ["serve", "--port", "8000"]),
        (
            ["--port", "8000", "--db", "sqlite:///x.db", "--queue-url=rq://h/0", "--insecure"],
            [
                "--db",
                "sqlite:///x.db",
                "--queue-url=rq://h/0",
                "serve",
                "--port",
                "8000",
                "--insecure",
            ],
        ),
        (["--plugin", "a", "--plugin", "b"], ["--plugin", "a", "--plugin", "b", "serve"]),
    ],
)
def test_openrooms_server_arguments(given: list[str], expected: list[str]) -> None:
    assert split_args(given) == expected


def test_openrooms_server_script_is_serve() -> None:
    script = "import sys; from openrooms_server.app import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", script, "--help"],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Serve the REST API" in done.stdout and "--insecure" in done.stdout
    settings: Any = Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 3001)


def test_resume_after_the_server_is_killed_mid_run(tmp_path: Path, servers: list[Server]) -> None:
    """SIGKILL while a node runs: the room keeps its lease until it expires (1 s here), is
    busy till then, and a resume on a new server runs the node again and finishes."""
    db = f"sqlite:///{tmp_path}/rooms.db"
    env = server_env(OPENROOMS_LEASE_TTL_S="1", OPENROOMS_RENEW_EVERY_S="0.25")
    args = ("--db", db, "--plugin", "tests.e2e.rq_tools")
    gate = Gate()
    try:
        server = Server(tmp_path, *args, env=env)
        servers.append(server)
        r = server.http.post("/api/rooms?run=true", json={"definition": gate_workflow(gate.port)})
        room_id = r.json()["id"]
        gate.wait(1)
        server.kill()
        gate.answer()  # nobody is listening any more
        again = Server(tmp_path, *args, env=env)
        servers.append(again)
        assert status(again, room_id) == "running"

        def resumed() -> httpx.Response | None:
            r = again.http.post(f"/api/rooms/{room_id}/resume")
            if r.status_code == 409:
                assert r.json()["error"]["code"] == "room_busy"  # until the lease expires
                return None
            return r

        r = poll(resumed, "the dead server's lease to expire")
        assert r.status_code == 202, r.text
        gate.wait(2)  # the node that was cut off runs again
        gate.answer()
        until(again, room_id, "completed")
        room = again.http.get(f"/api/rooms/{room_id}").json()
        assert room["visits"]["gate"] == 1 and room["variables"]["finished"] is True
    finally:
        gate.close()
