"""Rate limits for the server: token buckets per API key, and per room for run and input.

:class:`RateLimit` is a pure ASGI middleware (``Middleware(RateLimit, ...)``); it goes just
inside :class:`~openrooms_server.security.APIKeyAuth`, whose key id it counts by. Buckets
live in this process's memory (:class:`MemoryRateLimiter`) or, shared by every server
process that uses the same Redis and key prefix, in Redis (:class:`RedisRateLimiter`: one
Lua script per request, on the Redis server's clock). A refused request gets 429
``rate_limited`` with ``Retry-After``; see ``docs/server-security.md``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Final, Protocol

import attrs
from starlette.types import ASGIApp, Receive, Scope, Send

from openrooms.errors import BackendUnavailableError
from openrooms_server.security import DEFAULT_PUBLIC_PATHS, error_response, request_state

__all__ = [
    "MemoryRateLimiter",
    "Rate",
    "RateLimit",
    "RateLimiter",
    "RedisRateLimiter",
]

log = logging.getLogger("openrooms.server.ratelimit")

_ROOM_WRITE: Final = re.compile(r"^/api/rooms/(?P<room>[^/]+)/(?:run|input)$")


@attrs.frozen
class Rate:
    """A token bucket: at most *limit* requests in a burst, refilled at *limit* per *period_s*.

    Raises:
        ValueError: *limit* is below 1 or *period_s* is not positive.
    """

    limit: int
    period_s: float = 60.0

    def __attrs_post_init__(self) -> None:
        if self.limit < 1 or not self.period_s > 0:
            raise ValueError(
                f"a rate needs limit >= 1 and period_s > 0, got {self.limit}/{self.period_s}s"
            )

    @property
    def per_ms(self) -> float:
        """Tokens added per millisecond."""
        return self.limit / (self.period_s * 1000)


class RateLimiter(Protocol):
    """Where token buckets live."""

    async def hit(self, bucket: str, rate: Rate) -> float:
        """Take one token from *bucket*: 0 if there was one, else the seconds until there is.

        Raises:
            BackendUnavailableError: the buckets' store cannot be reached.
        """

    def close(self) -> None:
        """Release connections."""


class MemoryRateLimiter:
    """Token buckets in this process's memory (one server process).

    Args:
        max_buckets: when more buckets than this exist, the full ones (which hold no
            information) are dropped.
        clock: milliseconds, monotonic (for tests).
    """

    def __init__(
        self, *, max_buckets: int = 100_000, clock: Callable[[], float] | None = None
    ) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max = max_buckets
        self._clock = clock or (lambda: time.monotonic() * 1000)
        self._lock = threading.Lock()  # hit() runs on the loop, but a test may share it

    async def hit(self, bucket: str, rate: Rate) -> float:
        """Take one token from *bucket* (see :class:`RateLimiter`)."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(bucket, (float(rate.limit), now))
            tokens = min(float(rate.limit), tokens + max(0.0, now - at) * rate.per_ms)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate.per_ms / 1000
            self._buckets[bucket] = (tokens, now)
            if len(self._buckets) > self._max:
                self._prune(now, rate)
        return wait

    def _prune(self, now: float, rate: Rate) -> None:
        full_after = rate.limit / rate.per_ms
        stale = [b for b, (_, at) in self._buckets.items() if now - at >= full_after]
        for b in stale:
            del self._buckets[b]
        if len(self._buckets) > self._max:  # still too many: forget the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[len(self._buckets) // 2 :]
            self._buckets = dict(keep)

    def close(self) -> None:
        """Forget every bucket."""
        self._buckets.clear()


