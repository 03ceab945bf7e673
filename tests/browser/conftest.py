"""Fixtures for the dashboard in a real browser: ``openrooms serve`` as a subprocess on a free
loopback port over a temporary SQLite file, and Debian's headless Chromium driven by
Playwright (``executable_path``: Playwright's own browser download is never used).

The server is started once per session with the workflows of :data:`WORKFLOWS` registered
over its API; each test gets a fresh browser context (its own cookies) and a page whose
console is watched: a Content-Security-Policy violation, an uncaught script error or any
dialog (``alert``, ``confirm``) fails the test when it ends. Nothing sleeps to synchronise:
Playwright's ``expect`` polls the page, :func:`tests.server.server_tools.poll` polls the API,
and a room is held in a tool step by a :class:`~tests.server.server_tools.Gate` the test opens.

Without Playwright or Chromium the tests are skipped; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.server.server_tools import Gate, poll

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Expect, Page

ROOT = Path(__file__).parents[2]
CHROMIUM = os.environ.get("OPENROOMS_TEST_CHROMIUM", "/usr/bin/chromium")
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
EXPECT_TIMEOUT_MS = 15_000
"""How long an ``expect`` polls the page (a loaded 2-CPU machine is slow, never wrong)."""
KEY = "browser-test-key-0123456789abcdef"
"""The API key of :func:`keyed_server`."""
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

GATED = {
    "id": "gated",
    "description": "Holds in its gate tool step until the test opens the gate.",
    "variables": {"port": 0},
    "nodes": {
        "prepare": {"type": "set", "assign": {"step": 1}},
        "gate": {
            "type": "tool",
            "tool": "gate",
            "args": {"port": "{{ vars.port }}"},
            "output": "opened",
        },
        "after": {"type": "set", "assign": {"finished": True}},
        "done": {"type": "end"},
    },
    "transitions": [
        {"from": "prepare", "to": "gate"},
        {"from": "gate", "to": "after"},
        {"from": "after", "to": "done"},
    ],
}
REVIEW = {
    "id": "review",
    "description": "Waits for a review whose form has one field of each kind.",
    "variables": {"title": "draft"},
    "inputs": {"properties": {"title": {"type": "string"}}},
    "nodes": {
        "review": {
            "type": "wait",
            "prompt": "Review {{ vars.title }}",
            "schema": {
                "type": "object",
                "properties": {
                    "score": {"type": "integer", "minimum": 1, "maximum": 5},
                    "comment": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "urgent": {"type": "boolean"},
                },
                "required": ["score"],
            },
            "output": "review",
        },
        "done": {"type": "end"},
    },
    "transitions": [{"from": "review", "to": "done"}],
}
NOTE = {
    "id": "note",
    "description": "Shows its note variable in a prompt and waits.",
    "variables": {"note": ""},
    "nodes": {
        "hold": {
            "type": "wait",
            "prompt": "Note: {{ vars.note }}",
            "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
        "done": {"type": "end"},
    },
    "transitions": [{"from": "hold", "to": "done"}],
}
WORKFLOWS: list[dict[str, Any] | str] = [
    (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8"),
    GATED,
    REVIEW,
    NOTE,
]
"""What every test server has registered (YAML text or a JSON definition)."""


def _browser_problem() -> str | None:
    """Why the browser tests cannot run here (None when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or OPENROOMS_TEST_CHROMIUM)"
    return None


def require_browser() -> None:
    """Skip the test when Playwright or Chromium is missing; under CI=true, fail it."""
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)


