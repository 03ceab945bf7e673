"""The /api routes through Starlette's TestClient, over a real SQLite file and the
in-process executor: shapes (checked against /openapi.json's schemas), status codes, the
error shape, and bad input that leaves the store unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from openrooms import serde
from openrooms.events import Event, EventType
from openrooms_server import Settings, create_app
from tests.server.server_tools import Gate, assert_error, assert_schema, gate_workflow, poll

ROOT = Path(__file__).parents[2]
ORDER_YAML = (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8")
YAML = {"content-type": "application/yaml"}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rooms.db"


@pytest.fixture
def client(db: Path) -> Iterator[TestClient]:
    settings = Settings(db=f"sqlite:///{db}", plugins=("tests.e2e.rq_tools",), env={})
    with TestClient(create_app(settings)) as c:
        yield c


def register_order(client: TestClient) -> None:
    r = client.post("/api/workflows", content=ORDER_YAML, headers=YAML)
    assert r.status_code in (200, 201), r.text


def snapshot(client: TestClient) -> dict[str, Any]:
    """Everything a client can see of the store: rooms (with their logs) and workflows."""
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    rooms = rt.list_rooms(limit=1000)
    return {
        "rooms": [serde.room_to_dict(s) for s in rooms],
        "events": {
            s.room_id: [serde.event_to_dict(e) for e in rt.events(s.room_id)] for s in rooms
        },
        "workflows": rt.describe_workflows(),
    }


def status_of(client: TestClient, room_id: str) -> str:
    r = client.get(f"/api/rooms/{room_id}/status")
    assert r.status_code == 200, r.text
    assert_schema(r.json(), "RoomStatus")
    status: str = r.json()["status"]
    return status


def until_status(client: TestClient, room_id: str, *wanted: str) -> str:
    return poll(
        lambda: s if (s := status_of(client, room_id)) in wanted else None,
        f"room {room_id} to be {' or '.join(wanted)}",
    )


# --- workflows --------------------------------------------------------------------------------


def test_register_yaml_then_again_then_conflict(client: TestClient) -> None:
    r = client.post("/api/workflows", content=ORDER_YAML, headers=YAML)
    assert r.status_code == 201 and r.headers["location"] == "/api/workflows/order_approval"
    assert_schema(r.json(), "WorkflowSummary")
    assert (r.json()["id"], r.json()["version"], r.json()["nodes"]) == ("order_approval", 2, 7)
    again = client.post("/api/workflows", content=ORDER_YAML, headers=YAML)
    assert again.status_code == 200 and again.json() == r.json()
    changed = ORDER_YAML.replace("approval_threshold: 100", "approval_threshold: 99")
    before = snapshot(client)
    assert_error(
        client.post("/api/workflows", content=changed, headers=YAML), 409, "workflow_conflict"
    )
    assert snapshot(client) == before


def test_register_json_and_list_and_detail(client: TestClient) -> None:
    wf = gate_workflow(1)
    r = client.post("/api/workflows", json=wf)
    assert r.status_code == 201, r.text
    listed = client.get("/api/workflows").json()
    assert_schema(listed, "WorkflowList")
    assert [w["id"] for w in listed["items"]] == ["gated"]
    wf2 = {**wf, "version": 3, "description": "third"}
    assert client.post("/api/workflows", json=wf2).status_code == 201
    detail = client.get("/api/workflows/gated")
    assert detail.status_code == 200
    d = detail.json()
    assert_schema(d, "WorkflowDetail")
    assert d["version"] == 3 and d["versions"] == [3, 1] and d["description"] == "third"
    assert d["graph"].startswith("stateDiagram-v2") and "gate --> after" in d["graph"]
    assert d["definition"]["nodes"]["gate"]["tool"] == "gate"
    v1 = client.get("/api/workflows/gated?version=1").json()
    assert v1["version"] == 1 and v1["versions"] == [3, 1]
    assert_error(client.get("/api/workflows/gated?version=2"), 404, "not_found")
    assert_error(client.get("/api/workflows/gated?version=x"), 422, "invalid_input")
    assert_error(client.get("/api/workflows/nope"), 404, "not_found")


def test_invalid_workflow_lists_every_problem_with_its_path(client: TestClient) -> None:
    bad = {
        "id": "bad",
        "nodes": {"a": {"type": "nope"}, "b": {"type": "end"}},
        "transitions": [{"from": "a", "to": "missing"}],
    }
    before = snapshot(client)
    err = assert_error(client.post("/api/workflows", json=bad), 422, "invalid_workflow")
    paths = {p["path"] for p in err["details"]["problems"]}
    assert len(err["details"]["problems"]) >= 2
    assert any(p.startswith("nodes.a") for p in paths) and any("transitions[0]" in p for p in paths)
    yaml_err = assert_error(
        client.post("/api/workflows", content="id: x\nnodes: [1, 2\n", headers=YAML),
        422,
        "invalid_workflow",
    )
    assert yaml_err["details"]["problems"]
    assert_error(client.post("/api/workflows", json=[1, 2]), 422, "invalid_workflow")
    assert snapshot(client) == before


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        ("{bad", {"content-type": "application/json"}, 400, "invalid_json"),
        ('{"id": 1, "id": 2}', {"content-type": "application/json"}, 400, "invalid_json"),
        (b"\xff\xfe", {"content-type": "application/json"}, 400, "invalid_json"),
        ("id: x", {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        ("id: x", {}, 415, "unsupported_media_type"),
    ],
)
def test_register_bad_bodies(
    client: TestClient, content: Any, headers: dict[str, str], status: int, code: str
) -> None:
    before = snapshot(client)
    assert_error(client.post("/api/workflows", content=content, headers=headers), status, code)
    assert snapshot(client) == before


def test_tools(client: TestClient) -> None:
    r = client.get("/api/tools")
    assert_schema(r.json(), "ToolList")
    names = [t["name"] for t in r.json()["items"]]
    assert "calculator" in names and "gate" in names  # the built-ins and the plugin's
    assert names == sorted(names)


# --- creating and running rooms ---------------------------------------------------------------


def test_create_room_from_a_registered_workflow(client: TestClient) -> None:
    register_order(client)
    r = client.post(
        "/api/rooms", json={"workflow": "order_approval", "variables": {"amount": 50}, "name": "o"}
    )
    assert r.status_code == 201, r.text
    room = r.json()
    assert_schema(room, "Room")
    assert room["status"] == "created" and room["name"] == "o"
    assert room["workflow"] == {"id": "order_approval", "version": 2}
    assert r.headers["location"] == f"/api/rooms/{room['id']}"
    shown = client.get(f"/api/rooms/{room['id']}")
    assert shown.json() == room  # the same shape as `openrooms show --json`
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    assert room == serde.room_to_dict(rt.get_room(room["id"]))


def test_create_and_run_to_completion(client: TestClient) -> None:
    register_order(client)
    r = client.post("/api/rooms?run=true", json={"workflow": "order_approval", "version": 2})
    assert r.status_code == 201 and r.json()["status"] == "queued"
    room_id = r.json()["id"]
    until_status(client, room_id, "completed")
    room = client.get(f"/api/rooms/{room_id}").json()
    assert room["variables"]["state"] == "fulfilled" and room["variables"]["total"] == 48


def test_create_from_an_inline_definition(client: TestClient) -> None:
    definition = {
        "id": "inline",
        "nodes": {"s": {"type": "set", "assign": {"y": "{{ vars.x * 2 }}"}}, "e": {"type": "end"}},
        "transitions": [{"from": "s", "to": "e"}],
        "inputs": {"properties": {"x": {"type": "integer"}}},
    }
    before = snapshot(client)
    # variables that break the inputs: refused before the workflow is registered
    err = assert_error(
        client.post("/api/rooms", json={"definition": definition, "variables": {"x": "a"}}),
        422,
        "invalid_input",
    )
    assert err["details"]["problems"][0]["path"] == "variables.x"
    assert snapshot(client) == before
    r = client.post("/api/rooms?run=1", json={"definition": definition, "variables": {"x": 4}})
    assert r.status_code == 201
    until_status(client, r.json()["id"], "completed")
    assert client.get(f"/api/rooms/{r.json()['id']}").json()["variables"]["y"] == 8
    assert [w["id"] for w in client.get("/api/workflows").json()["items"]] == ["inline"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "body"),
        ({"workflow": "order_approval", "definition": {}}, "body"),
        ({"workflow": 3}, "workflow"),
        ({"workflow": ""}, "workflow"),
        ({"workflow": "order_approval", "version": "2"}, "version"),
        ({"workflow": "order_approval", "version": True}, "version"),
        ({"workflow": "order_approval", "version": 0}, "version"),
        ({"workflow": "order_approval", "variables": [1]}, "variables"),
        ({"workflow": "order_approval", "name": 5}, "name"),
        ({"workflow": "order_approval", "colour": "red"}, "colour"),
        ({"definition": "id: x"}, "definition"),
        ({"definition": {}, "version": 1}, "version"),
        ({"workflow": "order_approval", "variables": {"amount": -1}}, "variables.amount"),
        ({"workflow": "order_approval", "variables": {"amout": 1}}, "variables.amout"),
    ],
)
def test_create_room_wrong_types(client: TestClient, body: Any, path: str) -> None:
    register_order(client)
    before = snapshot(client)
    err = assert_error(client.post("/api/rooms", json=body), 422, "invalid_input")
    assert err["details"]["problems"][0]["path"] == path, err
    assert snapshot(client) == before


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        ("[1,", {"content-type": "application/json"}, 400, "invalid_json"),
        ("[1]", {"content-type": "application/json"}, 422, "invalid_input"),
        ('"x"', {"content-type": "application/json"}, 422, "invalid_input"),
        ("", {"content-type": "application/json"}, 422, "invalid_input"),
        ("workflow: x", {"content-type": "application/yaml"}, 415, "unsupported_media_type"),
        ('{"workflow": "x"}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        ('{"workflow": "nope"}', {"content-type": "application/json"}, 404, "not_found"),
        (
            '{"workflow": "order_approval", "version": 9}',
            {"content-type": "application/json"},
            404,
            "not_found",
        ),
        (
            '{"workflow": "order_approval"}',
            {"content-type": "application/json; charset=utf-8"},
            201,
            None,
        ),
    ],
)
def test_create_room_bad_bodies(
    client: TestClient, content: str, headers: dict[str, str], status: int, code: str | None
) -> None:
    register_order(client)
    before = snapshot(client)
    r = client.post("/api/rooms", content=content, headers=headers)
    if code is None:
        assert r.status_code == status, r.text
        return
    assert_error(r, status, code)
    assert snapshot(client) == before


def test_run_param_must_be_a_boolean(client: TestClient) -> None:
    register_order(client)
    before = snapshot(client)
    assert_error(
        client.post("/api/rooms?run=maybe", json={"workflow": "order_approval"}),
        422,
        "invalid_input",
    )
    assert snapshot(client) == before


def test_run_busy_policy(client: TestClient) -> None:
    gate = Gate()
    try:
        assert client.post("/api/workflows", json=gate_workflow(gate.port)).status_code == 201
        room_id = client.post("/api/rooms", json={"workflow": "gated"}).json()["id"]
        r = client.post(f"/api/rooms/{room_id}/run")
        assert r.status_code == 202, r.text
        assert_schema(r.json(), "Accepted")
        assert r.json() == {"id": room_id, "status": "queued"}
        gate.wait()  # the tool is running: the room is busy
        assert status_of(client, room_id) == "running"
        before = snapshot(client)
        for action in ("run", "resume"):
            err = assert_error(client.post(f"/api/rooms/{room_id}/{action}"), 409, "room_busy")
            assert err["details"]["status"] == "running"
        assert_error(
            client.post(f"/api/rooms/{room_id}/input", json={"data": 1}), 409, "invalid_state"
        )
        assert snapshot(client) == before
        gate.answer()
        until_status(client, room_id, "completed")
        err = assert_error(client.post(f"/api/rooms/{room_id}/run"), 409, "invalid_state")
        assert err["details"] == {"status": "completed"}
        assert_error(client.post(f"/api/rooms/{room_id}/resume"), 409, "invalid_state")
    finally:
        gate.close()


def test_a_queued_room_is_busy(client: TestClient) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    client.app.state.runtime.enqueue(room_id)  # type: ignore[attr-defined]  # left for a worker
    err = assert_error(client.post(f"/api/rooms/{room_id}/run"), 409, "room_busy")
    assert err["details"] == {"status": "queued"}


def test_run_takes_no_body_fields(client: TestClient) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    before = snapshot(client)
    assert_error(client.post(f"/api/rooms/{room_id}/run", json={"x": 1}), 422, "invalid_input")
    assert_error(
        client.post(
            f"/api/rooms/{room_id}/run", content="{", headers={"content-type": "application/json"}
        ),
        400,
        "invalid_json",
    )
    assert snapshot(client) == before
    assert client.post(f"/api/rooms/{room_id}/run", json={}).status_code == 202


# --- input, cancel, resume --------------------------------------------------------------------


def waiting_order(client: TestClient) -> str:
    register_order(client)
    r = client.post(
        "/api/rooms?run=true", json={"workflow": "order_approval", "variables": {"amount": 250}}
    )
    room_id: str = r.json()["id"]
    until_status(client, room_id, "waiting")
    return room_id


def test_input_flow_and_idempotency(client: TestClient) -> None:
    room_id = waiting_order(client)
    before = snapshot(client)
    # data that breaks the wait node's schema: refused, nothing recorded
    err = assert_error(
        client.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": "yes"}}),
        422,
        "invalid_input",
    )
    assert err["details"]["problems"]
    for body in ({}, {"data": 1, "more": 2}):
        assert_error(client.post(f"/api/rooms/{room_id}/input", json=body), 422, "invalid_input")
    assert_error(
        client.post(
            f"/api/rooms/{room_id}/input", json={"data": 1}, headers={"Idempotency-Key": ""}
        ),
        422,
        "invalid_input",
    )
    assert snapshot(client) == before
    key = {"Idempotency-Key": "answer-1"}
    first = client.post(
        f"/api/rooms/{room_id}/input", json={"data": {"approved": True, "by": "sam"}}, headers=key
    )
    assert first.status_code == 202, first.text
    assert_schema(first.json(), "Accepted")
    until_status(client, room_id, "completed")
    after = snapshot(client)
    again = client.post(
        f"/api/rooms/{room_id}/input", json={"data": {"by": "sam", "approved": True}}, headers=key
    )
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert snapshot(client) == after  # the repeat changed nothing
    assert_error(
        client.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": False}}, headers=key),
        409,
        "idempotency_conflict",
    )
    # without the key, a second answer is refused: the room is not waiting any more
    assert_error(
        client.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": True}}),
        409,
        "invalid_state",
    )
    assert client.get(f"/api/rooms/{room_id}").json()["variables"]["approved_by"] == "sam"
    assert snapshot(client) == after


def test_input_for_a_room_not_waiting_changes_nothing(client: TestClient, db: Path) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    before = snapshot(client)
    with sqlite3.connect(db) as con:
        leases = con.execute("SELECT * FROM leases").fetchall()
    err = assert_error(
        client.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": True}}),
        409,
        "invalid_state",
    )
    assert err["details"] == {"status": "created"}
    assert snapshot(client) == before
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT * FROM leases").fetchall() == leases  # not even a lease


def test_cancel(client: TestClient) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    before = snapshot(client)
    assert_error(
        client.post(f"/api/rooms/{room_id}/cancel", json={"reason": 5}), 422, "invalid_input"
    )
    assert_error(
        client.post(f"/api/rooms/{room_id}/cancel", json={"why": "x"}), 422, "invalid_input"
    )
    assert snapshot(client) == before
    r = client.post(f"/api/rooms/{room_id}/cancel", json={"reason": "duplicate"})
    assert r.status_code == 200
    assert_schema(r.json(), "Room")
    assert (r.json()["status"], r.json()["reason"]) == ("cancelled", "duplicate")
    after = snapshot(client)
    assert_error(client.post(f"/api/rooms/{room_id}/cancel"), 409, "invalid_state")
    assert snapshot(client) == after
    other = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    assert client.post(f"/api/rooms/{other}/cancel").json()["reason"] == "cancelled through the API"


def test_cancel_a_waiting_room_then_resume_is_refused(client: TestClient) -> None:
    room_id = waiting_order(client)
    assert client.post(f"/api/rooms/{room_id}/cancel").status_code == 200
    assert_error(client.post(f"/api/rooms/{room_id}/resume"), 409, "invalid_state")
    assert_error(
        client.post(f"/api/rooms/{room_id}/input", json={"data": {"approved": True}}),
        409,
        "invalid_state",
    )


def test_resume_a_created_room_runs_it(client: TestClient) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    r = client.post(f"/api/rooms/{room_id}/resume")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    until_status(client, room_id, "completed")


def test_resume_a_room_a_stopped_runner_left_running(client: TestClient, db: Path) -> None:
    """A room stopped at a step boundary (as a server shutdown leaves it) goes on."""
    from openrooms import open_runtime

    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    with open_runtime(f"sqlite:///{db}") as other:

        def stop_after_first_node(e: Event) -> None:  # left running, its lease released
            if e.type is EventType.NODE_COMPLETED:
                other.request_stop()

        left = other.run(room_id, on_event=stop_after_first_node)
    assert left.status.value == "running" and left.current_node == "check"
    r = client.post(f"/api/rooms/{room_id}/resume")
    assert r.status_code == 202 and r.json() == {"id": room_id, "status": "running"}
    until_status(client, room_id, "completed")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/rooms/nope", None),
        ("GET", "/api/rooms/nope/status", None),
        ("GET", "/api/rooms/nope/logs", None),
        ("POST", "/api/rooms/nope/run", None),
        ("POST", "/api/rooms/nope/resume", None),
        ("POST", "/api/rooms/nope/cancel", None),
        ("POST", "/api/rooms/nope/input", {"data": 1}),
        ("GET", "/api/nothing-here", None),
        ("GET", "/api/rooms/a/b/c", None),
    ],
)
def test_unknown_ids(client: TestClient, method: str, path: str, body: Any) -> None:
    before = snapshot(client)
    err = assert_error(client.request(method, path, json=body), 404, "not_found")
    assert "nope" in err["message"] or "route" in err["message"]
    assert snapshot(client) == before


def test_wrong_method(client: TestClient) -> None:
    assert_error(client.delete("/api/rooms"), 405, "method_not_allowed")
    assert_error(client.get("/api/rooms/x/run"), 405, "method_not_allowed")


# --- reading: logs, lists ---------------------------------------------------------------------


def test_logs_pages_and_filters(client: TestClient) -> None:
    room_id = waiting_order(client)
    everything = client.get(f"/api/rooms/{room_id}/logs").json()
    assert_schema(everything, "EventPage")
    assert everything["next"] is None
    seqs = [e["seq"] for e in everything["items"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 4
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    assert everything["items"] == [serde.event_to_dict(e) for e in rt.events(room_id)]
    pages, after = [], 0
    while True:
        page = client.get(f"/api/rooms/{room_id}/logs?after={after}&limit=2").json()
        pages += page["items"]
        if page["next"] is None:
            break
        assert page["next"] == page["items"][-1]["seq"]
        after = page["next"]
    assert pages == everything["items"]
    waiting = client.get(f"/api/rooms/{room_id}/logs?type=ROOM_WAITING&type=room_created").json()
    assert {e["type"] for e in waiting["items"]} == {"ROOM_WAITING", "ROOM_CREATED"}
    assert client.get(f"/api/rooms/{room_id}/logs?level=ERROR").json()["items"] == []
    for query in ("after=-1", "after=x", "limit=0", "limit=1001", "level=LOUD", "type=NOPE"):
        assert_error(client.get(f"/api/rooms/{room_id}/logs?{query}"), 422, "invalid_input")


def test_list_rooms_pages_filters(client: TestClient) -> None:
    register_order(client)
    ids = [
        client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
        for _ in range(5)
    ]
    client.post(f"/api/rooms/{ids[0]}/cancel")
    everything = client.get("/api/rooms").json()
    assert_schema(everything, "RoomPage")
    assert [r["id"] for r in everything["items"]] == ids[::-1] and everything["next"] is None
    seen: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/api/rooms?limit=2{cursor}").json()
        assert len(page["items"]) <= 2
        seen += [r["id"] for r in page["items"]]
        if page["next"] is None:
            break
        cursor = f"&cursor={page['next']}"
    assert seen == ids[::-1]
    cancelled = client.get("/api/rooms?status=cancelled").json()["items"]
    assert [r["id"] for r in cancelled] == [ids[0]]
    assert client.get("/api/rooms?workflow=other").json() == {"items": [], "next": None}
    for query in ("status=gone", "limit=0", "limit=x", "cursor=%%%", "cursor=bm9wZQ"):
        assert_error(client.get(f"/api/rooms?{query}"), 422, "invalid_input")


def test_a_server_fault_has_a_correlation_id_and_no_internals(client: TestClient, db: Path) -> None:
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    with sqlite3.connect(db) as con:  # damage the stored room: the store cannot decode it
        con.execute("UPDATE rooms SET body = '{not json' WHERE id = ?", (room_id,))
    r = client.get(f"/api/rooms/{room_id}")
    err = assert_error(r, 500, "corrupt_data")
    cid = err["details"]["correlation_id"]
    assert cid and r.headers["x-correlation-id"] == cid and cid in err["message"]
    assert "Traceback" not in r.text and "SELECT" not in r.text and "not json" not in r.text
    given = client.get(f"/api/rooms/{room_id}", headers={"X-Request-ID": "req-42"})
    assert assert_error(given, 500, "corrupt_data")["details"]["correlation_id"] == "req-42"


def test_not_found_does_not_say_where_the_data_is(client: TestClient, db: Path) -> None:
    err = assert_error(client.get("/api/rooms/nope"), 404, "not_found")
    assert err["message"] == "no room 'nope'" and str(db) not in err["message"]


def test_an_unreachable_job_queue_keeps_the_room_and_says_so(tmp_path: Path) -> None:
    """Nothing listens on loopback port 1: the queue refuses at once."""
    settings = Settings(
        db=f"sqlite:///{tmp_path}/rooms.db",
        queue_url="redis://127.0.0.1:1/0?queue=nowhere",
        env={},
    )
    with TestClient(create_app(settings)) as c:
        register_order(c)
        room_id = c.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
        err = assert_error(c.post(f"/api/rooms/{room_id}/run"), 503, "backend_unavailable")
        assert err["details"] == {"id": room_id, "status": "queued"}
        assert f"/api/rooms/{room_id}/resume" in err["message"]
        assert "127.0.0.1:1" not in err["message"]
        assert c.get(f"/api/rooms/{room_id}").json()["status"] == "queued"  # saved, for a worker
        err = assert_error(c.post(f"/api/rooms/{room_id}/resume"), 503, "backend_unavailable")
        assert err["details"]["status"] == "queued"


def _creating_on_io_thread() -> bool | None:
    """Whether a thread named openrooms-io is inside Runtime.create_room now."""
    import sys
    import threading

    for thread in threading.enumerate():
        if thread.name.startswith("openrooms-io") and thread.ident is not None:
            frame = sys._current_frames().get(thread.ident)
            while frame is not None:
                if frame.f_code.co_name == "create_room":
                    return True
                frame = frame.f_back
    return None


def test_a_locked_database_does_not_stall_other_requests(client: TestClient, db: Path) -> None:
    """A write that waits for SQLite's lock waits on the runtime's IO thread: the event loop
    answers other requests meanwhile, and the write goes through once the lock is free."""
    import threading

    register_order(client)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's write transaction, say
    answers: list[Any] = []
    writer = threading.Thread(
        target=lambda: answers.append(
            client.post("/api/rooms", json={"workflow": "order_approval"})
        )
    )
    try:
        writer.start()
        poll(_creating_on_io_thread, "the write to wait on the runtime's IO thread")
        for _ in range(3):  # answered while the write waits
            assert client.get("/openapi.json").status_code == 200
            assert client.get("/api/tools").status_code == 200
        assert writer.is_alive() and not answers
    finally:
        holder.execute("COMMIT")
        holder.close()
    writer.join(timeout=30)
    assert answers and answers[0].status_code == 201, answers


def test_cancel_a_running_room(client: TestClient) -> None:
    gate = Gate()
    try:
        client.post("/api/workflows", json=gate_workflow(gate.port))
        room_id = client.post("/api/rooms?run=true", json={"workflow": "gated"}).json()["id"]
        gate.wait()
        r = client.post(f"/api/rooms/{room_id}/cancel", json={"reason": "no longer needed"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        gate.answer()  # the runner's next commit finds the room cancelled and stops
        executor = client.app.state.executor  # type: ignore[attr-defined]
        poll(lambda: True if not executor.busy(room_id) else None, "the runner to stop")
        room = client.get(f"/api/rooms/{room_id}").json()
        assert (room["status"], room["reason"]) == ("cancelled", "no longer needed")
        assert "opened" not in room["variables"]  # nothing committed after the cancel
    finally:
        gate.close()


def test_concurrency_bounds_the_rooms_running_at_once(tmp_path: Path) -> None:
    settings = Settings(
        db=f"sqlite:///{tmp_path}/rooms.db",
        plugins=("tests.e2e.rq_tools",),
        concurrency=1,
        env={},
    )
    gate = Gate()
    try:
        with TestClient(create_app(settings)) as c:
            c.post("/api/workflows", json=gate_workflow(gate.port))
            first, second = (
                c.post("/api/rooms?run=true", json={"workflow": "gated"}).json()["id"]
                for _ in range(2)
            )
            gate.wait(1)
            assert (status_of(c, first), status_of(c, second)) == ("running", "queued")
            assert c.app.state.executor.busy(second)  # type: ignore[attr-defined]
            err = assert_error(c.post(f"/api/rooms/{second}/run"), 409, "room_busy")
            assert err["details"]["status"] == "queued"
            gate.answer()  # the first finishes; the second takes its slot
            gate.wait(2)
            assert status_of(c, first) == "completed"
            gate.answer()
            until_status(c, second, "completed")
    finally:
        gate.close()


def test_a_room_handed_on_while_its_task_runs_is_run_again(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Input recorded while the task that ran the room to its wait is still on it must not
    be dropped: that task runs the room once more."""
    import logging

    caplog.set_level(logging.INFO, logger="openrooms_server")
    gate = Gate()
    try:
        client.post("/api/workflows", json=gate_workflow(gate.port))
        room_id = client.post("/api/rooms?run=true", json={"workflow": "gated"}).json()["id"]
        gate.wait()
        executor = client.app.state.executor  # type: ignore[attr-defined]
        rt = client.app.state.runtime  # type: ignore[attr-defined]
        client.portal.call(executor.start, rt.get_room(room_id))  # type: ignore[union-attr]
        assert executor.busy(room_id)
        gate.answer()
        until_status(client, room_id, "completed")
        poll(lambda: True if not executor.busy(room_id) else None, "the task to end")
    finally:
        gate.close()
    runs = [r for r in caplog.records if r.getMessage().startswith(f"room {room_id} completed")]
    assert len(runs) == 2  # the run, and the run again (which found it finished)


def test_a_room_another_runner_holds_is_busy(client: TestClient) -> None:
    from openrooms.types import RoomId

    room_id = waiting_order(client)
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    lease = rt.states.acquire_lease(RoomId(room_id), "another-runner", ttl_ms=60_000, now=rt.now())
    try:
        before = snapshot(client)
        answer = {"data": {"approved": True}}
        err = assert_error(
            client.post(f"/api/rooms/{room_id}/input", json=answer), 409, "room_busy"
        )
        assert err["details"] == {"lease_expires_at": lease.expires_at}
        err = assert_error(client.post(f"/api/rooms/{room_id}/resume"), 409, "room_busy")
        assert err["details"] == {"status": "waiting", "lease_expires_at": lease.expires_at}
        assert snapshot(client) == before
    finally:
        rt.states.release_lease(lease)
    assert client.post(f"/api/rooms/{room_id}/input", json=answer).status_code == 202
    until_status(client, room_id, "completed")
