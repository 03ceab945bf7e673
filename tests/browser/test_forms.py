"""Acting on rooms from the dashboard in headless Chromium: a waiting room answered through
the form generated from its wait node's schema (with the mouse, and with the keyboard alone),
the server's validation messages next to their fields, a room created from a workflow's
form, cancelled, and resumed; and every form with scripts turned off.

Every test's page is watched (tests/browser/conftest.py): a CSP violation, an uncaught
script error or a dialog fails it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.browser.conftest import open_page
from tests.browser.kit import DashboardServer
from tests.server.server_tools import Gate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Expect, Page


pytestmark = [pytest.mark.slow, pytest.mark.browser]


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


def test_without_javascript_every_form_still_works(
    expect: Expect, chromium: Browser, server: DashboardServer
) -> None:
    waiting = server.create_room("review", title="no script")
    server.until(waiting, "waiting")
    doomed = server.create_room("review", title="no script, cancelled")
    server.until(doomed, "waiting")
    page, watch = open_page(chromium, server.url, javascript=False)
    try:
        page.goto("/")
        row = page.locator(f'#rooms tr[data-room="{waiting}"]')
        expect(row.locator(".room-status")).to_have_text("waiting")
        page.goto(f"/rooms/{waiting}")
        expect(page.locator("#log li.event")).to_have_count(len(server.events(waiting)))
        expect(page.locator('svg#graph g.node[data-node="review"]')).to_have_class(
            re.compile(r"\bcurrent\b")
        )
        form = page.locator("form#wait-form")
        form.get_by_label("score").fill("9")  # above the maximum: the server says so
        form.locator('[type="submit"]').click()
        expect(page.locator("#error-score")).to_be_visible()
        page.locator("form#wait-form").get_by_label("score").fill("2")
        page.locator("form#wait-form").locator('[type="submit"]').click()
        expect(page).to_have_url(re.compile(rf"/rooms/{waiting}$"))
        server.until(waiting, "completed")
        page.reload()  # nothing updates this page by itself
        expect(page.locator("#room-status")).to_have_text("completed")
        page.goto("/new?workflow=order_approval")
        page.get_by_label("amount").fill("40")
        page.locator('form [type="submit"]').last.click()
        expect(page).to_have_url(re.compile(r"/rooms/[0-9a-z]+$"))
        created = page.url.rsplit("/", 1)[1]
        assert server.until(created, "completed")["variables"]["amount"] == 40
        page.goto(f"/rooms/{doomed}")
        page.locator("#cancel-room").click()
        expect(page.locator("#room-status")).to_have_text("cancelled")
        assert server.room(doomed)["status"] == "cancelled"
    finally:
        page.context.close()
    assert not watch.problems(), "\n".join(watch.problems())
