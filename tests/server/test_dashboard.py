"""The dashboard's pages through Starlette's TestClient over a real SQLite file and the
in-process executor: the DOM contract's ids, hostile data shown only as text, the forms
(wait, cancel, resume, create), the rooms list's filters and pages, the log's first page,
and the pages' Content-Security-Policy."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from openrooms.runtime import Runtime
from openrooms_server import Settings, create_app
from openrooms_server.dashboard import DASHBOARD_CSP
from openrooms_server.security import API_CSP
from tests.server.dashboard_tools import HOSTILE
from tests.server.server_tools import assert_error, poll

ROOT = Path(__file__).parents[2]
ORDER_YAML = (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8")
YAML = {"content-type": "application/yaml"}

# every tag the templates write: anything else in a page came from data
OUR_TAGS = frozenset(
    [
        "html",
        "head",
        "meta",
        "title",
        "link",
        "script",
        "body",
        "a",
        "header",
        "nav",
        "ul",
        "li",
        "form",
        "input",
        "button",
        "div",
        "main",
        "footer",
        "p",
        "h1",
        "h2",
        "h3",
        "section",
        "dl",
        "dt",
        "dd",
        "span",
        "pre",
        "table",
        "caption",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "time",
        "ol",
        "details",
        "summary",
        "label",
        "select",
        "option",
        "textarea",
        "svg",
        "defs",
        "marker",
        "path",
        "g",
        "rect",
        "text",
        "code",
    ]
)


class Page(HTMLParser):
    """A page parsed: its tags with their attributes, its text, its ids."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        """The attributes of every *tag* element whose attributes include *attrs*
        (``class_`` matches one of its classes)."""
        found = []
        for t, a in self.tags:
            if tag is not None and t != tag:
                continue
            ok = True
            for k, v in attrs.items():
                if k == "class_":
                    ok = ok and v in a.get("class", "").split()
                else:
                    ok = ok and a.get(k.rstrip("_").replace("_", "-")) == v
            if ok:
                found.append(a)
        return found


def inert(html: str) -> Page:
    """*html* parsed, after checking that no element or attribute in it came from data: only
    the templates' tags, no event handler or inline style, scripts only our static modules."""
    page = Page(html)
    for tag, attrs in page.tags:
        assert tag in OUR_TAGS, f"<{tag}> is not a tag the templates write"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}=...>"
            assert name != "style", f"<{tag} style=...>"
            assert not value.lower().lstrip().startswith("javascript:"), (tag, name, value)
        if tag == "script":
            assert attrs.get("type") == "module" and attrs["src"].startswith("/static/"), attrs
            assert set(attrs) == {"type", "src"}
    return page


