"""The guards of openrooms_server.security, on a small Starlette app through TestClient."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from openrooms.errors import InputError
from openrooms_server.ratelimit import MemoryRateLimiter, Rate, RateLimit
from openrooms_server.security import (
    APIKeyAuth,
    BodyLimit,
    ContentTypeGuard,
    InvalidJSONError,
    SecurityHeaders,
    cors,
    json_error_response,
    key_id,
    load_api_keys,
    parse_json,
)

KEY = "k-0123456789abcdef-secret"
OTHER = "k-fedcba9876543210-other"


async def echo(request: Request) -> Response:
    if request.method == "POST":
        try:
            value = parse_json(await request.body(), max_depth=8, max_bytes=10_000)
        except InvalidJSONError as exc:
            return json_error_response(exc)
        return JSONResponse({"got": value, "key_id": getattr(request.state, "key_id", None)})
    return JSONResponse({"ok": True, "key_id": getattr(request.state, "key_id", None)})


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def room_action(request: Request) -> Response:
    return JSONResponse({"room": request.path_params["room_id"]}, status_code=202)


async def workflows(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())}, status_code=201)


ROUTES = [
    Route("/health", health),
    Route("/api/echo", echo, methods=["GET", "POST"]),
    Route("/api/rooms/{room_id}/run", room_action, methods=["POST"]),
    Route("/api/rooms/{room_id}/input", room_action, methods=["POST"]),
    Route("/api/workflows", workflows, methods=["POST"]),
]


def make_app(**options: Any) -> Starlette:
    """An app with every guard, in the documented order; *options* per guard name."""
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SecurityHeaders, **options.get("headers", {})),
            Middleware(cors, **options.get("cors", {})),
            Middleware(APIKeyAuth, **options.get("auth", {"keys": [KEY, OTHER]})),
            Middleware(RateLimit, **options.get("rate", {})),
            Middleware(BodyLimit, **options.get("body", {"max_bytes": 1000})),
            Middleware(ContentTypeGuard, yaml_routes=[("POST", "/api/workflows")]),
        ],
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as c:
        yield c


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


# --- keys -------------------------------------------------------------------------------------


def test_a_request_without_a_key_is_refused_with_401(client: TestClient) -> None:
    r = client.get("/api/echo")
    assert r.status_code == 401
    assert error_code(r) == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {KEY}x",
        f"Bearer {KEY[:-1]}",
        f"Basic {KEY}",
        KEY,
        "Bearer ",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_a_wrong_key_or_scheme_is_refused(client: TestClient, header: str) -> None:
    r = client.get("/api/echo", headers={b"Authorization": header.encode("utf-8")})
    assert r.status_code == 401, header


def test_each_configured_key_is_accepted_and_its_id_is_in_the_state(client: TestClient) -> None:
    for k in (KEY, OTHER):
        r = client.get("/api/echo", headers=auth(k))
        assert r.status_code == 200
        assert r.json()["key_id"] == key_id(k)
        assert re.fullmatch(r"[0-9a-f]{8}", r.json()["key_id"])
        assert k not in r.text


def test_health_is_answered_without_a_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


def test_without_configured_keys_every_request_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENROOMS_API_KEYS", raising=False)
    with TestClient(make_app(auth={})) as c:
        r = c.get("/api/echo")
    assert r.status_code == 200 and r.json()["key_id"] is None


def test_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROOMS_API_KEYS", f" {KEY} ,, {OTHER}")
    assert load_api_keys() == [KEY, OTHER]
    with TestClient(make_app(auth={})) as c:
        assert c.get("/api/echo").status_code == 401
        assert c.get("/api/echo", headers=auth(OTHER)).status_code == 200


@pytest.mark.parametrize(
    ("value", "problem"), [("short", "at least 16"), ("a" * 20 + " b", "space")]
)
def test_a_malformed_key_is_refused_at_startup(value: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem) as info:
        load_api_keys(value)
    assert "key 1" in str(info.value)


# --- rate limits ------------------------------------------------------------------------------


def test_a_key_over_its_rate_gets_429_with_retry_after() -> None:
    app = make_app(rate={"per_key": Rate(3, 60)})
    with TestClient(app) as c:
        codes = [c.get("/api/echo", headers=auth()).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/api/echo", headers=auth())
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        assert r.json()["error"]["details"]["scope"] == "key"
        assert 1 <= int(r.headers["retry-after"]) <= 20
        # another key has its own bucket; /health is never limited
        assert c.get("/api/echo", headers=auth(OTHER)).status_code == 200
        assert all(c.get("/health").status_code == 200 for _ in range(5))


def test_run_and_input_are_limited_per_room_across_keys() -> None:
    app = make_app(rate={"per_key": Rate(100, 60), "per_room": Rate(2, 60)})
    with TestClient(app) as c:
        assert c.post("/api/rooms/r1/run", headers=auth()).status_code == 202
        assert c.post("/api/rooms/r1/input", headers=auth(OTHER)).status_code == 202
        r = c.post("/api/rooms/r1/run", headers=auth(OTHER))
        assert r.status_code == 429
        assert r.json()["error"]["details"]["scope"] == "room"
        assert c.post("/api/rooms/r2/run", headers=auth()).status_code == 202


def test_the_memory_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(clock=lambda: now[0])
    rate = Rate(2, 1)  # 2 per second: a token every 500 ms
    import anyio

    async def hits() -> list[float]:
        return [await limiter.hit("b", rate) for _ in range(3)]

    first = anyio.run(hits)
    assert first[:2] == [0, 0] and first[2] == pytest.approx(0.5)
    now[0] = 499.0
    assert anyio.run(limiter.hit, "b", rate) > 0
    now[0] = 1500.0
    assert anyio.run(limiter.hit, "b", rate) == 0


def test_a_bad_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        Rate(0, 60)


# --- CORS and headers -------------------------------------------------------------------------


def test_security_headers_are_on_every_response_and_hsts_only_over_tls(client: TestClient) -> None:
    for r in (client.get("/health"), client.get("/api/echo")):  # a 200 and a 401
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in r.headers
    # X-Forwarded-Proto counts only when the proxy is trusted
    r = client.get("/health", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in r.headers
    with TestClient(make_app(), base_url="https://testserver") as tls:
        assert "max-age=" in tls.get("/health").headers["strict-transport-security"]
    with TestClient(make_app(headers={"trust_forwarded_proto": True})) as proxied:
        r = proxied.get("/health", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" in r.headers


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.get("/health", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/api/echo",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_listed_origins_only() -> None:
    app = make_app(cors={"allow_origins": ["https://app.example"]})
    with TestClient(app) as c:
        pre = c.options(
            "/api/echo",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200  # a preflight needs no key
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-credentials" not in pre.headers
        r = c.get("/api/echo", headers={**auth(), "Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = c.get("/api/echo", headers={**auth(), "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_a_cors_origin_with_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        cors(make_app(), allow_origins=["https://app.example/x"])


# --- bodies -----------------------------------------------------------------------------------


def test_a_body_over_the_cap_with_content_length_gets_413(client: TestClient) -> None:
    r = client.post(
        "/api/echo",
        content=b"[" + b"1," * 600 + b"1]",
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert r.json()["error"]["details"] == {"max_bytes": 1000}


def test_a_chunked_body_over_the_cap_gets_413_and_is_not_read_to_the_end() -> None:
    pulled = []

    def chunks() -> Iterator[bytes]:
        for i in range(100):
            pulled.append(i)
            yield b"x" * 100

    with TestClient(make_app()) as c:
        r = c.post(
            "/api/echo", content=chunks(), headers={**auth(), "Content-Type": "application/json"}
        )
    assert r.status_code == 413 and error_code(r) == "payload_too_large"
    assert "content-length" not in {k.lower() for k in r.request.headers}


def test_body_limit_stops_reading_a_chunked_body_at_the_cap() -> None:
    """At the ASGI level: the receive calls stop once the cap is passed."""
    import anyio

    received = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append(1)
        return {"type": "http.request", "body": b"x" * 100, "more_body": len(received) < 100}

    async def send(message: Any) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await Request(scope, receive).body()  # raises ClientDisconnect at the cap
        await JSONResponse({})(scope, receive, send)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    anyio.run(BodyLimit(app, max_bytes=1000), scope, receive, send)
    assert len(received) == 11
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


def test_a_chunked_body_under_the_cap_goes_through() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": '
        yield b"[1, 2]}"

    with TestClient(make_app()) as c:
        r = c.post(
            "/api/echo", content=chunks(), headers={**auth(), "Content-Type": "application/json"}
        )
    assert r.status_code == 200 and r.json()["got"] == {"a": [1, 2]}


def test_a_content_length_that_is_not_a_number_gets_400(client: TestClient) -> None:
    r = client.post(
        "/api/echo",
        content=b"{}",
        headers={**auth(), "Content-Type": "application/json", "Content-Length": "2x"},
    )
    assert r.status_code == 400 and error_code(r) == "invalid_request"


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/yaml"]
)
def test_a_body_that_is_not_json_gets_415(client: TestClient, content_type: str | None) -> None:
    headers = auth() if content_type is None else {**auth(), "Content-Type": content_type}
    r = client.post("/api/echo", content=b'{"a": 1}', headers=headers)
    assert r.status_code == 415 and error_code(r) == "unsupported_media_type"
    assert r.json()["error"]["details"] == {"allowed": ["application/json"]}


def test_json_with_a_charset_passes_and_yaml_only_where_opted_in(client: TestClient) -> None:
    h = {**auth(), "Content-Type": "application/json; charset=utf-8"}
    assert client.post("/api/echo", content=b"{}", headers=h).status_code == 200
    h = {**auth(), "Content-Type": "application/yaml"}
    assert client.post("/api/workflows", content=b"id: x", headers=h).status_code == 201


def test_a_post_without_a_body_needs_no_content_type(client: TestClient) -> None:
    assert client.post("/api/rooms/r1/run", headers=auth()).status_code == 202


def test_a_refused_request_without_a_key_reads_no_body(client: TestClient) -> None:
    r = client.post("/api/echo", content=b"x" * 5000, headers={"Content-Type": "text/plain"})
    assert r.status_code == 401


# --- parse_json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        (b'{"a": 1', 400, "line 1"),
        (b"\xff{}", 400, "byte 0"),
        (b'{"a": NaN}', 400, ""),
        (b'{"a": 1, "a": 2}', 422, ""),
        (b'{"a": [[[[[[[[[1]]]]]]]]]}', 422, "$.a[0][0][0][0][0][0]"),
        (b"[" * 5000 + b"]" * 5000, 413, ""),
        (b"[" * 500 + b"]" * 500, 422, ""),
    ],
)
def test_parse_json_refusals_name_status_and_place(body: bytes, status: int, where: str) -> None:
    with pytest.raises(InvalidJSONError) as info:
        parse_json(body, max_depth=8, max_bytes=2000)
    assert info.value.status == status
    assert info.value.code == ("payload_too_large" if status == 413 else "invalid_json")
    assert where in str(info.value)
    assert isinstance(info.value, InputError)


def test_parse_json_returns_the_value_within_limits() -> None:
    assert parse_json('{"a": [1, {"b": null}]}', max_depth=3) == {"a": [1, {"b": None}]}
    with pytest.raises(ValueError, match="max_depth"):
        parse_json(b"{}", max_depth=0)


def test_invalid_json_through_a_route_gets_its_error_body(client: TestClient) -> None:
    h = {**auth(), "Content-Type": "application/json"}
    r = client.post("/api/echo", content=b'{"a": }', headers=h)
    assert r.status_code == 400 and error_code(r) == "invalid_json"
    assert "line 1" in r.json()["error"]["message"]
    deep = json.dumps({"a": [[[[[[[[[[1]]]]]]]]]]}).encode()
    r = client.post("/api/echo", content=deep, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"]["where"].startswith("$.a")


def test_a_route_keeps_its_own_content_security_policy() -> None:
    async def page(request: Request) -> Response:
        return Response("<p>hi</p>", headers={"Content-Security-Policy": "default-src 'self'"})

    app = Starlette(routes=[Route("/page", page)], middleware=[Middleware(SecurityHeaders)])
    with TestClient(app) as c:
        r = c.get("/page")
    assert r.headers["content-security-policy"] == "default-src 'self'"
    assert r.headers.get_list("content-security-policy") == ["default-src 'self'"]


def test_a_websocket_without_a_key_is_closed() -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/ws", ws)], middleware=[Middleware(APIKeyAuth, keys=[KEY])]
    )
    with TestClient(app) as c:
        with pytest.raises(WebSocketDisconnect) as info, c.websocket_connect("/ws"):
            pass
        assert info.value.code == 1008
        with c.websocket_connect("/ws", headers=auth()) as s:
            assert s.receive_text() == "hello"


def test_an_options_request_that_is_not_a_preflight_needs_a_key(client: TestClient) -> None:
    assert client.options("/api/echo").status_code == 401
    assert client.options("/api/echo", headers={"Origin": "https://x.example"}).status_code == 401