# One round trip, atomic, and on the Redis server's clock, so every server process shares
# the same buckets and the same time. Returns the wait in milliseconds (0: allowed).
_BUCKET_LUA: Final = """
local capacity = tonumber(ARGV[1])
local per_ms = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or capacity
local at = tonumber(b[2]) or now
if now > at then tokens = math.min(capacity, tokens + (now - at) * per_ms) end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / per_ms) end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / per_ms) + 1000)
return wait
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every server process that uses the same *prefix*.

    Each bucket is one hash under *prefix*, updated by one Lua script on the Redis server's
    clock, and expires once it would be full again. Calls run in a worker thread, off the
    event loop.

    Args:
        url: a ``redis://`` or ``rediss://`` URL (its query string is left to redis-py).
        prefix: every key starts with it.
        timeout_s: socket timeout of each call.

    Raises:
        MissingExtraError: redis-py is not installed (``pip install 'openrooms[redis]'``).
    """

    def __init__(
        self, url: str, *, prefix: str = "openrooms:ratelimit:", timeout_s: float = 2.0
    ) -> None:
        from openrooms._extras import require

        redis = require("redis", feature="the shared rate limiter", extra="redis")
        self.prefix = prefix
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self._client.register_script(_BUCKET_LUA)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    def bucket_key(self, bucket: str) -> str:
        """The Redis key of *bucket*."""
        return f"{self.prefix}{bucket}"

    def _hit(self, bucket: str, rate: Rate) -> float:
        try:
            wait_ms = self._script(keys=[self.bucket_key(bucket)], args=[rate.limit, rate.per_ms])
        except self._errors as exc:
            raise BackendUnavailableError("redis", f"rate limiter: {type(exc).__name__}") from exc
        return int(wait_ms) / 1000

    async def hit(self, bucket: str, rate: Rate) -> float:
        """Take one token from *bucket* (see :class:`RateLimiter`)."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._hit, bucket, rate)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _room_bucket(room: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", room):
        return f"room:{room}"
    return f"room#{hashlib.sha256(room.encode()).hexdigest()[:16]}"


class RateLimit:
    """Limit requests per API key (per client address when no key is configured), and
    ``POST /api/rooms/{id}/run`` and ``.../input`` per room as well.

    A refused request gets 429 ``rate_limited`` with ``Retry-After`` (whole seconds) and
    ``details: {"scope": "key" | "room", "retry_after_s": ...}``. Put it inside
    :class:`APIKeyAuth`, which sets the key id it counts by.

    Args:
        app: the ASGI app it guards.
        limiter: where buckets live (default: a :class:`MemoryRateLimiter`).
        per_key: each key's rate.
        per_room: each room's rate for run and input; None turns the room limit off.
        exempt_paths: paths never limited (the health check).
        room_path: the pattern of room-limited paths; its ``room`` group names the room.
        fail_open: when the limiter's backend is down, let requests through (logged)
            rather than answer 503 ``backend_unavailable``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter | None = None,
        per_key: Rate = Rate(600, 60),
        per_room: Rate | None = Rate(30, 60),
        exempt_paths: Collection[str] = DEFAULT_PUBLIC_PATHS,
        room_path: re.Pattern[str] = _ROOM_WRITE,
        fail_open: bool = False,
    ) -> None:
        self.app = app
        self.limiter: RateLimiter = limiter if limiter is not None else MemoryRateLimiter()
        self.per_key, self.per_room = per_key, per_room
        self.exempt_paths = frozenset(exempt_paths)
        self.room_path = room_path
        self.fail_open = fail_open

    def _who(self, scope: Scope) -> str:
        kid = request_state(scope).get("key_id")
        if kid:
            return f"key:{kid}"
        client = scope.get("client")
        return f"ip:{client[0] if client else 'unknown'}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        checks = [("key", self._who(scope), self.per_key)]
        if self.per_room is not None and scope["method"] == "POST":
            m = self.room_path.match(scope["path"])
            if m is not None:
                checks.append(("room", _room_bucket(m["room"]), self.per_room))
        for what, bucket, rate in checks:
            try:
                wait = await self.limiter.hit(bucket, rate)
            except BackendUnavailableError as exc:
                if self.fail_open:
                    log.warning("rate limiter unavailable, request let through: %s", exc)
                    continue
                response = error_response(
                    503, "backend_unavailable", "the rate limiter's store cannot be reached"
                )
                await response(scope, receive, send)
                return
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                response = error_response(
                    429,
                    "rate_limited",
                    f"too many requests for this {what}; retry in {seconds} s",
                    {"scope": what, "retry_after_s": seconds},
                    headers={"Retry-After": str(seconds)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
