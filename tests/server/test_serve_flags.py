"""``openrooms serve``'s guard flags (``--cors-origin``, ``--max-body-bytes``,
``--rate-limit``, ``--room-rate-limit``) and their environment variables reach the running
server: checked over real HTTP against ``openrooms serve`` processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.server_tools import assert_error
from tests.server.test_e2e_serve import Server, server_env

pytestmark = pytest.mark.slow

ORIGIN = "https://app.example.com"


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.kill()


def preflight(server: Server, origin: str) -> dict[str, str]:
    r = server.http.options(
        "/api/rooms",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    return dict(r.headers)


def test_flags_reach_the_server(tmp_path: Path, servers: list[Server]) -> None:
    db = f"sqlite:///{tmp_path}/rooms.db"
    server = Server(
        tmp_path,
        "--db",
        db,
        serve_args=(
            "--cors-origin",
            ORIGIN,
            "--cors-origin",
            "http://localhost:5173",
            "--max-body-bytes",
            "200",
            "--rate-limit",
            "5",
            "--room-rate-limit",
            "2",
        ),
    )
    servers.append(server)
    http = server.http
    # CORS: both origins allowed, another not
    assert preflight(server, ORIGIN).get("access-control-allow-origin") == ORIGIN
    got = preflight(server, "http://localhost:5173").get("access-control-allow-origin")
    assert got == "http://localhost:5173"
    assert "access-control-allow-origin" not in preflight(server, "https://evil.example")
    # the body cap: 200 bytes
    error = assert_error(
        http.post("/api/rooms", json={"workflow": "x" * 300}), 413, "payload_too_large"
    )
    assert error["details"] == {"max_bytes": 200}
    # per room, on run: 2 a minute (the first two are 404s: the room is not there)
    for _ in range(2):
        assert_error(http.post("/api/rooms/nope/run"), 404, "not_found")
    limited = http.post("/api/rooms/nope/run")
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    # per client: 5 a minute in all; 4 or 5 were counted so far (preflights are answered
    # by CORS before the limits), so within two more the key's bucket is empty
    answers = [http.get("/api/tools").status_code for _ in range(2)]
    assert answers[-1] == 429 and answers.count(200) <= 1, answers
    assert http.get("/health").status_code == 200  # never limited


def test_environment_variables(tmp_path: Path, servers: list[Server]) -> None:
    env = server_env(
        OPENROOMS_CORS_ORIGINS=f"{ORIGIN}, http://localhost:5173",
        OPENROOMS_MAX_BODY_BYTES="100",
        OPENROOMS_RATE_LIMIT="1000",
    )
    server = Server(tmp_path, "--db", f"sqlite:///{tmp_path}/rooms.db", env=env)
    servers.append(server)
    assert preflight(server, ORIGIN).get("access-control-allow-origin") == ORIGIN
    got = preflight(server, "http://localhost:5173").get("access-control-allow-origin")
    assert got == "http://localhost:5173"
    r = server.http.post("/api/rooms", json={"workflow": "x" * 150})
    assert assert_error(r, 413, "payload_too_large")["details"] == {"max_bytes": 100}


def test_defaults_leave_cors_off(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path, "--db", f"sqlite:///{tmp_path}/rooms.db")
    servers.append(server)
    assert "access-control-allow-origin" not in preflight(server, ORIGIN)
    r = server.http.post("/api/rooms", json={"workflow": "x" * 1000})
    assert_error(r, 404, "not_found")  # far below the default cap of 1,000,000 bytes


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--cors-origin", "app.example.com"], "'app.example.com' is not an origin"),
        (["--cors-origin", "https://a.example/path"], "without a path"),
        (["--max-body-bytes", "0"], "--max-body-bytes"),
        (["--rate-limit", "-1"], "--rate-limit"),
        (["--room-rate-limit", "x"], "--room-rate-limit"),
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "serve", "--port", "0", *args],
        env=server_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was opened
