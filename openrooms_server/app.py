"""``create_app(settings)``: the Starlette app, its runtime and how it runs rooms.

One :class:`~openrooms.runtime.Runtime` per app, opened in the lifespan (as the CLI opens
its own: the config file, the plugins, ``--script``) and closed on shutdown. Rooms run one
of two ways, chosen once from the resolved queue URL:

- no queue URL: **in the server's process**, as background tasks on its event loop
  (:class:`LocalExecutor`; ``Runtime.arun``), at most ``settings.concurrency`` at a time.
  On shutdown the runtime is asked to stop (``request_stop``): each room finishes the step
  it is in, commits it and lets go of its lease; a room still running after
  ``settings.shutdown_grace_s`` is cancelled, as a crash would stop it. Either way every
  room stays resumable (``POST /api/rooms/{id}/resume``, ``openrooms resume``, a worker).
- a queue URL: **on RQ workers** (:class:`QueueExecutor`): a run is a job on the queue,
  exactly as ``openrooms run --detach`` leaves it (``openrooms worker`` runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from openrooms.errors import OpenRoomsError, RoomLeasedError
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.runtime import Runtime, open_runtime
from openrooms.types import RoomId
from openrooms_server.errors import ApiError, handle_error
from openrooms_server.observability import AccessLog, Metrics, health_endpoint, metrics_endpoint
from openrooms_server.ratelimit import (
    MemoryRateLimiter,
    Rate,
    RateLimit,
    RateLimiter,
    RedisRateLimiter,
)
from openrooms_server.security import (
    APIKeyAuth,
    BodyLimit,
    ContentTypeGuard,
    SecurityHeaders,
    cors,
    load_api_keys,
)
from openrooms_server.session import Sessions
from openrooms_server.settings import Settings
from openrooms_server.sse import last_event_id, log_stream

if TYPE_CHECKING:
    from openrooms.backends.rq import RQJobQueue

__all__ = ["Executor", "LocalExecutor", "QueueExecutor", "create_app", "open_server_runtime"]

logger = logging.getLogger("openrooms_server")

DASHBOARD_PUBLIC_PATHS: Final = frozenset({"/health", "/login"})
"""Paths answered without a key: the health check and the dashboard's login page."""


def open_server_runtime(settings: Settings) -> Runtime:
    """The runtime the settings describe, opened as the CLI opens its own (``_runtime`` in
    :mod:`openrooms.cli`): the config file, then the plugins (config, ``OPENROOMS_PLUGINS``,
    ``--plugin``), then ``--script``'s canned models and tools.

    Raises:
        PluginError, BackendConfigError, ... as :func:`openrooms.open_runtime`.
    """
    from openrooms.config import load_config
    from openrooms.registries import open_registries

    config = load_config(settings.config_file) if settings.config_file else None
    registries = open_registries(settings.plugins, config=config)
    urls = settings.resolve()
    if settings.script:
        from openrooms.offline import load_script

        models, tools = load_script(settings.script, registries.tools)
        return open_runtime(
            urls.state,
            state_url=urls.state,
            log_url=urls.log,
            models=models,
            tools=tools,
            config=config,
            registries=registries,
        )
    return open_runtime(
        urls.state, state_url=urls.state, log_url=urls.log, config=config, registries=registries
    )


class Executor(Protocol):
    """Where the server sends rooms to run."""

    mode: str
    """``in-process`` or ``queue``."""

    def busy(self, room_id: str) -> bool:
        """Whether this executor is running (or about to run) *room_id*."""

    async def start(self, state: RoomState) -> None:
        """Have *state*'s room run (it was just queued, given input, or asked to resume).

        Raises:
            BackendUnavailableError: the job queue cannot take it (the room stays saved).
        """

    async def aclose(self) -> None:
        """Stop: see the module docstring."""


class LocalExecutor:
    """Runs rooms as background tasks on the server's event loop, *concurrency* at a time.

    One task per room. A room handed on again while its task is still on it (input that
    arrived as the run that reached the wait was letting go of the room) is run once more by
    that task when its run ends, so no hand-on is ever dropped.
    """

    mode = "in-process"

    def __init__(
        self,
        rt: Runtime,
        *,
        concurrency: int,
        grace_s: float,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.rt = rt
        self.grace_s = grace_s
        self.on_event = on_event
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._closing = False

    def busy(self, room_id: str) -> bool:
        return room_id in self._tasks

    async def start(self, state: RoomState) -> None:
        room_id = state.room_id
        if self._closing:
            return  # shutting down: the room stays queued/running, for a resume or a worker
        if room_id in self._tasks:
            self._again.add(room_id)  # its task runs it once more when its run ends
            return
        task = asyncio.get_running_loop().create_task(self._run(room_id), name=f"room {room_id}")
        self._tasks[room_id] = task

    async def _run(self, room_id: str) -> None:
        try:
            async with self._slots:
                while not self.rt.stop_requested:
                    self._again.discard(room_id)
                    await self._run_once(room_id)
                    if room_id not in self._again:
                        break
        finally:
            # no await between the check above and this: start() cannot slip in between
            self._tasks.pop(room_id, None)
            self._again.discard(room_id)

    async def _run_once(self, room_id: str) -> None:
        try:
            state = await self.rt.arun(RoomId(room_id), on_event=self.on_event)
        except RoomLeasedError as exc:  # another runner (a worker, a CLI) has it: fine
            logger.info("room %s not run here: %s", room_id, exc)
        except OpenRoomsError as exc:
            logger.warning("room %s stopped: %s", room_id, exc)
        except Exception:  # a bug: logged, the room stays resumable
            logger.exception("room %s: the run failed", room_id)
        else:
            logger.info("room %s %s at %r", room_id, state.status.value, state.current_node)

    async def aclose(self) -> None:
        """Ask every run to stop at its next step boundary and wait for them (up to the
        grace time; then cancel what is left, which a resume goes on from)."""
        self._closing = True
        self.rt.request_stop()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)


