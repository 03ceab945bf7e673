"""Fixtures for the dashboard in a real browser: ``openrooms serve`` as a subprocess on a free
loopback port over a temporary SQLite file, and Debian's headless Chromium driven by
Playwright (``executable_path``: Playwright's own browser download is never used).

The server (with the workflows of :data:`WORKFLOWS` registered over its API) and the browser
are started once for this package, and stopped when its last test ends, before the rest of
the suite runs; each test gets a fresh browser context (its own cookies) and a page whose
console is watched: a Content-Security-Policy violation, an uncaught script error or any
dialog (``alert``, ``confirm``) fails the test when it ends. Nothing sleeps to synchronise:
Playwright's ``expect`` polls the page, :func:`tests.server.server_tools.poll` polls the API,
and a room is held in a tool step by a :class:`~tests.server.server_tools.Gate` the test opens.

Without Playwright or Chromium the tests are skipped; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.kit import ROOT, DashboardServer, browser_problem, launch_chromium
from tests.server.server_tools import Gate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Expect, Page

EXPECT_TIMEOUT_MS = 15_000
"""How long an ``expect`` polls the page (a loaded 2-CPU machine is slow, never wrong)."""
KEY = "browser-test-key-0123456789abcdef"
"""The API key of :func:`keyed_server`."""

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
LOOP = {
    "id": "loop",
    "description": "Counts to its limit, one step at a time: a long log.",
    "variables": {"n": 0, "limit": 150},
    "inputs": {"properties": {"limit": {"type": "integer", "minimum": 1}}},
    "nodes": {
        "count": {"type": "set", "assign": {"n": "{{ vars.n + 1 }}"}},
        "done": {"type": "end"},
    },
    "transitions": [
        {"from": "count", "to": "done", "when": "vars.n >= vars.limit"},
        {"from": "count", "to": "count"},
    ],
}
BROKEN = {
    "id": "broken",
    "description": "Fails in its tool step.",
    "nodes": {
        "divide": {
            "type": "tool",
            "tool": "calculator",
            "args": {"expression": "1 / 0"},
            "output": "quotient",
        },
        "done": {"type": "end"},
    },
    "transitions": [{"from": "divide", "to": "done"}],
}
WORKFLOWS: list[dict[str, Any] | str] = [
    (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8"),
    GATED,
    (ROOT / "examples" / "support_triage.yaml").read_text(encoding="utf-8"),
    REVIEW,
    NOTE,
    LOOP,
    BROKEN,
]
"""What every test server has registered (YAML text or a JSON definition)."""
GLOBAL_ARGS = (
    "--plugin",
    "tests.e2e.rq_tools",
    "--script",
    str(ROOT / "examples" / "scripts" / "support_triage.yaml"),
)
"""The ``gate`` tool, and support_triage's agents answered offline (once: its script holds
one room's replies)."""


def require_browser() -> None:
    """Skip the test when Playwright or Chromium is missing; under CI=true, fail it."""
    problem = browser_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)


def start_server(
    workdir: Path, *, keys: tuple[str, ...] = (), register: bool = True, port: int = 0
) -> DashboardServer:
    """A :class:`DashboardServer` in *workdir* with :data:`GLOBAL_ARGS` and
    :data:`WORKFLOWS` registered (unless *register* is False: a
    restart on a store that has them)."""
    server = DashboardServer(workdir, keys=keys, global_args=GLOBAL_ARGS, port=port)
    try:
        for wf in WORKFLOWS if register else ():
            server.register(wf)
    except BaseException:
        server.kill()
        raise
    return server


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the test, for :func:`_server_log_on_failure`."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _server_log_on_failure(request: pytest.FixtureRequest, s: DashboardServer) -> None:
    """Print the end of the server's log when the test failed: pytest shows it with the
    failure (a 500 in a page says no more than its request id)."""
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print("--- the server's log (last 120 lines) ---")
        print("\n".join(s.output().splitlines()[-120:]))


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """The package's server: no API keys, :data:`WORKFLOWS` registered."""
    require_browser()
    s = start_server(tmp_path_factory.mktemp("dashboard"))
    yield s
    s.kill()


@pytest.fixture
def keyed_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DashboardServer]:
    """A server of its own that requires the API key :data:`KEY`."""
    require_browser()
    s = start_server(tmp_path, keys=(KEY,))
    yield s
    _server_log_on_failure(request, s)
    s.kill()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A loopback gate: a ``gated`` room created with ``port=gate.port`` runs its ``gate``
    step until the test calls ``gate.answer()``."""
    g = Gate()
    yield g
    g.close()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for the package (:func:`launch_chromium`)."""
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="package")
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


def open_page(
    browser: Browser, base_url: str, *, javascript: bool = True
) -> tuple[Page, PageWatch]:
    """A page in a fresh context (no cookies) whose relative URLs go to *base_url*; with
    scripts off unless *javascript*."""
    context = browser.new_context(base_url=base_url, java_script_enabled=javascript)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    return page, PageWatch(page)


@pytest.fixture
def watched(
    chromium: Browser, server: DashboardServer, request: pytest.FixtureRequest
) -> Iterator[tuple[Page, PageWatch]]:
    """A fresh page on the package's server and its :class:`PageWatch`; the test fails when
    the watch saw a problem."""
    page, watch = open_page(chromium, server.url)
    yield page, watch
    _server_log_on_failure(request, server)
    page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())


@pytest.fixture
def page(watched: tuple[Page, PageWatch]) -> Page:
    """:func:`watched`'s page."""
    return watched[0]
