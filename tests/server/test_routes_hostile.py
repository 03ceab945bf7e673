"""Hostile request bodies and parameters: each gets its 4xx in the error shape and leaves
the store as it was (never a 500, never a RecursionError); plus the regressions
schemathesis found (tests/server/test_api_fuzz.py).

Request bodies are parsed by :func:`openrooms.loading.parse_json` (routes._parse_json):
strict UTF-8 JSON, no duplicate keys, no NaN or Infinity, integers of at most 1,000 digits,
at most :data:`openrooms.loading.MAX_INPUT_NESTING` (100) levels, refused while parsing
(a 10,000-level body never reaches a recursive function); the body cap (413) is the
``BodyLimit`` middleware's, before any route reads a byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from openrooms.loading import MAX_INPUT_NESTING
from tests.server.server_tools import assert_error
from tests.server.test_routes import (  # noqa: F401 (fixtures)
    ORDER_YAML,
    YAML,
    client,
    db,
    register_order,
    snapshot,
    until_status,
)

JSON = {"content-type": "application/json"}


def nested(levels: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * levels + inner + b"}" * levels


HOSTILE: dict[str, tuple[bytes, int, str]] = {
    # name: (body, status, code)
    "10,000 nested arrays": (b"[" * 10_000 + b"]" * 10_000, 400, "invalid_json"),
    "10,000 nested objects": (nested(10_000), 400, "invalid_json"),
    "100,000 unclosed brackets": (b"[" * 100_000, 400, "invalid_json"),
    "one level too deep": (
        b'{"data": ' + nested(MAX_INPUT_NESTING) + b"}",
        400,
        "invalid_json",
    ),
    "over the body cap": (b'{"data": "' + b"x" * 1_000_001 + b'"}', 413, "payload_too_large"),
    "non-UTF-8 bytes": (b'{"data": "\xff\xfe\xc0\xaf"}', 400, "invalid_json"),
    "UTF-16": ('{"data": 1}'.encode("utf-16"), 400, "invalid_json"),
    "NaN": (b'{"data": NaN}', 400, "invalid_json"),
    "Infinity": (b'{"data": Infinity}', 400, "invalid_json"),
    "-Infinity": (b'{"data": [-Infinity]}', 400, "invalid_json"),
    "1e999": (b'{"data": 1e999}', 400, "invalid_json"),
    "duplicate keys": (b'{"data": 1, "data": 2}', 400, "invalid_json"),
    "nested duplicate keys": (b'{"data": {"k": 1, "k": 1}}', 400, "invalid_json"),
    "a number of 100,000 digits": (b'{"data": ' + b"9" * 100_000 + b"}", 400, "invalid_json"),
    "a lone surrogate": (b'{"data": "\\ud800"}', 422, "invalid_input"),
    "truncated": (b'{"data": [1, 2', 400, "invalid_json"),
    "not JSON": (b"data=1", 400, "invalid_json"),
}
"""Each body, with ``data`` (the field of ``input``) renamed to fit each route."""

ROUTE_FIELD = {
    "/api/rooms": "variables",
    "/api/workflows": "variables",
    "input": "data",
    "cancel": "reason",
}


@pytest.fixture
def waiting(client: TestClient) -> str:  # noqa: F811
    """A room waiting for input (order_approval, amount 250)."""
    register_order(client)
    r = client.post(
        "/api/rooms?run=true", json={"workflow": "order_approval", "variables": {"amount": 250}}
    )
    room_id: str = r.json()["id"]
    until_status(client, room_id, "waiting")
    return room_id


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_bodies_get_their_4xx_and_change_nothing(
    client: TestClient,  # noqa: F811
    waiting: str,
    name: str,
) -> None:
    body, status, code = HOSTILE[name]
    before = snapshot(client)
    for route, field in ROUTE_FIELD.items():
        url = route if route.startswith("/") else f"/api/rooms/{waiting}/{route}"
        sent = body.replace(b'"data"', f'"{field}"'.encode())
        if route == "/api/rooms" and status == 422:  # a valid body around the bad value
            sent = sent.replace(b"{", b'{"workflow": "order_approval", ', 1)
        r = client.post(url, content=sent, headers=JSON)
        assert r.status_code < 500, (name, url, r.status_code, r.text[:300])
        if route == "/api/workflows" and status == 422:
            assert_error(r, 422, "invalid_workflow")  # a lone surrogate is a value it checks
        elif route == "cancel" and status == 422:
            assert_error(r, 422, "invalid_input")
        else:
            assert_error(r, status, code)
        assert len(r.content) < 10_000, (name, url, len(r.content))
    assert snapshot(client) == before


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000 + "]" * 10_000,  # flow style
        "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 1000)),  # block style
        'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n',  # aliases
        "id: x\nid: y\nnodes: {}\n",  # a duplicate key
        "\xff",
    ],
    ids=["deep flow", "deep block", "aliases", "duplicate key", "not text"],
)
def test_hostile_yaml_workflows(client: TestClient, text: str) -> None:  # noqa: F811
    before = snapshot(client)
    raw = text.encode("latin-1") if text == "\xff" else text.encode()
    r = client.post("/api/workflows", content=raw, headers=YAML)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["error"]["code"] in ("invalid_json", "invalid_workflow", "invalid_input")
    assert snapshot(client) == before


def test_a_huge_string_is_not_echoed_back(client: TestClient) -> None:  # noqa: F811
    """A 900 kB workflow id (inside the body cap): 404, with a message clipped for people."""
    before = snapshot(client)
    r = client.post("/api/rooms", json={"workflow": "w" * 900_000})
    error = assert_error(r, 404, "not_found")
    assert len(error["message"]) <= 1_000 and error["message"].endswith("...")
    assert len(r.content) < 2_000
    assert snapshot(client) == before


# --- what schemathesis found ------------------------------------------------------------------


@pytest.mark.parametrize("version", [2**31, 2**63, 14548154824180910080, 10**40])
def test_a_version_past_what_a_store_keeps_is_invalid_input(
    client: TestClient,  # noqa: F811
    version: int,
) -> None:
    """Was a 500: SQLite cannot bind an integer past 64 bits (OverflowError)."""
    register_order(client)
    before = snapshot(client)
    r = client.post("/api/rooms", json={"workflow": "order_approval", "version": version})
    error = assert_error(r, 422, "invalid_input")
    assert error["details"]["problems"][0]["path"] == "version"
    assert snapshot(client) == before
    r = client.get(f"/api/workflows/order_approval?version={version}")
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize("value", ["²", "٣", "1²", "-1", "1e3", "9" * 19, " "])
def test_a_stream_position_is_ascii_digits(client: TestClient, value: str) -> None:  # noqa: F811
    """``"²".isdigit()`` is true and ``int("²")`` fails: that was a 500."""
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    header = {"Last-Event-ID": value.encode()}  # as UTF-8 bytes: httpx sends str as ASCII
    for kwargs in ({"params": {"after": value}}, {"headers": header}):
        r: Any = client.get(f"/api/rooms/{room_id}/logs/stream", **kwargs)
        assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "allowed"),
    [("/api/rooms", {"GET", "HEAD", "POST"}), ("/api/workflows", {"GET", "HEAD", "POST"})],
)
def test_405_names_every_method_of_a_shared_path(
    client: TestClient,  # noqa: F811
    path: str,
    allowed: set[str],
) -> None:
    """Was ``Allow: POST`` (the first of two routes on the path)."""
    for method in ("DELETE", "PUT", "PATCH"):
        r = client.request(method, path)
        assert_error(r, 405, "method_not_allowed")
        assert {m.strip() for m in r.headers["allow"].split(",")} == allowed


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/rooms?limit=5&limit=%C2%A04", "limit"),
        ("/api/rooms?status=created&status=failed", "status"),
        ("/api/rooms?workflow=a&workflow=b", "workflow"),
        ("/api/rooms?cursor=a&cursor=b", "cursor"),
        ("/api/rooms?limit=%C2%A04", "limit"),  # int() takes a no-break space around digits
        ("/api/rooms?limit=1_0", "limit"),  # and underscores
        ("/api/rooms?limit=%D9%A3", "limit"),  # and Arabic-Indic digits
        ("/api/workflows/order_approval?version=1&version=2", "version"),
    ],
)
def test_a_scalar_parameter_is_one_plain_number_or_value(
    client: TestClient,  # noqa: F811
    url: str,
    name: str,
) -> None:
    """Was a 200: the last of repeated values won, and int() took " 4" and "٣"."""
    register_order(client)
    error = assert_error(client.get(url), 422, "invalid_input")
    assert error["details"]["problems"][0]["path"] == name


def test_rooms_logs_after_given_twice_is_refused(client: TestClient) -> None:  # noqa: F811
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    r = client.get(f"/api/rooms/{room_id}/logs?after=1&after=0")
    assert_error(r, 422, "invalid_input")
    r = client.get(f"/api/rooms/{room_id}/logs/stream?after=1&after=0")
    assert_error(r, 422, "invalid_input")


def test_a_bad_after_is_refused_beside_a_good_last_event_id(
    client: TestClient,  # noqa: F811
) -> None:
    """Was a 200: the header wins, and ``after=-1`` went unchecked."""
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    r = client.get(f"/api/rooms/{room_id}/logs/stream?after=-1", headers={"Last-Event-ID": "0"})
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(
    ("method", "url", "name"),
    [
        ("GET", "/api/rooms?limt=5", "limt"),
        ("GET", "/api/rooms?=true", ""),
        ("POST", "/api/rooms?run=true&start=1", "start"),
        ("GET", "/api/rooms/ROOM?x=1", "x"),
        ("GET", "/api/rooms/ROOM/logs?after=0&=null", ""),
        ("GET", "/api/rooms/ROOM/logs/stream?after=0&s=false", "s"),
        ("POST", "/api/rooms/ROOM/run?now=1", "now"),
        ("GET", "/api/workflows/order_approval?=", ""),
        ("GET", "/api/tools?all=1", "all"),
    ],
)
def test_a_query_parameter_the_route_does_not_take_is_refused(
    client: TestClient,  # noqa: F811
    method: str,
    url: str,
    name: str,
) -> None:
    """Was a 200: unknown query parameters were ignored (schemathesis: a request its
    document calls invalid was accepted); now 422, as an unknown body field is."""
    register_order(client)
    room_id = client.post("/api/rooms", json={"workflow": "order_approval"}).json()["id"]
    before = snapshot(client)
    r = client.request(method, url.replace("ROOM", room_id))
    error = assert_error(r, 422, "invalid_input")
    assert error["details"]["problems"][0]["path"] == name
    assert snapshot(client) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "order_approval", "name": None}, "name"),
        ({"workflow": "order_approval", "version": None}, "version"),
        ({"workflow": "order_approval", "variables": None}, "variables"),
    ],
)
def test_null_is_not_an_absent_field(
    client: TestClient,  # noqa: F811
    body: dict[str, Any],
    field: str,
) -> None:
    """Was a 201 for ``name`` and ``version`` (schemathesis: ``"name": null`` violates the
    document's ``string``): null was taken as "not given"."""
    register_order(client)
    before = snapshot(client)
    error = assert_error(client.post("/api/rooms", json=body), 422, "invalid_input")
    assert error["details"]["problems"][0]["path"] == field
    assert snapshot(client) == before
