"""/health, /metrics and the request log of openrooms_server.observability."""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from openrooms.backends.sqlite import SQLiteStore
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms_server.observability import (
    AccessLog,
    Metrics,
    health_endpoint,
    metrics_endpoint,
    safe_message,
)
from openrooms_server.security import APIKeyAuth
from tests.conftest import REDIS_URL

ROOT = Path(__file__).parents[2]
KEY = "obs-key-0123456789abcdef"


def deadline_poll(condition: Any, timeout_s: float = 10.0) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    store = SQLiteStore(tmp_path / "obs.db")
    rt = Runtime(store, store)
    yield rt
    rt.close()


def rooms_by_status(rt: Runtime) -> dict[str, int]:
    return dict(collections.Counter(s.status.value for s in rt.list_rooms(limit=10_000)))


# --- /health ----------------------------------------------------------------------------------


def health_app(checks: dict[str, Any], timeout_s: float = 2.0) -> Starlette:
    return Starlette(routes=[Route("/health", health_endpoint(checks, timeout_s=timeout_s))])


def test_health_is_ok_when_every_backend_answers(runtime: Runtime) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    checks = {
        "state": lambda: runtime.states.find(RoomId("nothing")),
        "log": lambda: runtime.log.last_seq(RoomId("nothing")),
        "queue": client.ping,
    }
    with TestClient(health_app(checks)) as c:
        r = c.get("/health")
    client.close()
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"state", "log", "queue"}
    assert all(v["status"] == "ok" and v["duration_ms"] >= 0 for v in body["checks"].values())


def test_health_is_503_naming_the_backend_down_without_its_password(runtime: Runtime) -> None:
    import redis

    down = redis.Redis.from_url("redis://:hunter2-secret-pw@127.0.0.1:1/0", socket_timeout=1)

    def bad_config() -> None:
        raise ValueError("cannot open postgresql://app:s3cret-pw@db.internal/rooms")

    checks = {
        "state": lambda: runtime.log.last_seq(RoomId("x")),
        "queue": down.ping,
        "db": bad_config,
    }
    with TestClient(health_app(checks)) as c:
        r = c.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "down"
    assert body["checks"]["state"]["status"] == "ok"
    assert body["checks"]["queue"]["status"] == "down"
    assert body["checks"]["queue"]["error"].startswith("ConnectionError")
    assert (
        body["checks"]["db"]["error"]
        == "ValueError: cannot open postgresql://app:***@db.internal/rooms"
    )
    assert "hunter2" not in r.text and "s3cret" not in r.text


def test_a_hung_check_times_out_and_is_not_started_again_until_it_returns() -> None:
    release = threading.Event()
    calls = []

    def hung() -> None:
        calls.append(1)
        release.wait(30)

    with TestClient(health_app({"queue": hung}, timeout_s=0.2)) as c:
        started = time.monotonic()
        r = c.get("/health")
        assert time.monotonic() - started < 5
        assert r.status_code == 503
        assert r.json()["checks"]["queue"]["error"] == "no answer within 0.2 s"
        r = c.get("/health")
        assert r.json()["checks"]["queue"]["error"] == "the previous check has not returned yet"
        assert len(calls) == 1
        release.set()
        deadline_poll(lambda: c.get("/health").status_code == 200)
    assert len(calls) == 2


def test_safe_message_hides_environment_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_API_KEY", "sk-live-abcdefghijkl")
    text = safe_message(RuntimeError("refused key sk-live-abcdefghijkl at redis://u:pw@h:1"))
    assert "sk-live" not in text and ":pw@" not in text
    assert text.startswith("RuntimeError: refused key")


# --- /metrics ---------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_show_rooms_by_status_queue_depth_and_event_counters(runtime: Runtime) -> None:
    wf = runtime.load_workflow(ROOT / "examples" / "order_approval.yaml")
    waiting = runtime.create_room(wf, {"amount": 500})
    runtime.run(waiting.id)
    done = runtime.create_room(wf, {"amount": 10})
    runtime.run(done.id)
    runtime.create_room(wf)
    metrics = Metrics(rooms_by_status=lambda: rooms_by_status(runtime), queue_depth=lambda: 7)
    for e in runtime.events(done.id):
        metrics.observe_event(e)
    llm = Event(
        RoomId("r"),
        1,
        EventType.LLM_CALLED,
        Level.INFO,
        0,
        "ask",
        {
            "model": "scripted/a",
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "cost_usd": 0.25},
        },
    )
    failed = Event(
        RoomId("r"),
        2,
        EventType.LLM_CALLED,
        Level.ERROR,
        0,
        "ask",
        {"model": "scripted/a"},
        ErrorInfo("CompletionError", "boom"),
    )
    metrics.observe_event(llm)
    metrics.observe_event(llm)
    metrics.observe_event(failed)
    app = Starlette(routes=[Route("/metrics", metrics_endpoint(metrics))])
    with TestClient(app) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("openrooms_rooms", (("status", "waiting"),))] == 1
    assert got[("openrooms_rooms", (("status", "completed"),))] == 1
    assert got[("openrooms_rooms", (("status", "created"),))] == 1
    assert got[("openrooms_queue_depth", ())] == 7
    completed_nodes = sum(
        1
        for e in runtime.events(done.id)
        if e.type is EventType.NODE_COMPLETED and e.duration_ms is not None
    )
    assert completed_nodes > 0
    assert (
        got[("openrooms_node_duration_seconds_count", (("outcome", "completed"),))]
        == completed_nodes
    )
    assert got[("openrooms_model_calls_total", (("model", "scripted/a"), ("outcome", "ok")))] == 2
    assert (
        got[("openrooms_model_calls_total", (("model", "scripted/a"), ("outcome", "error")))] == 1
    )
    assert (
        got[("openrooms_model_tokens_total", (("kind", "prompt"), ("model", "scripted/a")))] == 24
    )
    assert (
        got[("openrooms_model_tokens_total", (("kind", "completion"), ("model", "scripted/a")))]
        == 10
    )
    assert got[("openrooms_model_cost_usd_total", (("model", "scripted/a"),))] == 0.5