class _Collect(HTMLParser):
    """The text of each *tag* element with the class *cls*."""

    def __init__(self, tag: str, cls: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tag, self.cls = tag, cls
        self.depth = 0
        self.buf: list[str] = []
        self.found: list[str] = []

    def handle_starttag(self, t: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.depth:
            self.depth += t == self.tag
        elif t == self.tag and self.cls in (dict(attrs).get("class") or "").split():
            self.depth, self.buf = 1, []

    def handle_endtag(self, t: str) -> None:
        if self.depth and t == self.tag:
            self.depth -= 1
            if not self.depth:
                self.found.append("".join(self.buf))

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.buf.append(data)


def element_texts(html: str, tag: str, cls: str) -> list[str]:
    """The text of every *tag* element with class *cls* in *html*."""
    c = _Collect(tag, cls)
    c.feed(html)
    c.close()
    return c.found


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.yaml"
    reply = {"content": HOSTILE, "usage": {"prompt_tokens": 11, "completion_tokens": 7}}
    path.write_text(json.dumps({"models": {"writer": [reply]}}), encoding="utf-8")
    return path


@pytest.fixture
def client(tmp_path: Path, script: Path) -> Iterator[TestClient]:
    settings = Settings(
        db=f"sqlite:///{tmp_path / 'rooms.db'}",
        plugins=("tests.server.dashboard_tools",),
        script=str(script),
        env={},
    )
    with TestClient(create_app(settings)) as c:
        yield c


def runtime(client: TestClient) -> Runtime:
    rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    return rt


def status_of(client: TestClient, room_id: str) -> str:
    status: str = client.get(f"/api/rooms/{room_id}/status").json()["status"]
    return status


def until(client: TestClient, room_id: str, *wanted: str) -> str:
    return poll(
        lambda: s if (s := status_of(client, room_id)) in wanted else None,
        f"room {room_id} to be {' or '.join(wanted)}",
    )


def start_room(client: TestClient, workflow: str, **variables: Any) -> str:
    r = client.post("/api/rooms?run=true", json={"workflow": workflow, "variables": variables})
    assert r.status_code == 201, r.text
    room_id: str = r.json()["id"]
    return room_id


def register(client: TestClient, definition: dict[str, Any]) -> None:
    r = client.post("/api/workflows", json=definition)
    assert r.status_code in (200, 201), r.text


def waiting_order(client: TestClient) -> str:
    assert client.post("/api/workflows", content=ORDER_YAML, headers=YAML).status_code == 201
    room_id = start_room(client, "order_approval", amount=250)
    until(client, room_id, "waiting")
    return room_id


HOSTILE_WORKFLOW: dict[str, Any] = {
    "id": "hostile",
    "description": HOSTILE,
    "variables": {"evil": HOSTILE, "nested": {"k": [HOSTILE]}},
    "agents": {"writer": {"model": "scripted/writer", "system_prompt": HOSTILE}},
    "nodes": {
        "call": {"type": "tool", "tool": "echo_hostile", "output": "echoed"},
        "remember": {"type": "set", "memory": {"note": "{{ vars.evil }}"}},
        "ask": {"type": "agent", "agent": "writer", "prompt": "say {{ vars.evil }}"},
        "approve": {
            "type": "wait",
            "prompt": "{{ vars.evil }}",
            "schema": {
                "type": "object",
                "properties": {
                    "note": {"type": "string", "description": HOSTILE},
                    "pick": {"enum": [HOSTILE, "b"]},
                },
                "required": ["note"],
            },
        },
        "done": {"type": "end"},
    },
    "transitions": [
        {"from": "call", "to": "remember"},
        {"from": "remember", "to": "ask"},
        {"from": "ask", "to": "approve"},
        {"from": "approve", "to": "done", "when": "input.note != ''"},
        {"from": "approve", "to": "done"},
    ],
}

FAILING_WORKFLOW: dict[str, Any] = {
    "id": "failing",
    "nodes": {"boom": {"type": "tool", "tool": "fail_hostile"}, "done": {"type": "end"}},
    "transitions": [{"from": "boom", "to": "done"}],
}

FORM_WORKFLOW: dict[str, Any] = {
    "id": "form",
    "nodes": {
        "ask": {
            "type": "wait",
            "prompt": "Fill it in",
            "schema": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "minimum": 1},
                    "ratio": {"type": "number"},
                    "ok": {"type": "boolean"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "note": {"type": "string", "minLength": 2},
                    "size": {"enum": ["s", "m", "l"]},
                },
                "required": ["count", "note"],
            },
            "output": "answer",
        },
        "done": {"type": "end"},
    },
    "transitions": [{"from": "ask", "to": "done"}],
}


# --- every page -------------------------------------------------------------------------------


