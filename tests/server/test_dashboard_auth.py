"""The dashboard with API keys on: the login page, the signed session cookie (pages, /api and
the live log accept it; forged, expired and revoked ones are refused), CSRF tokens on
unsafe requests the cookie authenticates, and ``next`` kept to local paths."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from openrooms_server import Settings, create_app
from openrooms_server.session import CSRF_FIELD, SESSION_COOKIE, Sessions
from tests.server.server_tools import assert_error
from tests.server.test_dashboard import ORDER_YAML, YAML, inert

KEY = "k" * 24
OTHER = "o" * 24
AUTH = {"authorization": f"Bearer {KEY}"}


def app_client(tmp_path: Path, keys: str) -> TestClient:
    settings = Settings(db=f"sqlite:///{tmp_path / 'rooms.db'}", env={"OPENROOMS_API_KEYS": keys})
    return TestClient(create_app(settings), follow_redirects=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with app_client(tmp_path, f"{KEY},{OTHER}") as c:
        yield c


def log_in(client: TestClient, key: str = KEY, next_: str = "/") -> str:
    """Log in through the form; the session cookie's value."""
    r = client.post("/login", data={"key": key, "next": next_})
    assert r.status_code == 303, r.text
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return cookie


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert m, "no CSRF token in the page"
    return m[1]


def a_room(client: TestClient) -> str:
    r = client.post("/api/workflows", content=ORDER_YAML, headers={**YAML, **AUTH})
    assert r.status_code == 201, r.text
    r = client.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH)
    assert r.status_code == 201, r.text
    room_id: str = r.json()["id"]
    return room_id


def test_a_page_without_a_session_goes_to_the_login_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    r = client.get("/rooms/abc?level=INFO")
    assert r.headers["location"] == "/login?next=%2Frooms%2Fabc%3Flevel%3DINFO"
    assert_error(client.get("/api/rooms"), 401, "unauthorized")  # the API is not a page
    page = inert(client.get("/login?next=/rooms/abc").text)
    assert page.find("input", name="key", type="password")
    assert page.find("input", name="next", value="/rooms/abc")
    assert client.get("/static/dashboard.css").status_code == 200  # no secret in the CSS


def test_a_wrong_key_gets_the_login_page_again_with_401(client: TestClient) -> None:
    r = client.post("/login", data={"key": "not-a-key-at-all-0000", "next": "/"})
    assert r.status_code == 401
    page = inert(r.text)
    assert page.find("p", class_="form-error", role="alert")
    assert "not one this server accepts" in page.text
    assert SESSION_COOKIE not in client.cookies
    assert client.post("/login", data={}).status_code == 401


def test_the_session_cookie_opens_pages_the_api_and_the_live_log(client: TestClient) -> None:
    room_id = a_room(client)
    r = client.post("/login", data={"key": KEY, "next": f"/rooms/{room_id}"})
    assert r.status_code == 303 and r.headers["location"] == f"/rooms/{room_id}"
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # plain http here; https gets Secure
    assert any(a.startswith("max-age=") for a in attributes)
    value = client.cookies[SESSION_COOKIE]
    assert re.fullmatch(r"[0-9a-f]{8}\.[0-9]+\.[0-9a-f]{64}", value)
    assert KEY not in value

    page = client.get(f"/rooms/{room_id}")
    assert page.status_code == 200 and "room-status" in inert(page.text).ids()
    assert csrf_of(page.text)
    assert client.get("/api/rooms").status_code == 200
    assert client.get(f"/api/rooms/{room_id}").json()["id"] == room_id
    client.post(f"/api/rooms/{room_id}/cancel", json={}, headers=AUTH)
    with client.stream("GET", f"/api/rooms/{room_id}/logs/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    assert "ROOM_CANCELLED" in body and "event: end" in body
    assert inert(client.get("/").text).find("form", action="/logout")


def test_https_sets_a_secure_cookie(tmp_path: Path) -> None:
    settings = Settings(db=f"sqlite:///{tmp_path / 'r.db'}", env={"OPENROOMS_API_KEYS": KEY})
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        r = c.post("/login", data={"key": KEY}, follow_redirects=False)
        assert r.status_code == 303
        assert "secure" in {a.strip().lower() for a in r.headers["set-cookie"].split(";")}


@pytest.mark.parametrize(
    "forge",
    [
        lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"),  # a changed signature
        lambda v: v.replace(v.split(".")[1], str(int(v.split(".")[1]) + 10**6)),  # longer life
        lambda v: "deadbeef." + v.split(".", 1)[1],  # another key's id
        lambda v: v + "x",
        lambda v: "",
        lambda v: "a.b.c",
    ],
)
def test_a_forged_cookie_is_refused(client: TestClient, forge: object) -> None:
    value = log_in(client)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, forge(value))  # type: ignore[operator]
    assert client.get("/").status_code == 303
    assert_error(client.get("/api/rooms"), 401, "unauthorized")