class QueueExecutor:
    """Queues runs on RQ for ``openrooms worker`` processes, as ``run --detach`` does."""

    mode = "queue"

    def __init__(self, jobs: RQJobQueue) -> None:
        self.jobs = jobs

    def busy(self, room_id: str) -> bool:
        return False  # the room's status and lease say it, in the store

    async def start(self, state: RoomState) -> None:
        # a Redis call, not a store call: on Starlette's thread pool, never on the loop
        await run_in_threadpool(self.jobs.enqueue, state.room_id)

    async def aclose(self) -> None:
        await run_in_threadpool(self.jobs.close)


def create_app(settings: Settings | None = None) -> Starlette:
    """The OpenRooms API as a Starlette app (serve it with uvicorn).

    The runtime and the executor are opened when the app starts (its lifespan) and are
    then ``app.state.runtime`` and ``app.state.executor``; ``app.state.settings`` holds
    *settings*. Security middleware (API keys, limits) wraps this app; see
    docs/server-security.md.
    """
    from openrooms_server.dashboard import FORM_ROUTES, dashboard_routes, is_page
    from openrooms_server.routes import api_routes
    from openrooms_server.routes_openapi import openapi_route

    settings = settings if settings is not None else Settings()
    metrics = Metrics(
        rooms_by_status=lambda: _rooms_by_status(app), queue_depth=lambda: _queue_depth(app)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await run_in_threadpool(open_server_runtime, settings)
        executor: Executor
        try:
            queue_url = settings.resolve().queue
            if queue_url:
                from openrooms.backends.rq import RQJobQueue

                executor = QueueExecutor(await run_in_threadpool(RQJobQueue, queue_url))
            else:
                executor = LocalExecutor(
                    rt,
                    concurrency=settings.concurrency,
                    grace_s=settings.shutdown_grace_s,
                    on_event=metrics.observe_event,
                )
        except BaseException:
            await run_in_threadpool(rt.close)
            raise
        app.state.runtime = rt
        app.state.executor = executor
        app.state.idempotency = {}
        app.state.idempotency_locks = {}
        logger.info("serving rooms %s", executor.mode)
        try:
            yield
        finally:
            try:
                await executor.aclose()
            finally:
                await run_in_threadpool(rt.close)
                if isinstance(limiter, RedisRateLimiter):
                    await run_in_threadpool(limiter.close)

    limiter = _limiter(settings)
    keys = load_api_keys(settings.env.get("OPENROOMS_API_KEYS", ""))
    app = Starlette(
        routes=[
            Mount("/api", routes=[*api_routes(), Route("/rooms/{id}/logs/stream", _stream)]),
            openapi_route(),
            Route("/health", health_endpoint(_health_checks(lambda: app)), methods=["GET"]),
            Route("/metrics", metrics_endpoint(metrics), methods=["GET"]),
            *dashboard_routes(),
        ],
        # outermost first: the access log sees every answer (and answers a crash with the
        # request's id); keys before limits, so a limit counts by key; the body cap and the
        # content types before any route reads a body
        middleware=[
            Middleware(AccessLog, metrics=metrics),
            Middleware(SecurityHeaders, trust_forwarded_proto=settings.trust_forwarded_proto),
            Middleware(cors, allow_origins=settings.cors_origins),
            Middleware(
                APIKeyAuth,
                keys=keys,
                public_paths=DASHBOARD_PUBLIC_PATHS,
                public_prefixes=("/static/",),
                login_pages=is_page,
                form_paths=FORM_ROUTES,
            ),
            Middleware(
                RateLimit,
                limiter=limiter,
                per_key=Rate(settings.requests_per_minute, 60),
                per_room=Rate(settings.room_writes_per_minute, 60),
                # a Redis that is down must not take the API down with it: limits are
                # skipped (and logged) until it is back; the routes answer for the stores
                fail_open=True,
            ),
            Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
            Middleware(
                ContentTypeGuard, yaml_routes=[("POST", "/api/workflows")], form_routes=FORM_ROUTES
            ),
        ],
        # ours and OpenRooms' typed errors are answered where they are raised; any other
        # exception reaches Starlette's outermost handler, which answers with the same
        # shape and then lets the server log the exception too
        exception_handlers={
            ApiError: handle_error,
            OpenRoomsError: handle_error,
            HTTPException: handle_error,
            Exception: handle_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.sessions = Sessions(keys)
    return app


def _limiter(settings: Settings) -> RateLimiter:
    """Rate limits shared by every server process through Redis when there is a job queue
    (a Redis server, then), else kept in this process's memory."""
    queue_url = settings.resolve().queue
    if not queue_url:
        return MemoryRateLimiter()
    from openrooms.backends.rq import parse_queue_url

    return RedisRateLimiter(parse_queue_url(queue_url)[0], timeout_s=0.5)


_STREAM_PARAMS: Final = frozenset({"after"})


async def _stream(request: Request) -> Response:
    """``GET /api/rooms/{id}/logs/stream``: the room's log as server-sent events."""
    from openrooms_server.routes import check_params

    check_params(request, _STREAM_PARAMS)
    rt: Runtime = request.app.state.runtime
    return await log_stream(rt, request.path_params["id"], last_event_id(request))


_PROBE: Final = RoomId("__openrooms_health__")


def _health_checks(app: Callable[[], Starlette]) -> dict[str, Callable[[], object]]:
    """What ``/health`` asks each backend: a read from the state store and from the log,
    and a ping of the job queue's Redis (when there is one)."""

    def state() -> object:
        return app().state.runtime.states.find(_PROBE)

    def log() -> object:
        return app().state.runtime.log.last_seq(_PROBE)

    def queue() -> object:
        executor = app().state.executor
        return executor.jobs.redis.ping() if isinstance(executor, QueueExecutor) else "none"

    return {"state": state, "log": log, "queue": queue}


_COUNTED_ROOMS: Final = 10_000
"""The most rooms ``/metrics`` reads to count them by status (the newest)."""


def _rooms_by_status(app: Starlette) -> dict[str, int]:
    rt: Runtime = app.state.runtime
    return dict(Counter(s.status.value for s in rt.list_rooms(limit=_COUNTED_ROOMS)))


def _queue_depth(app: Starlette) -> int:
    executor = app.state.executor
    if isinstance(executor, QueueExecutor):
        return int(executor.jobs.queue.count)
    return len(getattr(executor, "_tasks", ()))


def routes_of(app: Starlette) -> list[tuple[str, str]]:
    """Every (path, method) the app answers (HEAD left out), for the OpenAPI test."""
    found: list[tuple[str, str]] = []

    def walk(routes: Any, prefix: str) -> None:
        for r in routes:
            if isinstance(r, Mount):
                walk(r.routes, prefix + r.path)
            elif isinstance(r, Route):
                for m in sorted(r.methods or ()):
                    if m != "HEAD":
                        found.append((prefix + r.path, m))

    walk(app.routes, "")
    return found


def check_bind(settings: Settings) -> None:
    """Refuse to serve on a non-loopback address without API keys, unless *insecure*.

    Raises:
        InsecureBindError: ``settings.host`` is not loopback, ``OPENROOMS_API_KEYS`` names no
            key, and ``settings.insecure`` is False.
    """
    from openrooms_server.errors import InsecureBindError
    from openrooms_server.settings import is_loopback

    if not is_loopback(settings.host) and not settings.api_keys_set and not settings.insecure:
        raise InsecureBindError(settings.host)


def serve(settings: Settings) -> None:
    """Serve the app with uvicorn until SIGINT/SIGTERM, then shut down gracefully (see the
    module docstring).

    Raises:
        InsecureBindError: see :func:`check_bind`.
    """
    import uvicorn

    check_bind(settings)
    if not logging.getLogger().handlers and not logger.handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)) + 5,
    )


_GLOBAL_WITH_VALUE = ("--db", "--plugin", "--script", "--config", "--queue-url")


def split_args(args: list[str]) -> list[str]:
    """``openrooms-server ARGS`` as ``openrooms`` arguments: the global options (``--db``,
    ``--plugin``, ``--script``, ``--config``, ``--queue-url``) first, then ``serve`` and the
    rest: ``openrooms-server --port 8000 --db URL`` is ``openrooms --db URL serve --port
    8000``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_WITH_VALUE and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in _GLOBAL_WITH_VALUE and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*front, "serve", *rest]


def main() -> None:
    """Entry point of the ``openrooms-server`` console script: ``openrooms serve``, taking
    the global options (``--db``, ``--queue-url``, ...) anywhere on its command line."""
    import sys

    from openrooms.cli import cli

    cli(split_args(sys.argv[1:]), prog_name="openrooms-server")