def test_every_page_renders_with_the_contract_ids(client: TestClient) -> None:
    room_id = waiting_order(client)
    every = {"main", "live-status"}

    page = inert(client.get("/").text)
    assert every | {"rooms", "q", "status-filters"} <= page.ids()
    nav = page.find("nav", aria_label="Primary")
    assert nav, "no primary nav"
    assert {"Rooms", "Workflows", "Tools"} <= set(page.text.split())
    filters = {a["data-status"] for a in page.find("a", class_="status-filter")}
    assert filters == {
        "all",
        "created",
        "queued",
        "running",
        "waiting",
        "completed",
        "failed",
        "cancelled",
    }
    assert page.find("form", role="search") and page.find("label", for_="q")
    rows = page.find("tr", data_room=room_id)
    assert len(rows) == 1
    assert element_texts(client.get("/").text, "td", "room-status") == ["waiting"]
    assert element_texts(client.get("/").text, "td", "room-node") == ["approval"]

    html = client.get(f"/rooms/{room_id}").text
    page = inert(html)
    assert (
        every
        | {
            "room-status",
            "room-node",
            "usage",
            "variables",
            "memory",
            "graph",
            "log",
            "log-level",
            "log-type",
            "wait-form",
            "cancel-room",
            "resume-room",
        }
        <= page.ids()
    )
    assert page.find("label", for_="log-level") and page.find("label", for_="log-type")
    assert element_texts(html, "dd", "status") == ["waiting"]
    nodes = {a["data-node"]: a["class"].split() for a in page.find("g", class_="node")}
    assert set(nodes) == {"price", "check", "approval", "fulfil", "rejected", "expired", "done"}
    assert "current" in nodes["approval"] and "visited" in nodes["price"]
    assert "visited" not in nodes["done"] and "current" not in nodes["price"]
    events = page.find("li", class_="event")
    assert [int(e["data-seq"]) for e in events] == list(range(1, len(events) + 1))
    assert events[0]["data-type"] == "ROOM_CREATED" and events[0]["data-level"] == "info"
    assert page.find("details", class_="payload")  # the calculator's TOOL_CALLED
    assert {a["data-var"] for a in page.find("pre", class_="value")} >= {"amount", "total"}
    assert page.find("input", name="approved", type="checkbox")
    assert page.find("input", name="by", type="text")

    page = inert(client.get("/workflows").text)
    assert every | {"workflows"} <= page.ids() and page.find("tr", data_workflow="order_approval")
    page = inert(client.get("/workflows/order_approval").text)
    assert every | {"graph", "definition"} <= page.ids()
    assert (
        json.loads(element_texts_by_id(client.get("/workflows/order_approval").text, "definition"))[
            "id"
        ]
        == "order_approval"
    )
    page = inert(client.get("/tools").text)
    assert every | {"tools"} <= page.ids() and page.find("tr", data_tool="calculator")
    assert page.find("pre", class_="schema")
    page = inert(client.get("/new?workflow=order_approval").text)
    assert every | {"create-form", "field-amount", "field-tax_rate"} <= page.ids()
    page = inert(client.get("/login").text)
    assert "main" in page.ids()


