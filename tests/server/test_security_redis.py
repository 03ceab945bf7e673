"""The shared rate limiter on a real Redis: two app instances, one budget."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from openrooms.errors import BackendUnavailableError
from openrooms_server.ratelimit import Rate, RateLimit, RedisRateLimiter
from openrooms_server.security import APIKeyAuth
from tests.conftest import REDIS_URL, drop_redis_prefix
from tests.server.test_security import KEY, OTHER, ROUTES, auth

BASE_URL = REDIS_URL.split("?", 1)[0]


@pytest.fixture
def prefix() -> Iterator[str]:
    import redis

    try:
        redis.Redis.from_url(BASE_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis at {BASE_URL} is unreachable ({exc}); start it")
    p = f"test-{uuid.uuid4().hex}:rl:"
    yield p
    drop_redis_prefix(p)


def app_on(limiter: RedisRateLimiter, per_key: Rate, per_room: Rate | None = None) -> Starlette:
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(APIKeyAuth, keys=[KEY, OTHER]),
            Middleware(RateLimit, limiter=limiter, per_key=per_key, per_room=per_room),
        ],
    )


def test_two_app_instances_share_one_budget_through_redis(prefix: str) -> None:
    one, two = RedisRateLimiter(BASE_URL, prefix=prefix), RedisRateLimiter(BASE_URL, prefix=prefix)
    try:
        rate = Rate(4, 3600)
        with TestClient(app_on(one, rate)) as a, TestClient(app_on(two, rate)) as b:
            codes = [c.get("/api/echo", headers=auth()).status_code for c in (a, b, a, b, a, b)]
            assert codes == [200, 200, 200, 200, 429, 429]
            r = b.get("/api/echo", headers=auth())
            assert r.json()["error"]["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) > 100  # 1 token per 900 s
            assert a.get("/api/echo", headers=auth(OTHER)).status_code == 200
    finally:
        one.close()
        two.close()
    import redis

    keys = [k.decode() for k in redis.Redis.from_url(BASE_URL).scan_iter(f"{prefix}*")]
    assert keys and all(k.startswith(prefix) for k in keys)
    assert all(KEY not in k for k in keys)  # buckets are named by key id


def test_redis_room_buckets_are_shared_too(prefix: str) -> None:
    one, two = RedisRateLimiter(BASE_URL, prefix=prefix), RedisRateLimiter(BASE_URL, prefix=prefix)
    try:
        with (
            TestClient(app_on(one, Rate(100, 60), Rate(1, 60))) as a,
            TestClient(app_on(two, Rate(100, 60), Rate(1, 60))) as b,
        ):
            assert a.post("/api/rooms/r9/run", headers=auth()).status_code == 202
            r = b.post("/api/rooms/r9/input", headers=auth(OTHER))
            assert r.status_code == 429 and r.json()["error"]["details"]["scope"] == "room"
    finally:
        one.close()
        two.close()


def test_an_unreachable_redis_answers_503_or_lets_through_when_fail_open() -> None:
    # a port nothing listens on (loopback only): connection refused at once
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", timeout_s=0.5)
    app = app_on(limiter, Rate(5, 60))
    with TestClient(app) as c:
        r = c.get("/api/echo", headers=auth())
        assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
        assert "127.0.0.1:1" not in r.text
    open_app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(RateLimit, limiter=limiter, per_key=Rate(5, 60), fail_open=True)],
    )
    with TestClient(open_app) as c:
        assert c.get("/api/echo").status_code == 200
    import anyio

    with pytest.raises(BackendUnavailableError):
        anyio.run(limiter.hit, "b", Rate(1, 1))
    limiter.close()
