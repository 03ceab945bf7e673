"""The parts of the browser tests that docs/screenshots.py uses too: ``openrooms serve`` as
a subprocess on a free loopback port over a SQLite file (:class:`DashboardServer`), and
Debian's headless Chromium launched through Playwright (:func:`launch_chromium`; Playwright's
own browser download is never used).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.server.server_tools import poll
from tests.server.test_e2e_serve import LISTENING, server_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).parents[2]
CHROMIUM = os.environ.get("OPENROOMS_TEST_CHROMIUM", "/usr/bin/chromium")
"""Debian's chromium (``apt-get install chromium``; .ci/run installs it when missing)."""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def browser_problem() -> str | None:
    """Why Chromium cannot be driven here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or OPENROOMS_TEST_CHROMIUM)"
    return None


def launch_chromium(pw: Playwright) -> Browser:
    """Debian's Chromium, headless, with :data:`CHROMIUM_FLAGS`. Playwright gives each
    launch a fresh user-data-dir of its own (a temporary profile, removed on close)."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_FLAGS))


class DashboardServer:
    """One ``openrooms [GLOBAL_ARGS] serve`` process over the SQLite file ``rooms.db`` in
    *workdir*, answering on a free loopback port, its output in ``serve.log`` there; ready
    (``/health`` answered 200) once constructed. With *keys*, ``OPENROOMS_API_KEYS`` holds
    them and :attr:`api` sends the first."""

    def __init__(
        self,
        workdir: Path,
        *,
        keys: Sequence[str] = (),
        global_args: Sequence[str] = (),
        port: int = 0,
    ) -> None:
        self.log = workdir / "serve.log"
        self.log.unlink(missing_ok=True)  # a restart's port is read from its own output
        env = server_env(OPENROOMS_API_KEYS=",".join(keys)) if keys else server_env()
        with self.log.open("w") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "openrooms.cli",
                    "--db",
                    f"sqlite:///{workdir}/rooms.db",
                    *global_args,
                    "serve",
                    "--port",
                    str(port),  # 0: the kernel picks a free port; uvicorn prints it
                    "--rate-limit",
                    "100000",  # the dashboard's own refreshes must not be limited here
                    "--room-rate-limit",
                    "100000",
                ],
                env=env,
                cwd=workdir,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=True,
            )
        try:
            port = poll(self._port, "the server to listen")
            self.url = f"http://127.0.0.1:{port}"
            headers = {"authorization": f"Bearer {keys[0]}"} if keys else {}
            self.api = httpx.Client(base_url=self.url, timeout=10, headers=headers)
            poll(self._healthy, "/health to answer 200")
        except BaseException:
            self.kill()
            raise

    def _port(self) -> int | None:
        m = LISTENING.search(self.output())
        if m is not None:
            return int(m.group(1))
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited {self.proc.returncode}:\n{self.output()}")
        return None

    def _healthy(self) -> bool | None:
        try:
            return True if self.api.get("/health").status_code == 200 else None
        except httpx.TransportError:
            return None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def register(self, workflow: dict[str, Any] | str) -> None:
        """Register *workflow* (YAML text or a JSON definition)."""
        if isinstance(workflow, str):
            r = self.api.post(
                "/api/workflows", content=workflow, headers={"content-type": "application/yaml"}
            )
        else:
            r = self.api.post("/api/workflows", json=workflow)
        assert r.status_code == 201, r.text

    def create_room(self, workflow: str, *, run: bool = True, **variables: Any) -> str:
        """A new room of the registered *workflow* with *variables*, started when *run*."""
        r = self.api.post(
            "/api/rooms",
            params={"run": "true"} if run else {},
            json={"workflow": workflow, "variables": variables},
        )
        assert r.status_code == 201, r.text
        room_id: str = r.json()["id"]
        return room_id

    def room(self, room_id: str) -> dict[str, Any]:
        """``GET /api/rooms/{room_id}``."""
        r = self.api.get(f"/api/rooms/{room_id}")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    def events(self, room_id: str) -> list[dict[str, Any]]:
        """The room's whole log, page after page of ``GET /api/rooms/{room_id}/logs``."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 500}
        while True:
            r = self.api.get(f"/api/rooms/{room_id}/logs", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            found += page["items"]
            if page["next"] is None:
                return found
            params["after"] = page["next"]

    def until(self, room_id: str, status: str) -> dict[str, Any]:
        """The room, once the API says it is *status*."""

        def check() -> dict[str, Any] | None:
            room = self.room(room_id)
            return room if room["status"] == status else None

        return poll(check, f"room {room_id} to be {status}")

    def crash(self) -> None:
        """Kill the process with SIGKILL (it says nothing to its clients)."""
        self.api.close()
        self.proc.kill()
        self.proc.wait(timeout=10)

    def kill(self) -> None:
        """Stop the process by its PID: SIGTERM, then SIGKILL if it lingers."""
        if hasattr(self, "api"):
            self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
