"""The dashboard's defences in headless Chromium: room data is shown as text and never run
(a variable and a log line holding markup), the pages' Content-Security-Policy refuses an
inline script, and with API keys a key entered once opens every page through an HttpOnly,
SameSite=Strict session cookie.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import pytest

from tests.browser.conftest import KEY, PageWatch, open_page
from tests.browser.kit import DashboardServer
from tests.server.server_tools import Gate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Expect, Page


pytestmark = [pytest.mark.slow, pytest.mark.browser]


XSS = "<img src=x onerror=alert(1)>"


def test_room_data_is_shown_as_text_and_never_run(
    expect: Expect, watched: tuple[Page, PageWatch], server: DashboardServer
) -> None:
    page, watch = watched
    room = server.create_room("note", run=False, note=XSS)
    # the page is open before the room runs: its log arrives live, written by the script
    page.goto(f"/rooms/{room}")
    value = page.locator('#variables pre.value[data-var="note"]')
    expect(value).to_have_text(json.dumps(XSS))
    assert server.api.post(f"/api/rooms/{room}/run").status_code == 202
    expect(page.locator("#room-status")).to_have_text("waiting")
    waiting = page.locator('#log li.event[data-type="ROOM_WAITING"]')
    expect(waiting).to_contain_text(XSS)
    expect(page.locator("#actions").get_by_text(f"Note: {XSS}", exact=True)).to_be_visible()
    # the rooms list shows it too (its search box was given it as well)
    page.goto(f"/?q={room}")
    expect(page.locator(f'#rooms tr[data-room="{room}"]')).to_be_visible()
    page.goto(f"/rooms/{room}")
    expect(page.locator('#log li.event[data-type="ROOM_WAITING"]')).to_contain_text(XSS)
    assert page.locator("img").count() == 0, "room data became an element"
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert not watch.dialogs


def test_an_inline_script_is_refused_by_the_pages_csp(
    watched: tuple[Page, PageWatch], server: DashboardServer
) -> None:
    page, watch = watched
    response = page.goto("/")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    with pytest.raises(Exception, match=r"(?i)content security policy|script"):
        page.add_script_tag(content="window.__pwned = 1")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watch.csp, "the refused script left no CSP report on the console"
    watch.csp.clear()  # the one violation this test caused on purpose


def log_in(expect: Expect, page: Page, key: str) -> None:
    """Answer the login page *page* shows with *key*."""
    field = page.get_by_label(re.compile("key", re.I))
    field.fill(key)
    field.press("Enter")
    expect(page).not_to_have_url(re.compile(r"/login"))


def test_with_api_keys_a_key_entered_once_opens_every_page(
    expect: Expect, chromium: Browser, keyed_server: DashboardServer, gate: Gate
) -> None:
    room = keyed_server.create_room("gated", port=gate.port)
    gate.wait()
    page, watch = open_page(chromium, keyed_server.url)
    try:
        page.goto(f"/rooms/{room}")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        key = page.get_by_label(re.compile("key", re.I))
        key.fill("not-the-key-at-all-0000")
        key.press("Enter")
        expect(page.locator(".form-error")).to_be_visible()
        log_in(expect, page, KEY)
        expect(page).to_have_url(re.compile(rf"/rooms/{room}$"))
        cookies = page.context.cookies()
        assert cookies and all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
        assert all(KEY not in c["value"] for c in cookies), "the key itself is in a cookie"
        # the page's live parts (log stream, API reads) pass with the session cookie
        expect(page.locator("#room-status")).to_have_text("running")
        gate.answer()
        expect(page.locator("#room-status")).to_have_text("completed")
        expect(page.locator('#log li.event[data-type="ROOM_COMPLETED"]')).to_have_count(1)
        # the session opens the other pages, and the page's own writes (a form) pass
        for path, selector in (("/", "#rooms"), ("/workflows", "#workflows"), ("/tools", "#tools")):
            page.goto(path)
            expect(page.locator(selector)).to_be_visible()
        waiting = keyed_server.create_room("review", title="keyed")
        keyed_server.until(waiting, "waiting")
        page.goto(f"/rooms/{waiting}")
        form = page.locator("form#wait-form")
        form.get_by_label("score").fill("5")
        form.locator('[type="submit"]').click()
        expect(page.locator("#room-status")).to_have_text("completed")
        assert keyed_server.room(waiting)["variables"]["review"]["score"] == 5
        # logging out ends the session
        page.get_by_role("button", name="Log out").click()
        page.goto("/tools")
        expect(page).to_have_url(re.compile(r"/login\?next="))
    finally:
        page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())


def test_login_goes_on_to_local_pages_only(
    expect: Expect, chromium: Browser, keyed_server: DashboardServer
) -> None:
    page, watch = open_page(chromium, keyed_server.url)
    try:
        for target in ("https://example.com/", "//example.com/x", "/\\example.com"):
            page.context.clear_cookies()
            page.goto(f"/login?next={quote(target, safe='')}")
            log_in(expect, page, KEY)
            assert urlsplit(page.url).netloc == urlsplit(keyed_server.url).netloc, page.url
            assert urlsplit(page.url).path == "/", page.url
    finally:
        page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())


class _OtherSite(http.server.BaseHTTPRequestHandler):
    """A blank page on another site: ``localhost`` is not ``127.0.0.1``'s site."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><p>hello"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_form_posted_from_another_site_does_not_act_for_the_session(
    expect: Expect, chromium: Browser, keyed_server: DashboardServer
) -> None:
    room = keyed_server.create_room("review", title="forged")
    keyed_server.until(room, "waiting")
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtherSite)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    page, watch = open_page(chromium, keyed_server.url)
    try:
        page.goto("/login")
        log_in(expect, page, KEY)
        page.goto(f"http://localhost:{other.server_address[1]}/")
        with page.expect_navigation() as navigation:
            page.evaluate(
                """(action) => { const f = document.createElement('form');
                    f.method = 'post'; f.action = action;
                    const reason = document.createElement('input');
                    reason.name = 'reason'; reason.value = 'forged';
                    f.append(reason); document.body.append(f); f.submit(); }""",
                f"{keyed_server.url}/rooms/{room}/cancel",
            )
        answer = navigation.value
        assert answer is not None and answer.status in (401, 403), answer and answer.status
        assert answer.request.all_headers()["sec-fetch-site"] == "cross-site"
        assert keyed_server.room(room)["status"] == "waiting", "a cross-site form acted"
    finally:
        page.context.close()
        other.shutdown()
        other.server_close()
    assert not watch.problems(), "\n".join(watch.problems())
