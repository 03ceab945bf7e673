"""Operations: ``/health``, ``/metrics`` (Prometheus) and one JSON log line per request.

- :func:`health_endpoint` checks each backend (state store, log, queue) in a worker thread
  with a time limit, and answers 200 ``{"status": "ok", "checks": {...}}`` or 503
  ``{"status": "down", ...}`` naming the check that failed (its error's type and a message
  with secrets and URL passwords taken out).
- :class:`Metrics` keeps one ``prometheus_client`` registry per app (never the global one):
  rooms by status and queue depth (asked of the functions it is given at each scrape),
  node durations, model calls, tokens and cost (fed by :meth:`Metrics.observe_event`), and
  HTTP requests by route template and status (fed by :class:`AccessLog`).
- :class:`AccessLog` is the outermost middleware: it gives each request a correlation id
  (``X-Request-ID`` when the client sent a sane one, else a new one; echoed in the
  response), writes one JSON line per request to the ``openrooms.server.access`` logger,
  counts the request in :class:`Metrics`, and turns an exception that escaped the app into
  a 500 ``internal_error`` carrying the correlation id (the traceback goes to the
  ``openrooms.server.errors`` logger, never to the client).

The API key never appears in any of these: the logs carry the key id (see
:mod:`openrooms_server.security`), and no header is logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

import anyio
import anyio.to_thread
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrooms.events import Event, EventType
from openrooms.scrub import environment_scrubber

__all__ = [
    "REQUEST_ID_HEADER",
    "AccessLog",
    "Metrics",
    "health_endpoint",
    "metrics_endpoint",
    "route_template",
    "safe_message",
]

access_log = logging.getLogger("openrooms.server.access")
error_log = logging.getLogger("openrooms.server.errors")

REQUEST_ID_HEADER: Final = "X-Request-ID"
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_URL_PASSWORD: Final = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.I)
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "<unmatched>"
"""The route label of a request no route matched (kept as one label: paths are unbounded)."""


def safe_message(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` of *exc* with URL passwords and known secrets (credential-named
    environment variables, see :mod:`openrooms.scrub`) replaced, cut to *limit* characters."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = environment_scrubber().text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- /health ----------------------------------------------------------------------------------


HealthCheck = Callable[[], object]
"""A check: returns (anything) when the backend answers, raises when it does not."""


def health_endpoint(
    checks: Mapping[str, HealthCheck],
    *,
    timeout_s: float = 2.0,
    max_threads: int = 4,
) -> Callable[[Request], Awaitable[Response]]:
    """A ``/health`` endpoint running each of *checks* in a worker thread, all at once.

    A check passes when it returns within *timeout_s*. One that raises or runs out of time
    is ``down``; while a check that timed out is still running, it is not started again
    (it stays ``down``), so a hung backend cannot use up threads.

    Args:
        checks: name -> a function that talks to the backend (``store.clock_ms``,
            ``log.last_seq``, ``queue.depth``...).
        timeout_s: how long each check may take.
        max_threads: the most checks running at once (their own thread limiter, apart
            from the routes').

    Returns:
        ``async def health(request) -> Response``: 200 ``{"status": "ok", "checks":
        {name: {"status": "ok", "duration_ms": ...}}}``, or 503 with ``"status": "down"``,
        each failed check as ``{"status": "down", "error": "Type: message"}``, and the API's
        error shape beside them (``"error": {"code": "backend_unavailable", ...}``).
    """
    limiter = anyio.CapacityLimiter(max_threads)
    running: set[str] = set()

    async def check_one(name: str, fn: HealthCheck, out: dict[str, Any]) -> None:
        if name in running:
            out[name] = {"status": "down", "error": "the previous check has not returned yet"}
            return
        started = time.perf_counter()
        running.add(name)
        done = False

        def call() -> None:
            nonlocal done
            try:
                fn()
            finally:
                running.discard(name)
                done = True

        try:
            with anyio.fail_after(timeout_s):
                await anyio.to_thread.run_sync(call, abandon_on_cancel=True, limiter=limiter)
        except TimeoutError:
            out[name] = {"status": "down", "error": f"no answer within {timeout_s:g} s"}
            return
        except Exception as exc:
            out[name] = {"status": "down", "error": safe_message(exc)}
            return
        finally:
            if done:
                running.discard(name)
        ms = round((time.perf_counter() - started) * 1000, 3)
        out[name] = {"status": "ok", "duration_ms": ms}

    async def health(request: Request) -> Response:
        results: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            for name, fn in checks.items():
                tg.start_soon(check_one, name, fn, results)
        ok = all(r["status"] == "ok" for r in results.values())
        report = dict(sorted(results.items()))
        body: dict[str, Any] = {"status": "ok" if ok else "down", "checks": report}
        if not ok:  # the API's error shape too, for clients that read only that
            down = ", ".join(name for name, r in report.items() if r["status"] != "ok")
            body["error"] = {
                "code": "backend_unavailable",
                "message": f"down: {down}",
                "details": {"checks": report},
            }
        return JSONResponse(body, status_code=200 if ok else 503)

    return health


# --- /metrics ---------------------------------------------------------------------------------


class _Gauges(Collector):
    """Gauges asked of functions at each scrape."""

    def __init__(
        self,
        rooms_by_status: Callable[[], Mapping[str, int]] | None,
        queue_depth: Callable[[], int] | None,
        errors: Counter,
    ) -> None:
        self.rooms_by_status = rooms_by_status
        self.queue_depth = queue_depth
        self.errors = errors

    def collect(self) -> Iterator[Metric]:
        if self.rooms_by_status is not None:
            rooms = GaugeMetricFamily(
                "openrooms_rooms", "Rooms in the state store, by status.", labels=["status"]
            )
            try:
                counts = self.rooms_by_status()
            except Exception as exc:
                self.errors.labels("rooms").inc()
                error_log.warning("metrics: rooms by status failed: %s", safe_message(exc))
            else:
                for status, n in sorted(counts.items()):
                    rooms.add_metric([str(status)], float(n))
                yield rooms
        if self.queue_depth is not None:
            depth = GaugeMetricFamily("openrooms_queue_depth", "Jobs waiting in the queue.")
            try:
                depth.add_metric([], float(self.queue_depth()))
            except Exception as exc:
                self.errors.labels("queue_depth").inc()
                error_log.warning("metrics: queue depth failed: %s", safe_message(exc))
            else:
                yield depth

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected fresh at each scrape, never at registration


class Metrics:
    """The app's Prometheus metrics, in a registry of their own.

    Metric names (all prefixed ``openrooms_``): ``rooms{status}``, ``queue_depth``,
    ``node_duration_seconds{outcome}`` (histogram), ``model_calls_total{model, outcome}``,
    ``model_tokens_total{model, kind}``, ``model_cost_usd_total{model}``,
    ``http_requests_total{method, route, status}``,
    ``http_request_duration_seconds{method, route}`` (histogram) and
    ``metrics_collect_errors_total{source}``.

    Args:
        rooms_by_status: returns ``{status: count}``; called (in a worker thread) at each
            scrape.
        queue_depth: returns the number of queued jobs; likewise.
        max_models: the most distinct ``model`` label values; later ones count as ``other``
            (a workflow can name any model string).
    """

    def __init__(
        self,
        *,
        rooms_by_status: Callable[[], Mapping[str, int]] | None = None,
        queue_depth: Callable[[], int] | None = None,
        max_models: int = 50,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        # counted while the gauges are collected, so registered (and collected) after them
        self.collect_errors = Counter(
            "openrooms_metrics_collect_errors",
            "Scrapes where a gauge's function raised, by gauge.",
            ["source"],
            registry=None,
        )
        r.register(_Gauges(rooms_by_status, queue_depth, self.collect_errors))
        r.register(self.collect_errors)
        self.node_duration = Histogram(
            "openrooms_node_duration_seconds",
            "How long node executions took, by outcome (completed, failed).",
            ["outcome"],
            buckets=(0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.model_calls = Counter(
            "openrooms_model_calls",
            "Model calls, by model and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_tokens = Counter(
            "openrooms_model_tokens",
            "Model tokens, by model and kind.",
            ["model", "kind"],
            registry=r,
        )
        self.model_cost = Counter(
            "openrooms_model_cost_usd",
            "Model cost in US dollars, by model.",
            ["model"],
            registry=r,
        )
        self.http_requests = Counter(
            "openrooms_http_requests",
            "HTTP requests, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "openrooms_http_request_duration_seconds",
            "HTTP request durations, by method and route template.",
            ["method", "route"],
            registry=r,
        )
        self._models: set[str] = set()
        self._http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._max_models = max_models

    def _model(self, value: object) -> str:
        name = str(value) if value else "unknown"
        if name in self._models:
            return name
        if len(self._models) < self._max_models:
            self._models.add(name)
            return name
        return "other"

    def observe_event(self, event: Event) -> None:
        """Count what *event* says: a node's duration (``NODE_COMPLETED``,
        ``NODE_FAILED``), a model call with its tokens and cost (``LLM_CALLED``)."""
        t = event.type
        if t is EventType.NODE_COMPLETED or t is EventType.NODE_FAILED:
            if event.duration_ms is not None:
                outcome = "completed" if t is EventType.NODE_COMPLETED else "failed"
                self.node_duration.labels(outcome).observe(event.duration_ms / 1000)
        elif t is EventType.LLM_CALLED:
            data = event.data
            model = self._model(data.get("model"))
            self.model_calls.labels(model, "error" if event.error else "ok").inc()
            usage = data.get("usage")
            if isinstance(usage, Mapping):
                for kind in ("prompt", "completion"):
                    n = usage.get(f"{kind}_tokens")
                    if isinstance(n, int | float) and n > 0:
                        self.model_tokens.labels(model, kind).inc(n)
                cost = usage.get("cost_usd")
                if isinstance(cost, int | float) and cost > 0:
                    self.model_cost.labels(model).inc(cost)

    def observe_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        """Count one HTTP request."""
        # the labelled children, cached: labels() takes a lock and builds a key each time
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_duration.labels(method, route),
            )
            self._http_children[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format (calls the gauges' functions)."""
        return generate_latest(self.registry)


