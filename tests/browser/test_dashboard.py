"""The dashboard in headless Chromium against a real ``openrooms serve``: the pages open, a
room moves live without a reload, a waiting room is answered through its generated form
(with the mouse, and with the keyboard alone), bad input gets the server's message, a room
is cancelled, room data is shown as text and never run, a missing room has its own page,
and with API keys a key entered once opens every page.

Every test's page is watched (tests/browser/conftest.py): a CSP violation, an uncaught
script error or a dialog fails it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import KEY, PageWatch, open_page, start_server
from tests.browser.kit import DashboardServer
from tests.server.server_tools import Gate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Expect, Page


pytestmark = [pytest.mark.slow, pytest.mark.browser]

XSS = "<img src=x onerror=alert(1)>"


def test_the_rooms_list_shows_rooms_by_status_and_finds_them(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    waiting = server.create_room("review", title="list")
    server.until(waiting, "waiting")
    idle = server.create_room("review", run=False, title="idle")
    response = page.goto("/")
    assert response is not None and response.status == 200
    nav = page.get_by_role("navigation", name="Primary")
    for name in ("Rooms", "Workflows", "Tools"):
        expect(nav.get_by_role("link", name=name)).to_be_visible()
    row = page.locator(f'#rooms tr[data-room="{waiting}"]')
    expect(row.locator(".room-status")).to_have_text("waiting")
    expect(row.locator(".room-workflow")).to_contain_text("review")
    expect(row.locator(".room-node")).to_contain_text("review")
    # the count of a status is what the API says
    listed = server.api.get("/api/rooms", params={"status": "waiting", "limit": 500}).json()
    count = page.locator('a.status-filter[data-status="waiting"] .count')
    expect(count).to_have_text(str(len(listed["items"])))
    # filter: only waiting rooms are listed
    page.locator('a.status-filter[data-status="waiting"]').click()
    expect(page.locator(f'#rooms tr[data-room="{waiting}"]')).to_be_visible()
    expect(page.locator(f'#rooms tr[data-room="{idle}"]')).to_have_count(0)
    statuses = page.locator("#rooms tr[data-room] .room-status").all_inner_texts()
    assert statuses and set(statuses) == {"waiting"}
    # search by an id's prefix finds that room alone
    page.goto("/")
    page.get_by_label("Search rooms").fill(idle[:12])
    page.get_by_label("Search rooms").press("Enter")
    expect(page.locator("#rooms tr[data-room]")).to_have_count(1)
    expect(page.locator(f'#rooms tr[data-room="{idle}"]')).to_be_visible()
    # its id links to its page
    page.locator(f'#rooms tr[data-room="{idle}"] .room-id a').click()
    expect(page).to_have_url(re.compile(rf"/rooms/{idle}$"))
    expect(page.locator("h1")).to_contain_text(idle)


def test_the_rooms_list_pages_through_every_room_once(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    for i in range(7):
        server.create_room("review", run=False, title=f"page {i}")
    listed = [r["id"] for r in server.api.get("/api/rooms", params={"limit": 500}).json()["items"]]
    seen: list[str] = []
    page.goto("/?limit=3")
    for _ in range(len(listed)):
        rows = page.locator("#rooms tr[data-room]")
        expect(rows.first).to_be_visible()
        shown = rows.evaluate_all("els => els.map(e => e.dataset.room)")
        assert 0 < len(shown) <= 3
        seen += shown
        older = page.locator("a#next-page")
        if older.count() == 0:
            break
        older.click()
        expect(page.locator("#rooms tr[data-room]").first).not_to_have_attribute(
            "data-room", shown[0]
        )
    assert seen == listed  # newest first, each once, the last page without a next link


def test_a_room_moves_live_on_its_page_without_a_reload(
    expect: Expect, page: Page, server: DashboardServer, gate: Gate
) -> None:
    room = server.create_room("gated", port=gate.port)
    gate.wait()  # the room is inside its gate step
    page.goto(f"/rooms/{room}")
    expect(page.locator("#room-status")).to_have_text("running")
    expect(page.locator("#room-node")).to_have_text("gate")
    graph = page.locator("svg#graph")
    expect(graph.locator('g.node[data-node="gate"]')).to_have_class(re.compile(r"\bcurrent\b"))
    expect(graph.locator('g.node[data-node="prepare"]')).to_have_class(re.compile(r"\bvisited\b"))
    # a mark a reload would wipe out
    page.evaluate("window.__notReloaded = true")
    gate.answer()
    expect(page.locator("#room-status")).to_have_text("completed")
    expect(page.locator("#room-node")).to_have_text("done")
    expect(graph.locator('g.node[data-node="gate"]')).to_have_class(re.compile(r"\bvisited\b"))
    expect(graph.locator('g.node[data-node="done"]')).to_have_class(re.compile(r"\bcurrent\b"))
    log = page.locator("#log")
    expect(log.locator('li.event[data-type="ROOM_COMPLETED"]')).to_have_count(1)
    expect(log.locator('li.event[data-type="TOOL_CALLED"] details.payload')).to_have_count(1)
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"
    # the log on the page is the room's log, in order, each event once
    seqs = [
        int(s) for s in log.locator("li.event").evaluate_all("els => els.map(e => e.dataset.seq)")
    ]
    api_seqs = [e["seq"] for e in server.api.get(f"/api/rooms/{room}/logs").json()["items"]]
    assert seqs == api_seqs
    assert server.room(room)["variables"]["opened"] == "opened"


def test_the_rooms_list_updates_live(
    expect: Expect, page: Page, server: DashboardServer, gate: Gate
) -> None:
    room = server.create_room("gated", port=gate.port)
    gate.wait()
    page.goto("/")
    row = page.locator(f'#rooms tr[data-room="{room}"]')
    expect(row.locator(".room-status")).to_have_text("running")
    page.evaluate("window.__notReloaded = true")
    gate.answer()
    expect(row.locator(".room-status")).to_have_text("completed")
    expect(row.locator(".room-node")).to_have_text("done")
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded"


def test_a_waiting_room_is_answered_through_its_form(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("order_approval", amount=250)
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    expect(page.locator("#room-status")).to_have_text("waiting")
    form = page.locator("form#wait-form")
    expect(page.locator("#actions").get_by_text("Approve the order of 300.0?")).to_be_visible()
    form.get_by_label("approved").check()
    form.get_by_label("by").fill("sam")
    form.locator('[type="submit"]').click()
    expect(page).to_have_url(re.compile(rf"/rooms/{room}$"))
    expect(page.locator("#room-status")).to_have_text("completed")
    expect(page.locator("#room-node")).to_have_text("done")
    answered = server.room(room)
    assert answered["variables"]["decision"] == {"approved": True, "by": "sam"}
    assert answered["variables"]["approved_by"] == "sam"


def test_the_wait_form_has_a_field_of_the_right_kind_per_property(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="kinds")
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    form = page.locator("form#wait-form")
    expect(form.get_by_label("score")).to_have_attribute("type", "number")
    expect(form.get_by_label("score")).to_have_js_property("required", True)
    expect(form.get_by_label("comment")).to_have_js_property("required", False)
    expect(form.get_by_label("urgent")).to_have_attribute("type", "checkbox")
    expect(form.get_by_label("tags")).to_have_js_property("tagName", "TEXTAREA")


def test_bad_input_gets_the_servers_message_next_to_its_field(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="bad")
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    form = page.locator("form#wait-form")
    form.get_by_label("score").fill("3")
    form.get_by_label("tags").fill('{"not": "a list"}')  # JSON, of the wrong type
    form.locator('[type="submit"]').click()
    error = page.locator("#error-tags")
    expect(error).to_be_visible()
    expect(error).to_contain_text("array")
    # nothing was delivered: the room still waits, and the form keeps what was typed
    assert server.room(room)["status"] == "waiting"
    expect(page.locator("form#wait-form").get_by_label("score")).to_have_value("3")
    # not JSON at all
    page.locator("form#wait-form").get_by_label("tags").fill("[unclosed")
    page.locator("form#wait-form").locator('[type="submit"]').click()
    expect(page.locator("#error-tags")).to_contain_text("JSON")
    assert server.room(room)["status"] == "waiting"


def test_the_wait_form_is_filled_and_sent_with_the_keyboard_alone(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="keys")
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    expect(page.locator("form#wait-form")).to_be_visible()
    typed = {"score": "4", "comment": "fine by me", "tags": '["a", "b"]'}
    sent = False
    for _ in range(100):  # Tab through the page until the form's submit button is reached
        page.keyboard.press("Tab")
        focused = page.evaluate(
            """() => { const e = document.activeElement;
                return {name: e.name || '', type: e.type || '', inForm: !!e.closest('#wait-form'),
                        tag: e.tagName}; }"""
        )
        if not focused["inForm"]:
            continue
        if focused["name"] in typed:
            page.keyboard.type(typed.pop(focused["name"]))
        elif focused["name"] == "urgent":
            page.keyboard.press("Space")
        elif focused["type"] == "submit":
            page.keyboard.press("Enter")
            sent = True
            break
    assert sent, "Tab never reached the wait form's submit button"
    assert not typed, f"Tab never reached the fields {sorted(typed)}"
    expect(page.locator("#room-status")).to_have_text("completed")
    review = server.room(room)["variables"]["review"]
    assert review == {"score": 4, "comment": "fine by me", "tags": ["a", "b"], "urgent": True}


def test_a_room_is_created_from_its_workflows_form(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    page.goto("/new?workflow=order_approval")
    form = page.locator("form").filter(has=page.get_by_label("amount"))
    form.get_by_label("amount").fill("-5")  # the inputs schema says minimum 0
    form.locator('[type="submit"]').click()
    expect(page.locator("#error-amount")).to_be_visible()
    expect(page.locator("#error-amount")).to_contain_text("0")
    form = page.locator("form").filter(has=page.get_by_label("amount"))
    form.get_by_label("amount").fill("40")
    form.locator('[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/rooms/[0-9a-z]+$"))
    expect(page.locator("#room-status")).to_have_text("completed")
    room = server.room(page.url.rsplit("/", 1)[1])
    assert room["workflow"]["id"] == "order_approval"
    assert room["variables"]["amount"] == 40 and room["variables"]["total"] == 48.0


def test_the_log_loads_older_events_on_scroll(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("loop", limit=150)
    server.until(room, "completed")
    seqs = [e["seq"] for e in server.events(room)]
    assert len(seqs) > 400, len(seqs)  # more than two of the page's pages
    page.goto(f"/rooms/{room}")
    events = page.locator("#log li.event")
    expect(events.first).to_be_visible()
    shown = events.count()
    assert 0 < shown < len(seqs), "the whole log was sent at once"
    for _ in range(len(seqs)):
        if shown == len(seqs):
            break
        events.last.scroll_into_view_if_needed()
        expect(events).not_to_have_count(shown)  # polls until the next page is appended
        shown = events.count()
    expect(events).to_have_count(len(seqs))
    got = [int(x) for x in events.evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert got == seqs


def test_model_and_tool_calls_unfold_and_the_log_filters(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("support_triage")
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    llm = page.locator('#log li.event[data-type="LLM_CALLED"]')
    expect(llm).to_have_count(1)
    payload = llm.locator("details.payload")
    expect(payload).not_to_have_attribute("open", "")
    expect(payload.get_by_text("Charged twice for A-1001.")).to_be_hidden()
    payload.locator("summary").click()
    expect(payload).to_have_attribute("open", "")
    # the event holds the call (model, agent, usage) and the reply; the conversation sent
    # is the MESSAGES_ADDED event's
    expect(payload).to_contain_text('"agent": "triager"')
    expect(payload).to_contain_text("Charged twice for A-1001.")
    tool = page.locator('#log li.event[data-type="TOOL_CALLED"] details.payload')
    tool.locator("summary").click()
    expect(tool).to_contain_text("orders.example.com/orders/A-1001")
    logged = server.events(room)
    # by type (a filter applies as soon as it is chosen)
    page.get_by_label("Type").select_option("NODE_STARTED")
    started = [e["seq"] for e in logged if e["type"] == "NODE_STARTED"]
    expect(page.locator("#log li.event")).to_have_count(len(started))
    types = page.locator("#log li.event").evaluate_all("els => els.map(e => e.dataset.type)")
    assert set(types) == {"NODE_STARTED"}
    # by level: info and above leaves the debug events out
    page.goto(f"/rooms/{room}")
    page.locator("#log-level").select_option("INFO")
    not_debug = [e for e in logged if e["level"].lower() != "debug"]
    assert len(not_debug) < len(logged)  # the filter has something to leave out
    expect(page.locator("#log li.event")).to_have_count(len(not_debug))
    expect(page.locator('#log li.event[data-level="debug"]')).to_have_count(0)


def test_an_error_shows_its_traceback_folded(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("broken")
    server.until(room, "failed")
    page.goto(f"/rooms/{room}")
    expect(page.locator("#room-status")).to_have_text("failed")
    expect(page.locator('svg#graph g.node[data-node="divide"]')).to_have_class(
        re.compile(r"\bfailed\b")
    )
    folded = page.locator('#log li.event[data-level="error"] details').first
    expect(folded).to_be_attached()
    expect(folded).not_to_have_attribute("open", "")
    folded.locator("summary").click()
    expect(folded).to_contain_text("Traceback")
    expect(folded.locator("pre")).to_contain_text("division by zero")


def test_a_room_is_cancelled_from_its_page(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="cancel me")
    server.until(room, "waiting")
    page.goto(f"/rooms/{room}")
    page.locator("#cancel-room").click()
    expect(page).to_have_url(re.compile(rf"/rooms/{room}$"))
    expect(page.locator("#room-status")).to_have_text("cancelled")
    assert server.room(room)["status"] == "cancelled"
    expect(page.locator("form#wait-form")).to_have_count(0)


def test_resume_runs_a_created_room_and_says_why_it_cannot_run_a_busy_one(
    expect: Expect, page: Page, server: DashboardServer, gate: Gate
) -> None:
    room = server.create_room("gated", run=False, port=gate.port)
    page.goto(f"/rooms/{room}")
    expect(page.locator("#room-status")).to_have_text("created")
    page.locator("#resume-room").click()
    gate.wait()  # it runs, held in its gate step
    expect(page.locator("#room-status")).to_have_text("running")
    page.locator("#resume-room").click()  # a runner has it now
    refused = page.locator('.form-error[role="alert"]')
    expect(refused).to_be_visible()
    expect(refused).to_contain_text(re.compile("running|busy|runner", re.I))
    assert server.room(room)["status"] == "running"
    gate.answer()
    expect(page.locator("#room-status")).to_have_text("completed")
    assert gate.arrived == 1, "the refused resume ran the room a second time"


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


def test_a_missing_room_has_a_not_found_page(
    expect: Expect, watched: tuple[Page, PageWatch], server: DashboardServer
) -> None:
    page, _ = watched
    response = page.goto("/rooms/no-such-room")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page.locator("main#main")).to_contain_text(
        re.compile(r"room '?no-such-room'? not found")
    )
    expect(
        page.get_by_role("navigation", name="Primary").get_by_role("link", name="Rooms")
    ).to_be_visible()


def test_workflows_and_tools_pages_list_what_is_registered(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    page.goto("/workflows")
    row = page.locator('#workflows tr[data-workflow="order_approval"]')
    expect(row).to_be_visible()
    row.get_by_role("link").first.click()
    expect(page.locator("svg#graph g.node[data-node='approval']")).to_be_visible()
    expect(page.locator("pre#definition")).to_contain_text("approval_threshold")
    page.goto("/tools")
    expect(page.locator('#tools tr[data-tool="calculator"] pre.schema')).to_contain_text(
        "expression"
    )
    expect(page.locator('#tools tr[data-tool="gate"]')).to_be_visible()


def test_with_api_keys_a_key_entered_once_opens_every_page(
    expect: Expect, chromium: Browser, keyed_server: DashboardServer, tmp_path: Path
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


def test_the_page_says_when_the_server_is_gone_and_recovers(
    expect: Expect, chromium: Browser, tmp_path: Path
) -> None:
    servers = [start_server(tmp_path)]
    page, watch = open_page(chromium, servers[0].url)
    try:
        room = servers[0].create_room("review", title="gone")
        servers[0].until(room, "waiting")
        page.goto(f"/rooms/{room}")
        banner = page.locator("#live-status")
        expect(page.locator("#room-status")).to_have_text("waiting")
        expect(banner).not_to_contain_text("disconnected")
        port = int(servers[0].url.rsplit(":", 1)[1])
        servers[0].crash()
        expect(banner).to_have_text(re.compile(r"disconnected . retrying"))
        expect(banner).to_have_attribute("role", "status")
        servers.append(start_server(tmp_path, register=False, port=port))
        expect(banner).not_to_contain_text("disconnected")
        r = servers[1].api.post(f"/api/rooms/{room}/input", json={"data": {"score": 2}})
        assert r.status_code == 202, r.text
        expect(page.locator("#room-status")).to_have_text("completed")
    finally:
        page.context.close()
        for s in servers:
            s.kill()
    assert not watch.problems(), "\n".join(watch.problems())


CONTROLS_WITHOUT_A_NAME = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby') && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 120))"""
LOW_CONTRAST = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const el = t.parentElement;
    if (!t.textContent.trim() || !el.getClientRects().length || el.closest('svg')) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.clip === 'rect(0px, 0px, 0px, 0px)') continue;
    const fg = rgb(style.color), bg = background(el);
    const [a, b] = [lum(fg.slice(0, 3)), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const where = `${el.tagName}.${el.className}: ${t.textContent.trim().slice(0, 40)}`;
    if (!(ratio >= 4.5)) low.push(`${ratio.toFixed(2)} ${where}`);
  }
  return low;
}"""


def test_every_page_has_landmarks_named_controls_and_readable_contrast(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("review", title="a11y")
    server.until(room, "waiting")
    for path in (
        "/",
        f"/rooms/{room}",
        "/workflows",
        "/workflows/review",
        "/tools",
        "/new?workflow=order_approval",
        "/rooms/no-such-room",
    ):
        page.goto(path)
        for role in ("banner", "navigation", "main"):
            expect(page.get_by_role(role).first).to_be_attached()
        assert page.evaluate(CONTROLS_WITHOUT_A_NAME) == [], path
        assert page.evaluate(LOW_CONTRAST) == [], path
        headers = page.locator("table th")
        scopes = headers.evaluate_all("els => els.map(e => e.getAttribute('scope'))")
        assert all(s in ("col", "row") for s in scopes), (path, scopes)


def test_focus_is_visible_on_links_and_controls(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    page.goto("/")
    for _ in range(6):
        page.keyboard.press("Tab")
        ring = page.evaluate(
            """() => { const s = getComputedStyle(document.activeElement);
                return {tag: document.activeElement.tagName, outline: s.outlineStyle,
                        width: parseFloat(s.outlineWidth), shadow: s.boxShadow}; }"""
        )
        assert ring["tag"] != "BODY"
        assert (ring["outline"] != "none" and ring["width"] > 0) or ring["shadow"] != "none", ring