def test_an_expired_or_revoked_cookie_is_refused(client: TestClient, tmp_path: Path) -> None:
    old = Sessions([KEY]).issue(KEY, time.time() - 13 * 3600)  # signed right, 12 h lifetime
    client.cookies.set(SESSION_COOKIE, old)
    assert client.get("/").status_code == 303
    assert_error(client.get("/api/rooms"), 401, "unauthorized")

    # a cookie signed with OTHER works until OTHER is removed from the keys
    client.cookies.clear()
    value = log_in(client, OTHER)
    assert client.get("/api/rooms").status_code == 200
    with app_client(tmp_path, KEY) as without_other:
        without_other.cookies.set(SESSION_COOKIE, value)
        assert without_other.get("/").status_code == 303
        assert_error(without_other.get("/api/rooms"), 401, "unauthorized")
    with app_client(tmp_path, f"{OTHER},{KEY}") as another_process:  # same keys: accepted
        another_process.cookies.set(SESSION_COOKIE, value)
        assert another_process.get("/api/rooms").status_code == 200


def test_an_unsafe_request_by_cookie_needs_the_csrf_token(client: TestClient) -> None:
    room_id = a_room(client)
    log_in(client)
    token = csrf_of(client.get("/").text)

    # the API by cookie: the header, or 403
    r = client.post(f"/api/rooms/{room_id}/run", json={})
    assert_error(r, 403, "csrf_failed")
    r = client.post(f"/api/rooms/{room_id}/run", json={}, headers={"x-openrooms-csrf": "0" * 64})
    assert_error(r, 403, "csrf_failed")
    assert client.get(f"/api/rooms/{room_id}/status").json()["status"] == "created"

    # a dashboard form: the hidden field (or the header)
    r = client.post(f"/rooms/{room_id}/cancel", data={"reason": "x"})
    assert_error(r, 403, "csrf_failed")
    r = client.post(f"/rooms/{room_id}/cancel", data={"reason": "x", CSRF_FIELD: "f" * 64})
    assert_error(r, 403, "csrf_failed")
    assert client.get(f"/api/rooms/{room_id}/status").json()["status"] == "created"
    page = inert(client.get(f"/rooms/{room_id}").text)
    assert page.find("input", name=CSRF_FIELD, value=token)  # in every form
    r = client.post(f"/rooms/{room_id}/cancel", data={"reason": "by form", CSRF_FIELD: token})
    assert r.status_code == 303
    assert client.get(f"/api/rooms/{room_id}").json()["reason"] == "by form"

    other = client.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH).json()
    r = client.post(
        f"/api/rooms/{other['id']}/cancel", json={}, headers={"x-openrooms-csrf": token}
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"

    # a Bearer key needs no token: it is not sent by a browser on its own
    client.cookies.clear()
    third = client.post("/api/rooms", json={"workflow": "order_approval"}, headers=AUTH).json()
    assert client.post(f"/api/rooms/{third['id']}/cancel", json={}, headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", "/ok\r\nX: y", ""],
)
def test_next_never_leaves_the_site(client: TestClient, target: str) -> None:
    r = client.post("/login", data={"key": KEY, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"
    page = inert(client.get("/login", params={"next": target}).text)
    assert page.find("input", name="next", value="/")


def test_a_login_posted_from_another_site_is_refused(client: TestClient) -> None:
    r = client.post("/login", data={"key": KEY}, headers={"origin": "https://evil.example"})
    assert_error(r, 403, "csrf_failed")
    assert SESSION_COOKIE not in client.cookies
    r = client.post("/login", data={"key": KEY}, headers={"origin": "http://testserver"})
    assert r.status_code == 303


def test_log_out_forgets_the_cookie(client: TestClient) -> None:
    log_in(client)
    token = csrf_of(client.get("/").text)
    assert_error(client.post("/logout", data={}), 403, "csrf_failed")
    r = client.post("/logout", data={CSRF_FIELD: token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").status_code == 303


def test_without_keys_every_page_is_open(tmp_path: Path) -> None:
    with app_client(tmp_path, "") as c:
        assert c.get("/").status_code == 200
        page = inert(c.get("/login").text)
        assert "no API keys" in page.text
        assert c.post("/login", data={"next": "/tools"}).headers["location"] == "/tools"
        assert c.post(f"/rooms/{'x'}/cancel", data={}).status_code == 404
