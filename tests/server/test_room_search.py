"""``GET /api/rooms`` with ``q`` and a keyset ``cursor``, ``GET /api/room-counts``, and the
``/metrics`` rooms gauge, over a real SQLite file."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from openrooms import engine
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId
from openrooms_server import Settings, create_app
from tests.contract.test_store_contract import WF
from tests.server.server_tools import assert_error, assert_schema


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(db=f"sqlite:///{tmp_path / 'rooms.db'}", env={})
    with TestClient(create_app(settings)) as c:
        yield c


def put(
    client: TestClient,
    room_id: str,
    created_at: int,
    workflow_id: str = "contract",
    status: RoomStatus = RoomStatus.CREATED,
) -> RoomState:
    """A room stored as it is, created at *created_at* (ties on purpose)."""
    state = engine.create_room(WF, RoomId(room_id), now=created_at).state
    state = attrs.evolve(state, workflow_id=workflow_id, status=status)
    client.app.state.runtime.states.create(state)  # type: ignore[attr-defined]
    return state


def walk(client: TestClient, query: str) -> list[str]:
    """The ids of every page of ``GET /api/rooms?{query}``, following ``next``."""
    seen: list[str] = []
    cursor = ""
    for _ in range(1000):
        r = client.get(f"/api/rooms?{query}{cursor}")
        assert r.status_code == 200, r.text
        page = r.json()
        assert_schema(page, "RoomPage")
        seen += [room["id"] for room in page["items"]]
        if page["next"] is None:
            return seen
        cursor = f"&cursor={page['next']}"
    raise AssertionError("the pages did not end")


def counts(client: TestClient, query: str = "") -> dict[str, int]:
    r = client.get(f"/api/room-counts?{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert_schema(body, "RoomCounts")
    found: dict[str, int] = body["counts"]
    return found


def test_search_pages_and_counts_agree_with_the_rooms(client: TestClient) -> None:
    made = []
    statuses = [RoomStatus.CREATED, RoomStatus.WAITING, RoomStatus.FAILED]
    for n in range(40):
        room_id = ("a_b" if n % 4 == 0 else "axb" if n % 4 == 1 else "order") + f"-{n:02d}"
        workflow_id = "order_flow" if n % 3 == 0 else "billing"
        made.append(put(client, room_id, 1000 + n // 5, workflow_id, statuses[n % 3]))
    newest = sorted(made, key=lambda s: (s.created_at, s.room_id), reverse=True)

    def expect(query: str | None = None, workflow: str | None = None) -> list[RoomState]:
        return [
            s
            for s in newest
            if (query is None or s.room_id.startswith(query) or s.workflow_id.startswith(query))
            and (workflow is None or s.workflow_id == workflow)
        ]

    assert walk(client, "limit=7") == [s.room_id for s in newest]
    for q in ("a_", "ax", "order", "bill", "order_", "zzz"):
        assert walk(client, f"limit=3&q={q}") == [s.room_id for s in expect(q)], q
        want = {s.value: 0 for s in RoomStatus}
        for s in expect(q):
            want[s.status.value] += 1
        assert counts(client, f"q={q}") == want, q
    failed = [s.room_id for s in expect("order") if s.status is RoomStatus.FAILED]
    assert walk(client, "limit=2&q=order&status=failed") == failed
    billing = expect("a_", "billing")
    assert walk(client, "q=a_&workflow=billing&limit=5") == [s.room_id for s in billing]
    assert counts(client, "q=a_&workflow=billing")["waiting"] == sum(
        s.status is RoomStatus.WAITING for s in billing
    )
    assert counts(client) == {s.value: sum(r.status is s for r in made) for s in RoomStatus}


def test_a_page_is_full_and_next_is_null_only_at_the_end(client: TestClient) -> None:
    for n in range(6):
        put(client, f"r{n}", 1000)  # one ms: every cursor falls inside the tie
    first = client.get("/api/rooms?limit=3").json()
    assert [r["id"] for r in first["items"]] == ["r5", "r4", "r3"] and first["next"]
    second = client.get(f"/api/rooms?limit=3&cursor={first['next']}").json()
    assert [r["id"] for r in second["items"]] == ["r2", "r1", "r0"]
    assert second["next"] is None  # exactly full, and nothing after it
    assert client.get("/api/rooms?limit=6").json()["next"] is None


def test_bad_search_and_cursor_are_refused(client: TestClient) -> None:
    put(client, "r1", 1000)
    for query in (
        "q=a%00b",
        "q=" + "x" * 1001,
        "q=a&q=b",
        "q=%1b[31m",
        "cursor=" + "MTAwMDpyMQ"[:-1] + "%00",
        "cursor=YWJjOnIx",  # "abc:r1": no number
        "cursor=MTAwMDphAGI",  # "1000:a\0b"
    ):
        assert_error(client.get(f"/api/rooms?{query}"), 422, "invalid_input")
    for query in ("q=a%00b", "q=a&q=b", "workflow=a&workflow=b", "status=failed", "limit=5"):
        assert_error(client.get(f"/api/room-counts?{query}"), 422, "invalid_input")
    assert client.get("/api/rooms?q=").json()["items"][0]["id"] == "r1"  # empty: no filter
    assert client.get("/api/rooms?q=%25").json() == {"items": [], "next": None}
    assert counts(client, "q=%25") == {s.value: 0 for s in RoomStatus}


def test_counts_have_a_path_no_room_id_can_shadow(client: TestClient) -> None:
    assert counts(client) == {s.value: 0 for s in RoomStatus}
    put(client, "counts", 1000)  # a valid room id, reachable at /api/rooms/counts
    assert counts(client)["created"] == 1
    assert client.get("/api/rooms/counts").json()["id"] == "counts"
    assert client.get("/api/rooms/counts/status").json()["status"] == "created"
    assert client.post("/api/room-counts").status_code == 405


def samples(text: str) -> dict[tuple[str, Any], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_every_room_by_status_exactly(client: TestClient) -> None:
    for n in range(12):
        put(
            client, f"r{n:02d}", 1000 + n, status=RoomStatus.FAILED if n < 5 else RoomStatus.CREATED
        )
    got = samples(client.get("/metrics").text)
    assert got[("openrooms_rooms", (("status", "failed"),))] == 5
    assert got[("openrooms_rooms", (("status", "created"),))] == 7
    assert got[("openrooms_rooms", (("status", "running"),))] == 0


# --- the dashboard's rooms list (openrooms_server/dashboard/listing.py) ---------------------

ROW = re.compile(r'<tr data-room="([^"]+)">')
NEXT = re.compile(r'<a rel="next" id="next-page" href="([^"]+)">')
COUNT = re.compile(r'data-status="([a-z]+)" href="[^"]*"[^>]*>[a-z]+ <span class="count">(\d+)<')


def test_the_rooms_page_walks_every_room_once_with_exact_counts(client: TestClient) -> None:
    made = []
    for n in range(23):
        status = RoomStatus.FAILED if n % 4 == 0 else RoomStatus.COMPLETED
        made.append(
            put(client, f"job_{n:02d}" if n % 2 else f"jobx{n:02d}", 1000 + n // 3, status=status)
        )
    newest = sorted(made, key=lambda s: (s.created_at, s.room_id), reverse=True)
    for start, expected in (
        ("/?limit=5", newest),
        ("/?limit=4&q=job_", [s for s in newest if s.room_id.startswith("job_")]),
        ("/?limit=2&status=failed", [s for s in newest if s.status is RoomStatus.FAILED]),
    ):
        seen: list[str] = []
        url: str | None = start
        while url is not None and len(seen) <= len(made):
            page = client.get(url)
            assert page.status_code == 200, page.text
            seen += ROW.findall(page.text)
            found = NEXT.search(page.text)
            url = html.unescape(found.group(1)) if found else None
        assert seen == [s.room_id for s in expected], start
    counts = dict(COUNT.findall(client.get("/?q=job_").text))
    job_ = [s for s in made if s.room_id.startswith("job_")]
    assert int(counts["failed"]) == sum(s.status is RoomStatus.FAILED for s in job_)
    assert int(counts["all"]) == len(job_)


def test_the_rooms_page_takes_any_search_text(client: TestClient) -> None:
    put(client, "a_b", 1000)
    put(client, "axb", 1001)
    for q, rows in (("a_", ["a_b"]), ("a%00", []), ("%1b", []), ("a%25", []), ("", ["axb", "a_b"])):
        page = client.get(f"/?q={q}")
        assert page.status_code == 200, (q, page.text)
        assert ROW.findall(page.text) == rows, q
    bad_cursor = base64.urlsafe_b64encode(b"1000:a\x00b").decode()
    assert client.get(f"/?cursor={bad_cursor}").status_code == 200
