"""The dashboard's pages in headless Chromium against a real ``openrooms serve``: the rooms
list (counts per status, filters, search, keyset pages, live refresh), workflows (each
version with its own graph) and tools, a room's page following the room live (status,
current node, graph, log) without a reload, its usage, its log loaded on scroll, filtered,
with model and tool calls and tracebacks folded (live and after a reload), a missing room's
page, and the banner when the server is gone.

Every test's page is watched (tests/browser/conftest.py): a CSP violation, an uncaught
script error or a dialog fails it.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import PageWatch, open_page, start_server
from tests.browser.kit import DashboardServer
from tests.server.server_tools import Gate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Expect, Page


pytestmark = [pytest.mark.slow, pytest.mark.browser]


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
    # search by a prefix of its id finds that room alone (all but its last digit: ids of
    # rooms made in one millisecond share their first dozen)
    page.goto("/")
    page.get_by_label("Search rooms").fill(idle[:-1])
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


def test_a_workflows_versions_each_show_their_own_graph(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    for version, middle in ((1, []), (2, ["check"])):
        path = ["start", *middle, "done"]
        server.register(
            {
                "id": "versioned",
                "version": version,
                "description": f"version {version}",
                "nodes": {
                    **{n: {"type": "set", "assign": {"at": n}} for n in path[:-1]},
                    "done": {"type": "end"},
                },
                "transitions": [{"from": a, "to": b} for a, b in itertools.pairwise(path)],
            }
        )
    page.goto("/workflows")
    row = page.locator('#workflows tr[data-workflow="versioned"]')
    expect(row).to_contain_text("version 2")
    row.get_by_role("link", name="versioned", exact=True).click()
    graph = page.locator("svg#graph")
    expect(graph.locator('g.node[data-node="check"]')).to_have_count(1)
    expect(page.locator("pre#definition")).to_contain_text("version 2")
    page.get_by_role("link", name="v1", exact=True).click()
    expect(page).to_have_url(re.compile(r"/workflows/versioned\?version=1$"))
    expect(graph.locator("g.node")).to_have_count(2)
    expect(graph.locator('g.node[data-node="check"]')).to_have_count(0)
    expect(page.locator("pre#definition")).to_contain_text("version 1")


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
    usage = page.locator("#usage")
    expect(usage).to_contain_text(re.compile(r"Model calls\s*1(?!\d)"))
    expect(usage).to_contain_text(re.compile(r"Tool calls\s*1(?!\d)"))
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


def test_an_error_shows_its_traceback_folded_live_and_after_a_reload(
    expect: Expect, page: Page, server: DashboardServer
) -> None:
    room = server.create_room("broken", run=False)
    page.goto(f"/rooms/{room}")  # open before it runs: the failure arrives live
    expect(page.locator("#room-status")).to_have_text("created")
    assert server.api.post(f"/api/rooms/{room}/run").status_code == 202
    for when in ("live", "after a reload"):
        expect(page.locator("#room-status"), when).to_have_text("failed")
        expect(page.locator('svg#graph g.node[data-node="divide"]'), when).to_have_class(
            re.compile(r"\bfailed\b")
        )
        folded = page.locator('#log li.event[data-level="error"] details').first
        expect(folded, when).to_be_attached()
        expect(folded, when).not_to_have_attribute("open", "")
        folded.locator("summary").click()
        expect(folded, when).to_contain_text("Traceback")
        expect(folded.locator("pre"), when).to_contain_text("division by zero")
        page.reload()


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
        # the stream went on from the last event the page had: each event once, in order
        log = page.locator("#log li.event")
        expect(log.last).to_have_attribute("data-type", "ROOM_COMPLETED")
        seqs = [int(x) for x in log.evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == [e["seq"] for e in servers[1].events(room)]
    finally:
        page.context.close()
        for s in servers:
            s.kill()
    assert not watch.problems(), "\n".join(watch.problems())
