"""The dashboard's pages and forms under generated hostile input: whatever a query
parameter or a posted form holds, the answer is a page or a 4xx, never a 500, and a form
that is refused changes nothing."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from openrooms_server import Settings, create_app
from tests.server.test_dashboard import start_room, until, waiting_order

# digits of other scripts (int() takes them, a store does not), huge and negative numbers,
# and any text at all
NUMBERS = st.one_of(
    st.sampled_from(["²", "٣", "-1", "0", "1_0", " 1", "9" * 30, "1e3", "", "01"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=30),
)


def cursor(created: str, room_id: str) -> str:
    raw = f"{created}:{room_id}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CURSORS = st.one_of(
    st.builds(cursor, NUMBERS, st.text(max_size=20)),
    st.text(max_size=40),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("hostile") / "rooms.db"
    app = create_app(Settings(db=f"sqlite:///{db}", env={}))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


@pytest.fixture(scope="module")
def room(client: TestClient) -> str:
    return waiting_order(client)


FORM = {"content-type": "application/x-www-form-urlencoded", "origin": "http://testserver"}


def another_waiting(client: TestClient) -> str:
    room_id = start_room(client, "order_approval", amount=250)
    until(client, room_id, "waiting")
    return room_id


def q(value: str) -> str:
    return urllib.parse.quote(value.encode("utf-8", "surrogatepass"), safe="")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=st.sampled_from(["after", "limit", "version", "cursor", "q", "status", "level", "type"]),
    value=st.one_of(NUMBERS, CURSORS),
    page=st.sampled_from(["/", "/rooms/{room}", "/workflows/order_approval", "/new", "/tools"]),
)
def test_no_query_parameter_makes_a_page_fail(
    client: TestClient, room: str, name: str, value: str, page: str
) -> None:
    url = page.format(room=room) + "?workflow=order_approval&" + f"{name}={q(value)}"
    r = client.get(url)
    assert r.status_code < 500, (url, r.text[:300])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.lists(st.tuples(st.text(max_size=12), st.text(max_size=40)), max_size=8).map(
            lambda pairs: urllib.parse.urlencode(
                [
                    (k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                    for k, v in pairs
                ]
            ).encode()
        ),
    )
)
def test_no_posted_form_makes_a_form_route_fail(client: TestClient, room: str, body: bytes) -> None:
    fresh = another_waiting(client)  # each body meets a room that waits
    for path in (f"/rooms/{fresh}/input", "/new?workflow=order_approval"):
        r = client.post(path, content=body, headers=FORM)
        assert r.status_code < 500, (path, body, r.text[:300])


def test_a_form_of_more_fields_than_allowed_is_refused_and_changes_nothing(
    client: TestClient, room: str
) -> None:
    target = another_waiting(client)
    before = client.get(f"/api/rooms/{target}").json()
    body = "&".join(f"f{i}=1" for i in range(2001)).encode()
    r = client.post(f"/rooms/{target}/input", content=body, headers=FORM)
    assert r.status_code == 400 and "more than 2000 fields" in r.text
    assert client.get(f"/api/rooms/{target}").json() == before