def server_env(**extra: str) -> dict[str, str]:
    """This process's environment without OpenRooms' variables (the test says what it means)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    for name in ("DATABASE_URL", "REDIS_URL", "PORT"):
        env.pop(name, None)
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


class DashboardServer:
    """One ``openrooms serve`` process over a SQLite file in *workdir*, with the ``gate``
    tool of tests/e2e/rq_tools.py, answering on a free loopback port; its output goes to
    ``serve.log`` in *workdir*. Ready (``/health`` answered 200) once constructed."""

    def __init__(self, workdir: Path, *, keys: tuple[str, ...] = ()) -> None:
        self.log = workdir / "serve.log"
        env = server_env(OPENROOMS_API_KEYS=",".join(keys)) if keys else server_env()
        with self.log.open("w") as sink:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "openrooms.cli",
                    "--db",
                    f"sqlite:///{workdir}/rooms.db",
                    "--plugin",
                    "tests.e2e.rq_tools",
                    "serve",
                    "--port",
                    "0",  # the kernel picks a free port; uvicorn prints it
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
        r = self.api.get(f"/api/rooms/{room_id}")
        assert r.status_code == 200, r.text
        found: dict[str, Any] = r.json()
        return found

    def until(self, room_id: str, status: str) -> dict[str, Any]:
        """The room, once the API says it is *status*."""
        return poll(
            lambda: (lambda room: room if room["status"] == status else None)(self.room(room_id)),
            f"room {room_id} to be {status}",
        )

    def kill(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) by its PID."""
        if hasattr(self, "api"):
            self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_server(workdir: Path, *, keys: tuple[str, ...] = ()) -> DashboardServer:
    """A :class:`DashboardServer` in *workdir* with :data:`WORKFLOWS` registered."""
    server = DashboardServer(workdir, keys=keys)
    try:
        for wf in WORKFLOWS:
            server.register(wf)
    except BaseException:
        server.kill()
        raise
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """The session's server: no API keys, :data:`WORKFLOWS` registered."""
    require_browser()
    s = start_server(tmp_path_factory.mktemp("dashboard"))
    yield s
    s.kill()


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[DashboardServer]:
    """A server of its own that requires the API key :data:`KEY`."""
    require_browser()
    s = start_server(tmp_path, keys=(KEY,))
    yield s
    s.kill()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A loopback gate: a ``gated`` room created with ``port=gate.port`` runs its ``gate``
    step until the test calls ``gate.answer()``."""
    g = Gate()
    yield g
    g.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once per session. Playwright gives the launch
    a fresh user-data-dir of its own (a temporary profile, removed on close)."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    artifacts = tempfile.mkdtemp(prefix="openrooms-chromium-")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            downloads_path=artifacts,
        )
        try:
            yield browser
        finally:
            browser.close()
    shutil.rmtree(artifacts, ignore_errors=True)


@pytest.fixture(scope="session")
def expect(chromium: Browser) -> Expect:
    """Playwright's ``expect`` (it polls the page until its condition holds or
    :data:`EXPECT_TIMEOUT_MS` runs out)."""
    from playwright.sync_api import expect

    return expect


class PageWatch:
    """What a page said that a test must not let pass: CSP violations on the console,
    uncaught script errors, dialogs (each dismissed at once). Other console errors (a 404
    the test asked for) are kept in ``console_errors`` for the test to look at."""

    def __init__(self, page: Page) -> None:
        self.csp: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        self.console_errors.append(message.text)
        if "Content Security Policy" in message.text:
            self.csp.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def problems(self) -> list[str]:
        """Everything that fails the test, one line each."""
        return [
            *(f"CSP violation: {m}" for m in self.csp),
            *(f"uncaught script error: {m}" for m in self.page_errors),
            *(f"dialog opened: {m}" for m in self.dialogs),
        ]


def open_page(browser: Browser, base_url: str) -> tuple[Page, PageWatch]:
    """A page in a fresh context (no cookies) whose relative URLs go to *base_url*."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    return page, PageWatch(page)


@pytest.fixture
def watched(chromium: Browser, server: DashboardServer) -> Iterator[tuple[Page, PageWatch]]:
    """A fresh page on the session's server and its :class:`PageWatch`; the test fails when
    the watch saw a problem."""
    page, watch = open_page(chromium, server.url)
    yield page, watch
    page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())


@pytest.fixture
def page(watched: tuple[Page, PageWatch]) -> Page:
    """:func:`watched`'s page."""
    return watched[0]
