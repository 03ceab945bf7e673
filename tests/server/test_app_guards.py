"""create_app with its guards wired in: keys on every route but /health, security headers,
the body cap, rate limits, /health, /metrics and the live log, through the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from openrooms_server import Settings, create_app
from openrooms_server.app import routes_of
from openrooms_server.dashboard import is_page
from tests.server.server_tools import assert_error

ROOT = Path(__file__).parents[2]
ORDER_YAML = (ROOT / "examples" / "order_approval.yaml").read_text(encoding="utf-8")
KEY = "k" * 24
AUTH = {"authorization": f"Bearer {KEY}"}


def app_with(tmp_path: Path, **settings: object) -> TestClient:
    env = {"OPENROOMS_API_KEYS": KEY}
    return TestClient(
        create_app(Settings(db=f"sqlite:///{tmp_path / 'rooms.db'}", env=env, **settings))  # type: ignore[arg-type]
    )


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_with(tmp_path) as c:
        yield c


def concrete(path: str) -> str:
    return path.replace("{id}", "no-such-room")


def test_every_route_but_health_answers_401_without_a_key(client: TestClient) -> None:
    """Found by walking the router, so a route added later is checked too. The dashboard's
    pages send a person to the login page instead (303), and the login page is open."""
    app = client.app
    routes = routes_of(app)  # type: ignore[arg-type]
    assert ("/health", "GET") in routes and ("/api/rooms", "POST") in routes
    assert ("/", "GET") in routes and ("/rooms/{id}/cancel", "POST") in routes
    for path, method in routes:
        response = client.request(method, concrete(path), follow_redirects=False)
        if path == "/health" or (path, method) == ("/login", "GET"):
            assert response.status_code == 200, response.text
            continue
        if (path, method) == ("/login", "POST"):
            assert response.status_code == 401, response.text  # no key in the form
            continue
        if is_page(method, path):
            assert response.status_code == 303, (path, method, response.text)
            assert response.headers["location"].startswith("/login?next=%2F")
            continue
        assert response.status_code == 401, (path, method, response.text)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].lower().startswith("bearer")
        bad = client.request(method, concrete(path), headers={"authorization": "Bearer wrong"})
        assert bad.status_code == 401, (path, method)
    assert all(isinstance(r, Route | Mount) for r in app.routes)  # type: ignore[attr-defined]


def test_a_key_opens_the_api_and_every_answer_carries_the_security_headers(
    client: TestClient,
) -> None:
    r = client.post(
        "/api/workflows", content=ORDER_YAML, headers={**AUTH, "content-type": "application/yaml"}
    )
    assert r.status_code == 201, r.text
    created = client.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH)
    assert created.status_code == 201, created.text
    for response in (r, created, client.get("/health"), client.get("/api/rooms")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-request-id"]
    assert "strict-transport-security" not in r.headers  # plain HTTP: no HSTS


def test_a_body_over_the_cap_is_413_and_nothing_is_stored(tmp_path: Path) -> None:
    with app_with(tmp_path, max_body_bytes=2_000) as client:
        big = {"workflow": "order_approval", "variables": {"note": "x" * 5_000}}
        r = client.post(
            "/api/rooms",
            content=json.dumps(big),
            headers={**AUTH, "content-type": "application/json"},
        )
        assert_error(r, 413, "payload_too_large")
        assert client.get("/api/rooms", headers=AUTH).json()["items"] == []


def test_the_wrong_content_type_is_415(client: TestClient) -> None:
    r = client.post(
        "/api/rooms", content="workflow=x", headers={**AUTH, "content-type": "text/plain"}
    )
    assert_error(r, 415, "unsupported_media_type")


def test_too_many_requests_for_a_key_is_429_with_retry_after(tmp_path: Path) -> None:
    with app_with(tmp_path, requests_per_minute=3) as client:
        codes = [client.get("/api/tools", headers=AUTH).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/api/tools", headers=AUTH)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200  # never limited


def test_health_checks_each_backend_and_metrics_count_rooms_and_requests(
    client: TestClient,
) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert set(health["checks"]) == {"state", "log", "queue"}
    client.post(
        "/api/workflows", content=ORDER_YAML, headers={**AUTH, "content-type": "application/yaml"}
    )
    room = client.post("/api/rooms?run=true", json={"workflow": "order_approval"}, headers=AUTH)
    assert room.status_code == 201, room.text
    metrics = client.get("/metrics", headers=AUTH)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "openrooms_rooms{" in text
    assert 'openrooms_http_requests_total{method="POST",route="/api/rooms",status="201"}' in text
    assert KEY not in text


def test_the_live_log_streams_a_room_to_its_end(client: TestClient) -> None:
    client.post(
        "/api/workflows", content=ORDER_YAML, headers={**AUTH, "content-type": "application/yaml"}
    )
    room = client.post(
        "/api/rooms?run=true",
        json={"workflow": "order_approval", "variables": {"amount": 20}},
        headers=AUTH,
    ).json()
    with client.stream("GET", f"/api/rooms/{room['id']}/logs/stream", headers=AUTH) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    ids = [int(line[4:]) for line in body.splitlines() if line.startswith("id: ")]
    logs = client.get(f"/api/rooms/{room['id']}/logs", headers=AUTH).json()["items"]
    assert ids == [e["seq"] for e in logs]  # every line once, in order, to the end
    assert "event: end" in body
    missing = client.get("/api/rooms/nope/logs/stream", headers=AUTH)
    assert_error(missing, 404, "not_found")
