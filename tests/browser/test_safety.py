"""The dashboard's defences in headless Chromium: room data is shown as text and never run
(a variable and a log line holding markup), the pages' Content-Security-Policy refuses an
inline script, and with API keys a key entered once opens every page through an HttpOnly,
SameSite=Strict session cookie.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import KEY, PageWatch, open_page
from tests.browser.kit import DashboardServer

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


def test_with_api_keys_a_key_entered_once_opens_every_page(
    expect: Expect, chromium: Browser, keyed_server: DashboardServer
) -> None:
    room = keyed_server.create_room("review", title="keyed")
    keyed_server.until(room, "waiting")
    page, watch = open_page(chromium, keyed_server.url)
    try:
        page.goto(f"/rooms/{room}")
        expect(page).to_have_url(re.compile(r"/login\?next="))
        key = page.get_by_label(re.compile("key", re.I))
        key.fill("not-the-key-at-all-0000")
        key.press("Enter")
        expect(page.locator(".form-error")).to_be_visible()
        page.get_by_label(re.compile("key", re.I)).fill(KEY)
        page.get_by_label(re.compile("key", re.I)).press("Enter")
        expect(page).to_have_url(re.compile(rf"/rooms/{room}$"))
        expect(page.locator("#room-status")).to_have_text("waiting")
        cookies = page.context.cookies()
        assert cookies and all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
        assert all(KEY not in c["value"] for c in cookies), "the key itself is in a cookie"
        # the session opens the other pages, and the page's own writes (a form) pass
        for path, selector in (("/", "#rooms"), ("/workflows", "#workflows"), ("/tools", "#tools")):
            page.goto(path)
            expect(page.locator(selector)).to_be_visible()
        page.goto(f"/rooms/{room}")
        form = page.locator("form#wait-form")
        form.get_by_label("score").fill("5")
        form.locator('[type="submit"]').click()
        expect(page.locator("#room-status")).to_have_text("completed")
        assert keyed_server.room(room)["variables"]["review"]["score"] == 5
    finally:
        page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())
