"""What the server's middleware stack costs per request, against the bare app in the same run.

    python bench/server_guards.py                  # 20,000 requests per scenario, best of 3
    python bench/server_guards.py --requests 50000 --redis redis://127.0.0.1:6379/15

The ASGI app is called directly (no sockets), so the numbers are the middleware's own cost:
a bare Starlette JSON endpoint; the same behind the whole stack of docs/server-security.md
(access log + metrics, headers, CORS, API key, rate limit in memory, body cap, content
type); and, with ``--redis``, the stack with the rate limit in Redis (one round trip and a
thread hop per request). This machine is shared and noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# bench/ holds redis.py and rq.py: keep `import redis` for the real one
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
    sys.path.pop(0)

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openrooms_server.observability import AccessLog, Metrics
from openrooms_server.ratelimit import Rate, RateLimit, RateLimiter, RedisRateLimiter
from openrooms_server.security import (
    APIKeyAuth,
    BodyLimit,
    ContentTypeGuard,
    SecurityHeaders,
    cors,
)

KEY = "bench-key-0123456789abcdef"


async def room(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["room_id"], "status": "waiting"})


def app(stack: bool, limiter: RateLimiter | None = None) -> Starlette:
    routes = [Route("/api/rooms/{room_id}", room)]
    if not stack:
        return Starlette(routes=routes)
    metrics = Metrics()
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(AccessLog, metrics=metrics),
            Middleware(SecurityHeaders),
            Middleware(cors, allow_origins=["https://app.example"]),
            Middleware(APIKeyAuth, keys=[KEY]),
            Middleware(RateLimit, limiter=limiter, per_key=Rate(10**9, 1)),
            Middleware(BodyLimit),
            Middleware(ContentTypeGuard),
        ],
    )


async def drive(asgi: Any, n: int) -> float:
    scope_base = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/rooms/r1",
        "raw_path": b"/api/rooms/r1",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {KEY}".encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 3001),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(n):
        await asgi(dict(scope_base), receive, send)
    elapsed = time.perf_counter() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", help="a Redis URL: also measure the shared rate limiter")
    args = parser.parse_args()
    logging.getLogger("openrooms.server.access").setLevel(logging.INFO)
    logging.getLogger("openrooms.server.access").addHandler(logging.NullHandler())
    logging.getLogger("openrooms.server.access").propagate = False
    scenarios: dict[str, Any] = {"bare endpoint": app(False), "full stack, memory": app(True)}
    redis_limiter = None
    if args.redis:
        redis_limiter = RedisRateLimiter(args.redis, prefix=f"bench-{uuid.uuid4().hex}:")
        scenarios["full stack, Redis"] = app(True, redis_limiter)
    best: dict[str, float] = {}
    try:
        for _ in range(args.repeat):  # alternately, so every scenario sees the same load
            for name, asgi in scenarios.items():
                n = args.requests if "Redis" not in name else max(1, args.requests // 10)
                us = asyncio.run(drive(asgi, n))
                best[name] = min(best.get(name, us), us)
    finally:
        if redis_limiter is not None:
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(f"{redis_limiter.prefix}*"))
            if keys:
                client.delete(*keys)
            redis_limiter.close()
    base = best["bare endpoint"]
    print(f"{'scenario':<22} {'us/request':>11} {'x bare':>8} {'rate vs bare':>13}")
    for name, us in best.items():
        print(f"{name:<22} {us:>11.1f} {us / base:>8.2f} {base / us:>12.0%}")


if __name__ == "__main__":
    main()