def metrics_endpoint(metrics: Metrics) -> Callable[[Request], Awaitable[Response]]:
    """A ``/metrics`` endpoint for *metrics*; rendering (which asks the stores) runs in a
    worker thread."""

    async def endpoint(request: Request) -> Response:
        body = await anyio.to_thread.run_sync(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint


# --- request logs -----------------------------------------------------------------------------


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/api/rooms/{room_id}``), found for
    requests a middleware refused before routing too; :data:`UNMATCHED` when none matches."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        # routed: a Mount on the way added its prefix to root_path (the scope is shared)
        prefix = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))) :]
        return prefix + path
    app = scope.get("app")
    return _find_template(getattr(getattr(app, "router", None), "routes", ()), scope, "")


def _find_template(routes: Any, scope: Scope, prefix: str) -> str:
    """The template of the route among *routes* (Mounts walked) that matches *scope*."""
    for candidate in routes:
        try:
            match, child = candidate.matches(scope)
        except Exception:  # noqa: S112 (a route that cannot judge this scope: not ours to fail on)
            continue
        if match is Match.NONE:
            continue
        found = getattr(candidate, "path", None)
        if not isinstance(found, str):
            continue
        inner = getattr(candidate, "routes", None)
        if inner:  # a Mount: look inside, at the rest of the path
            rest = {**scope, **child, "path": scope["path"][len(found) :] or "/"}
            rest.pop("root_path", None)
            deeper = _find_template(inner, rest, prefix + found)
            if deeper != UNMATCHED:
                return deeper
            continue
        return prefix + found
    return UNMATCHED