def test_each_app_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_request("GET", "/x", 200, 0.01)
    assert b"openrooms_http_requests_total{" not in b.render()
    assert b'openrooms_http_requests_total{method="GET",route="/x",status="200"} 1.0' in a.render()


def test_model_labels_are_capped() -> None:
    m = Metrics(max_models=2)
    for i in range(5):
        m.observe_event(
            Event(RoomId("r"), i + 1, EventType.LLM_CALLED, Level.INFO, 0, "n", {"model": f"m{i}"})
        )
    got = samples(m.render().decode())
    models = {dict(k[1])["model"] for k in got if k[0] == "openrooms_model_calls_total"}
    assert models == {"m0", "m1", "other"}


def test_a_failing_gauge_function_is_counted_not_fatal() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("store down")

    m = Metrics(rooms_by_status=broken, queue_depth=lambda: 3)
    got = samples(m.render().decode())
    assert got[("openrooms_queue_depth", ())] == 3
    assert got[("openrooms_metrics_collect_errors_total", (("source", "rooms"),))] == 1


# --- request logs and HTTP metrics ------------------------------------------------------------


async def show_room(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["room_id"], "rid": request.state.request_id})


async def crash(request: Request) -> Response:
    raise RuntimeError("database password is s3cret")


def logged_app(metrics: Metrics) -> Starlette:
    return Starlette(
        routes=[
            Route("/api/rooms/{room_id}", show_room),
            Route("/api/crash", crash),
            Route("/metrics", metrics_endpoint(metrics)),
            Route("/health", health_endpoint({})),
        ],
        middleware=[Middleware(AccessLog, metrics=metrics), Middleware(APIKeyAuth, keys=[KEY])],
    )


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "openrooms.server.access"
    ]


def test_one_json_line_per_request_with_route_template_key_id_and_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="openrooms.server.access")
    metrics = Metrics()
    with TestClient(logged_app(metrics)) as c:
        ok = c.get(
            "/api/rooms/abc123",
            headers={"Authorization": f"Bearer {KEY}", "X-Request-ID": "req-42"},
        )
        refused = c.get("/api/rooms/zzz")
        missing = c.get("/nowhere", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.headers["x-request-id"] == "req-42" and ok.json()["rid"] == "req-42"
    lines = access_lines(caplog)
    assert len(lines) == 3
    first, second, third = lines
    assert first["method"] == "GET" and first["route"] == "/api/rooms/{room_id}"
    assert first["status"] == 200 and first["request_id"] == "req-42"
    assert len(first["key_id"]) == 8 and first["duration_ms"] >= 0
    assert second["route"] == "/api/rooms/{room_id}" and second["status"] == 401
    assert second["key_id"] is None and second["request_id"] == refused.headers["x-request-id"]
    assert third["route"] == "<unmatched>" and third["status"] == 404
    assert missing.headers["x-request-id"] == third["request_id"]
    got = samples(metrics.render().decode())
    key = ("method", "GET"), ("route", "/api/rooms/{room_id}")
    assert got[("openrooms_http_requests_total", (*key, ("status", "200")))] == 1
    assert got[("openrooms_http_requests_total", (*key, ("status", "401")))] == 1
    assert got[("openrooms_http_request_duration_seconds_count", key)] == 2
    assert not any("abc123" in str(k) for k in got)  # paths with ids stay out of labels


@pytest.mark.parametrize("given", ["", "x" * 129, "a b", "é", "id\nfake"])
def test_an_insane_request_id_is_replaced(given: str) -> None:
    with TestClient(logged_app(Metrics())) as c:
        r = c.get("/health", headers={b"X-Request-ID": given.encode()})
    assert r.headers["x-request-id"] != given
    assert len(r.headers["x-request-id"]) == 32


def test_the_authorization_header_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with TestClient(logged_app(Metrics())) as c:
        c.get("/api/rooms/r", headers={"Authorization": f"Bearer {KEY}"})
        c.get("/api/rooms/r", headers={"Authorization": f"Bearer {KEY}-wrong"})
        c.get("/api/crash", headers={"Authorization": f"Bearer {KEY}"})
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert KEY not in text


def test_an_unhandled_error_is_a_500_with_the_request_id_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(logged_app(Metrics()), raise_server_exceptions=False) as c:
        r = c.get("/api/crash", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"]["code"] == "internal_error"
    rid = body["error"]["details"]["request_id"]
    assert r.headers["x-request-id"] == rid
    assert "s3cret" not in r.text and "Traceback" not in r.text
    errors = [x for x in caplog.records if x.name == "openrooms.server.errors"]
    assert errors and rid in errors[0].getMessage() and errors[0].exc_info is not None
    assert access_lines(caplog)[-1]["status"] == 500


def test_an_unknown_method_is_one_label(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openrooms.server.access")
    metrics = Metrics()
    with TestClient(logged_app(metrics)) as c:
        for verb in ("FOO1", "FOO2", "GET"):
            c.request(verb, "/health")
    got = samples(metrics.render().decode())
    methods = {dict(k[1])["method"] for k in got if k[0] == "openrooms_http_requests_total"}
    assert methods == {"OTHER", "GET"}
    assert [line["method"] for line in access_lines(caplog)] == ["OTHER", "OTHER", "GET"]
    assert all(
        r.pathname == __import__("openrooms_server.observability").observability.__file__
        for r in caplog.records
        if r.name == "openrooms.server.access"
    )
