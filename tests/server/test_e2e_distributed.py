"""Distributed mode: ``openrooms serve`` with Postgres state and a Redis (RQ) queue, and two
``openrooms worker`` processes that run what it queues. A whole flow over HTTP; the server
never runs a room itself.

The test has its own Postgres schema and its own RQ queue (a uuid in each name), both
dropped afterwards; the worker processes are killed with their process groups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, drop_postgres_schema, postgres_url
from tests.e2e.test_rq_workers import clean_queue, redis_or_skip
from tests.server.server_tools import poll
from tests.server.test_e2e_serve import ORDER_YAML, Server, server_env

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(self, tmp: Path) -> None:
        redis_or_skip()
        self.tmp = tmp
        self.db = postgres_url()
        self.queue_name = f"t-{uuid.uuid4().hex[:12]}"
        self.queue_url = f"{REDIS_URL}?queue={self.queue_name}"
        self.env = server_env(OPENROOMS_LEASE_TTL_S="2", OPENROOMS_RENEW_EVERY_S="0.5")
        self.workers: list[tuple[subprocess.Popen[str], Path]] = []
        self.server: Server | None = None
        subprocess.run(
            [sys.executable, "-m", "openrooms.cli", "--db", self.db, "db", "upgrade"],
            env=self.env,
            cwd=tmp,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def worker(self) -> None:
        out = self.tmp / f"worker-{len(self.workers)}.log"
        with out.open("w") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "openrooms.cli",
                    "--db",
                    self.db,
                    "--queue-url",
                    self.queue_url,
                    "worker",
                ],
                env=self.env,
                cwd=self.tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its work horses and RQ's scheduler are in its group
            )
        self.workers.append((proc, out))

    def serve(self) -> Server:
        self.server = Server(self.tmp, "--db", self.db, "--queue-url", self.queue_url, env=self.env)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
        for proc, _ in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        clean_queue(self.queue_name)
        drop_postgres_schema(self.db)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def test_server_queues_and_workers_run(cluster: Cluster) -> None:
    cluster.worker()
    cluster.worker()
    server = cluster.serve()
    assert "serving rooms queue" in server.output()
    http = server.http
    r = http.post(
        "/api/workflows", content=ORDER_YAML, headers={"content-type": "application/yaml"}
    )
    assert r.status_code == 201, r.text

    def status(room_id: str, wanted: str) -> bool | None:
        found = http.get(f"/api/rooms/{room_id}/status").json()["status"]
        return True if found == wanted else None

    ids = []
    for amount in (250, 300, 20):
        r = http.post(
            "/api/rooms?run=true",
            json={"workflow": "order_approval", "variables": {"amount": amount}},
        )
        assert r.status_code == 201 and r.json()["status"] == "queued", r.text
        ids.append(r.json()["id"])
    for room_id in ids[:2]:
        poll(partial(status, room_id, "waiting"), f"{room_id} waiting")
    poll(lambda: status(ids[2], "completed"), "the small order to complete")
    for room_id in ids[:2]:
        r = http.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": True, "by": "kim"}})
        assert r.status_code == 202 and r.json() == {"id": room_id, "status": "running"}, r.text
    for room_id in ids[:2]:
        poll(partial(status, room_id, "completed"), f"{room_id} completed")
        room = http.get(f"/api/rooms/{room_id}").json()
        assert room["variables"]["approved_by"] == "kim"
    # the workers ran every room; the server ran none (it logs each room it runs itself)
    logs = "".join(out.read_text() for _, out in cluster.workers)
    assert all(room_id in logs for room_id in ids), logs
    assert not any(f"room {room_id} completed" in server.output() for room_id in ids)
    listed = http.get("/api/rooms?status=completed").json()["items"]
    assert sorted(r["id"] for r in listed) == sorted(ids)