def element_texts_by_id(html: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert m, element_id
    page = Page(m[1])
    return page.text


def test_a_missing_room_is_a_404_page_here_and_json_on_the_api(client: TestClient) -> None:
    r = client.get("/rooms/no-such-room")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    page = inert(r.text)
    assert "room 'no-such-room' not found" in page.text
    assert_error(client.get("/api/rooms/no-such-room"), 404, "not_found")
    assert client.get("/workflows/nope").status_code == 404


def test_pages_have_the_strict_csp_and_the_api_keeps_its_own(client: TestClient) -> None:
    for path in ("/", "/workflows", "/tools", "/login", "/rooms/nope", "/new"):
        r = client.get(path)
        assert r.headers["content-security-policy"] == DASHBOARD_CSP, path
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"  # else forms post Origin: null
    assert client.get("/api/rooms").headers["content-security-policy"] == API_CSP
    css = client.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    static = ROOT / "openrooms_server" / "dashboard" / "static"
    scripts = sorted(static.glob("*.js"))
    assert {p.name for p in scripts} == {"live.js", "rooms.js", "room.js"}
    for script in scripts:
        js = client.get(f"/static/{script.name}")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        code = re.sub(r"//[^\n]*", "", js.text)  # comments may name what is never done
        assert not re.search(r"\.(inner|outer)HTML\s*\+?=(?!=)", code), script.name
        for sink in ("insertAdjacentHTML", "document.write", "eval(", "Function(", ".style"):
            assert sink not in code, (script.name, sink)


# --- hostile data -----------------------------------------------------------------------------


def test_hostile_strings_in_every_field_show_as_text(client: TestClient) -> None:
    register(client, HOSTILE_WORKFLOW)
    register(client, FAILING_WORKFLOW)
    r = client.post(
        "/api/rooms?run=true",
        json={"workflow": "hostile", "name": HOSTILE, "variables": {"evil": HOSTILE}},
    )
    assert r.status_code == 201, r.text
    room_id = r.json()["id"]
    until(client, room_id, "waiting")
    failing = start_room(client, "failing")
    until(client, failing, "failed")

    html = client.get(f"/rooms/{room_id}").text
    page = inert(html)
    text = page.text
    assert HOSTILE in text  # the room's name, the wait prompt, the field's description
    assert text.count("<script>alert(2)</script>") >= 5
    # the LLM's reply and the tool's result, in the payloads
    replies = element_texts(html, "pre", "reply")
    assert any("<img src=x onerror=alert(1)>" in t for t in replies), replies
    assert any(HOSTILE in json.loads(t) for t in replies if t.startswith('"'))
    variables = {a["data-var"] for a in page.find("pre", class_="value") if "data-var" in a}
    assert {"evil", "nested", "echoed"} <= variables
    assert page.find("pre", class_="value", data_key="note")  # the memory entry
    assert json.dumps(HOSTILE, ensure_ascii=False) in element_texts(html, "pre", "value")
    assert page.find("option", value=json.dumps(HOSTILE, ensure_ascii=False))

    page = inert(client.get(f"/rooms/{failing}").text)
    assert f"ValueError: {HOSTILE}" in page.text
    assert page.find("g", class_="failed", data_node="boom")

    listing = inert(client.get("/").text)
    assert HOSTILE in listing.text  # the room's name
    assert HOSTILE in inert(client.get("/workflows").text).text  # the description
    assert "<script>alert(2)</script>" in inert(client.get("/workflows/hostile").text).text
    tools = inert(client.get("/tools").text)
    assert tools.find("tr", data_tool=HOSTILE)  # the name, as an attribute value
    assert tools.text.count(HOSTILE) >= 2  # its name and echo_hostile's description
    assert HOSTILE in inert(client.get("/new?workflow=hostile").text).text
    r = client.get("/", params={"q": HOSTILE})
    assert HOSTILE in inert(r.text).text
    r = client.get("/rooms/" + "%3Cimg%20src%3Dx%3E")
    assert r.status_code == 404 and "<img src=x>" in inert(r.text).text


def test_a_cancel_reason_and_a_form_value_are_text_too(client: TestClient) -> None:
    register(client, FORM_WORKFLOW)
    room_id = start_room(client, "form")
    until(client, room_id, "waiting")
    r = client.post(f"/rooms/{room_id}/input", data={"count": HOSTILE, "note": HOSTILE})
    assert r.status_code == 422
    page = inert(r.text)
    assert page.find("input", name="note", value=HOSTILE)
    assert page.find("input", name="count", value=HOSTILE)
    r = client.post(f"/rooms/{room_id}/cancel", data={"reason": HOSTILE})
    assert r.status_code == 200 and status_of(client, room_id) == "cancelled"
    page = inert(client.get(f"/rooms/{room_id}").text)
    assert HOSTILE in page.text


# --- forms ------------------------------------------------------------------------------------


def test_the_wait_form_converts_types_and_the_room_goes_on(client: TestClient) -> None:
    room_id = waiting_order(client)
    r = client.post(
        f"/rooms/{room_id}/input", data={"approved": "on", "by": "sam"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/rooms/{room_id}"
    until(client, room_id, "completed")
    room = client.get(f"/api/rooms/{room_id}").json()
    assert room["variables"]["decision"] == {"approved": True, "by": "sam"}
    assert room["variables"]["approved_by"] == "sam"


def test_the_wait_form_shows_the_servers_messages_next_to_each_field(client: TestClient) -> None:
    register(client, FORM_WORKFLOW)
    room_id = start_room(client, "form")
    until(client, room_id, "waiting")
    rt = runtime(client)
    before = len(rt.events(room_id))

    page = inert(client.get(f"/rooms/{room_id}").text)
    assert page.find("input", name="count", type="number", step="1")
    assert page.find("input", name="ratio", type="number", step="any")
    assert page.find("input", name="ok", type="checkbox")
    assert page.find("textarea", name="tags")
    assert page.find("select", name="size")
    assert page.find("input", name="note", type="text")
    assert len(page.find("span", class_="required")) == 2  # count and note

    # text that cannot be converted: a message per field, nothing delivered
    r = client.post(
        f"/rooms/{room_id}/input",
        data={"count": "three", "ratio": "x", "tags": "[1,", "note": "fine"},
    )
    assert r.status_code == 422
    html = r.text
    page = inert(html)
    assert {"error-count", "error-ratio", "error-tags"} <= page.ids()
    assert "error-note" not in page.ids()
    assert "whole number" in element_texts_by_id(html, "error-count")
    assert "JSON" in element_texts_by_id(html, "error-tags")
    assert page.find("p", class_="form-error", role="alert")
    assert page.find("input", name="note", value="fine")  # what was typed stays
    assert page.find("textarea", name="tags")

    # converted, but the schema refuses it: its messages, at the fields they name
    r = client.post(f"/rooms/{room_id}/input", data={"count": "0", "note": "x", "tags": '["a", 2]'})
    assert r.status_code == 422
    html = r.text
    page = inert(html)
    assert "at least 1" in element_texts_by_id(html, "error-count")
    assert "error-note" in page.ids() and "error-tags" in page.ids()
    r = client.post(f"/rooms/{room_id}/input", data={"ratio": "1.5"})
    assert r.status_code == 422
    assert "required" in element_texts_by_id(r.text, "error-count")
    assert "required" in element_texts_by_id(r.text, "error-note")
    assert len(rt.events(room_id)) == before and status_of(client, room_id) == "waiting"

    r = client.post(
        f"/rooms/{room_id}/input",
        data={
            "count": "3",
            "ratio": "2.5",
            "ok": "on",
            "tags": '["a", "b"]',
            "note": "hi",
            "size": '"m"',
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    until(client, room_id, "completed")
    answer = client.get(f"/api/rooms/{room_id}").json()["variables"]["answer"]
    assert answer == {
        "count": 3,
        "ratio": 2.5,
        "ok": True,
        "tags": ["a", "b"],
        "note": "hi",
        "size": "m",
    }


def test_input_to_a_room_that_is_not_waiting_is_refused_with_409(client: TestClient) -> None:
    room_id = waiting_order(client)
    assert client.post(f"/rooms/{room_id}/cancel", data={}).status_code == 200
    r = client.post(f"/rooms/{room_id}/input", data={"approved": "on"})
    assert r.status_code == 409
    page = inert(r.text)
    assert "not waiting" in page.text and page.find("p", class_="form-error")


def test_cancel_and_resume_buttons(client: TestClient) -> None:
    room_id = waiting_order(client)
    r = client.post(
        f"/rooms/{room_id}/cancel", data={"reason": "no longer needed"}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == f"/rooms/{room_id}"
    room = client.get(f"/api/rooms/{room_id}").json()
    assert room["status"] == "cancelled" and room["reason"] == "no longer needed"
    page = inert(client.get(f"/rooms/{room_id}").text)
    assert page.find("button", id="cancel-room", disabled="")
    again = client.post(f"/rooms/{room_id}/cancel", data={})
    assert again.status_code == 409 and "finished" in inert(again.text).text
    assert client.post(f"/rooms/{room_id}/resume", data={}).status_code == 409

    # a room that was only created: Resume queues and runs it
    created = client.post(
        "/api/rooms", json={"workflow": "order_approval", "variables": {"amount": 5}}
    )
    other = created.json()["id"]
    assert status_of(client, other) == "created"
    r = client.post(f"/rooms/{other}/resume", data={}, follow_redirects=False)
    assert r.status_code == 303
    until(client, other, "completed")
    assert client.post("/rooms/nope/cancel", data={}).status_code == 404


def test_the_create_form_takes_a_workflows_declared_inputs(client: TestClient) -> None:
    assert client.post("/api/workflows", content=ORDER_YAML, headers=YAML).status_code == 201
    page = inert(client.get("/new?workflow=order_approval").text)
    assert page.find("input", name="amount", type="number", value="40")  # the default
    r = client.post("/new?workflow=order_approval", data={"amount": "-5"})
    assert r.status_code == 422
    assert "at least 0" in element_texts_by_id(r.text, "error-amount")
    assert runtime(client).list_rooms() == []
    r = client.post("/new?workflow=order_approval", data={"amount": "20"}, follow_redirects=False)
    assert r.status_code == 303
    room_id = r.headers["location"].removeprefix("/rooms/")
    until(client, room_id, "completed")
    assert client.get(f"/api/rooms/{room_id}").json()["variables"]["amount"] == 20
    assert client.get("/new?workflow=nope").status_code == 404
    assert client.post("/new?workflow=nope", data={}).status_code == 404


def test_the_create_form_of_a_workflow_without_inputs_uses_its_variables(
    client: TestClient,
) -> None:
    register(client, HOSTILE_WORKFLOW)
    page = inert(client.get("/new?workflow=hostile").text)
    assert page.find("input", name="evil", type="text", value=HOSTILE)
    assert page.find("textarea", name="nested")
    r = client.post("/new?workflow=hostile", data={"evil": "calm", "nested": "{oops"})
    assert r.status_code == 422 and "error-nested" in inert(r.text).ids()


def test_form_bodies_are_refused_on_the_api(client: TestClient) -> None:
    r = client.post("/api/rooms", data={"workflow": "x"})
    assert_error(r, 415, "unsupported_media_type")
    r = client.post("/rooms/x/cancel", json={"reason": "x"})
    assert_error(r, 415, "unsupported_media_type")


# --- the rooms list ---------------------------------------------------------------------------


def test_the_rooms_list_counts_filters_searches_and_pages(client: TestClient) -> None:
    assert client.post("/api/workflows", content=ORDER_YAML, headers=YAML).status_code == 201
    register(client, FORM_WORKFLOW)
    rt = runtime(client)
    made = [rt.create_room("order_approval").room_id for _ in range(7)]
    made += [rt.create_room("form").room_id for _ in range(5)]
    rt.cancel(made[0])
    rt.cancel(made[8])

    page = inert(client.get("/").text)
    counts = {
        a["data-status"]: int(t)
        for a, t in zip(
            page.find("a", class_="status-filter"),
            element_texts(client.get("/").text, "span", "count"),
            strict=True,
        )
    }
    assert counts["all"] == 12 and counts["created"] == 10 and counts["cancelled"] == 2
    assert counts["running"] == 0

    cancelled = inert(client.get("/?status=cancelled").text)
    assert {a["data-room"] for a in cancelled.find("tr") if "data-room" in a} == {made[0], made[8]}
    forms = inert(client.get("/?q=form").text)
    assert {a["data-room"] for a in forms.find("tr") if "data-room" in a} == set(made[7:])
    prefix = inert(client.get("/?q=" + made[3]).text)
    assert [a["data-room"] for a in prefix.find("tr") if "data-room" in a] == [made[3]]

    seen: list[str] = []
    url: str | None = "/?limit=5"
    while url:
        page = inert(client.get(url).text)
        seen += [a["data-room"] for a in page.find("tr") if "data-room" in a]
        nxt = page.find("a", id="next-page")
        url = nxt[0]["href"] if nxt else None
        if url:
            assert nxt[0]["rel"] == "next" and "cursor=" in url
    newest_first = [s.room_id for s in rt.list_rooms(limit=100)]
    assert seen == newest_first and sorted(seen) == sorted(made)  # in order, each once
    r = client.get("/?status=bogus&cursor=%%%")
    assert r.status_code == 200 and inert(r.text).find("p", class_="form-error")


# --- the log ----------------------------------------------------------------------------------

LOOP_WORKFLOW: dict[str, Any] = {
    "id": "loop",
    "max_steps": 1000,
    "variables": {"i": 0},
    "nodes": {
        "inc": {"type": "set", "assign": {"i": "{{ vars.i + 1 }}"}},
        "check": {"type": "decision"},
        "done": {"type": "end"},
    },
    "transitions": [
        {"from": "inc", "to": "check"},
        {"from": "check", "to": "inc", "when": "vars.i < 60"},
        {"from": "check", "to": "done"},
    ],
}


def test_a_long_log_opens_with_its_first_page_and_filters(client: TestClient) -> None:
    register(client, LOOP_WORKFLOW)
    room_id = start_room(client, "loop")
    until(client, room_id, "completed")
    total = len(runtime(client).events(room_id))
    assert total > 300
    page = inert(client.get(f"/rooms/{room_id}").text)
    events = page.find("li", class_="event")
    assert [int(e["data-seq"]) for e in events] == list(range(1, 201))
    assert page.find("ol", id="log", data_next="200")
    nodes = {a["data-node"]: a["class"].split() for a in page.find("g", class_="node")}
    assert "current" in nodes["done"] and "visited" in nodes["inc"]
    edges = page.find("g", class_="edge")
    assert any("back" in e["class"].split() for e in edges)  # check -> inc goes back up

    page = inert(client.get(f"/rooms/{room_id}?type=TRANSITION").text)
    types = {e["data-type"] for e in page.find("li", class_="event")}
    assert types == {"TRANSITION"}
    page = inert(client.get(f"/rooms/{room_id}?level=INFO").text)
    levels = {e["data-level"] for e in page.find("li", class_="event")}
    assert levels and "debug" not in levels
    finished = inert(client.get(f"/rooms/{room_id}?level=nope&type=nope").text)
    assert len(finished.find("li", class_="event")) == 200


def test_later_events_are_a_page_too_without_javascript(client: TestClient) -> None:
    register(client, LOOP_WORKFLOW)
    room_id = start_room(client, "loop")
    until(client, room_id, "completed")
    page = inert(client.get(f"/rooms/{room_id}?type=TRANSITION").text)
    more = page.find("a", href=f"/rooms/{room_id}?after=")  # not there: fewer than a page
    assert not more
    first = inert(client.get(f"/rooms/{room_id}").text)
    link = [a["href"] for _, a in first.tags if a.get("href", "").startswith(f"/rooms/{room_id}?")]
    assert link == [f"/rooms/{room_id}?after=200"]
    second = inert(client.get(link[0]).text)
    seqs = [int(e["data-seq"]) for e in second.find("li", class_="event")]
    assert seqs[0] == 201 and seqs == list(range(201, 201 + len(seqs)))
    assert "log-from" in second.ids()


def test_a_form_posted_from_another_site_is_refused(client: TestClient) -> None:
    """With no API keys there is no session: the origin is what tells a page of this site
    from another site's form aimed at it."""
    room_id = waiting_order(client)
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://testserver.evil.example"},
    ):
        r = client.post(f"/rooms/{room_id}/cancel", data={}, headers=headers)
        assert_error(r, 403, "csrf_failed")
    assert status_of(client, room_id) == "waiting"
    r = client.post(
        f"/rooms/{room_id}/cancel",
        data={},
        headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and status_of(client, room_id) == "cancelled"


def test_an_unknown_page_is_a_404_page_and_an_unknown_api_path_json(client: TestClient) -> None:
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "page '/no/such/page' not found" in inert(r.text).text
    assert r.headers["content-security-policy"] == DASHBOARD_CSP
    assert_error(client.get("/api/no/such/thing"), 404, "not_found")
    assert client.get("/health").status_code == 200
    assert client.get("/openapi.json").headers["content-type"].startswith("application/json")