class AccessLog:
    """Correlation ids, one JSON log line per request, HTTP metrics, and a clean 500.

    Each line (logger ``openrooms.server.access``, level INFO) holds ``method``, ``route``
    (the template, never the raw path: ids stay out of metrics), ``status``,
    ``duration_ms``, ``key_id`` (None without a key), ``request_id``; the same fields are
    on the record as ``record.openrooms``. The request id is in ``scope["state"]
    ["request_id"]`` for the routes.

    Args:
        app: the ASGI app.
        metrics: where to count requests (optional).
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                given = bytes(value).decode("latin-1")
        request_id = given if given and _SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if bytes(k).lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception(
                "unhandled error in %s %s [request_id=%s]",
                scope.get("method"),
                route_template(scope),
                request_id,
            )
            if response_started:
                raise
            status = 500
            body = {
                "error": {
                    "code": "internal_error",
                    "message": f"internal error; quote request id {request_id}",
                    "details": {"request_id": request_id},
                }
            }
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, status: int, duration_s: float, request_id: str) -> None:
        route = route_template(scope)
        method = str(scope.get("method", ""))
        if method not in _METHODS:  # a client may send any token: keep the labels bounded
            method = "OTHER"
        if self.metrics is not None:
            self.metrics.observe_request(method, route, status, duration_s)
        if access_log.isEnabledFor(logging.INFO):
            fields = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(duration_s * 1000, 3),
                "key_id": scope.get("state", {}).get("key_id"),
                "request_id": request_id,
            }
            # made and handled directly: Logger.info would walk the stack for the caller's
            # file and line (a third of the line's cost), which say nothing here
            record = access_log.makeRecord(
                access_log.name,
                logging.INFO,
                __file__,
                0,
                json.dumps(fields),
                (),
                None,
                extra={"openrooms": fields},
            )
            access_log.handle(record)
