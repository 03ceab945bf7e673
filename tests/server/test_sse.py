"""The log stream over real HTTP: uvicorn on a loopback port, httpx streaming, rooms that
advance while they are followed, on SQLite (polling) and Postgres (LISTEN/NOTIFY)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openrooms.backends.sqlite import SQLiteStore
from openrooms.cli import _event_json
from openrooms.errors import InputError, RoomNotFoundError
from openrooms.runtime import Runtime
from openrooms_server.observability import AccessLog
from openrooms_server.security import APIKeyAuth, BodyLimit, ContentTypeGuard, SecurityHeaders
from openrooms_server.sse import last_event_id, log_stream
from tests.conftest import discard_store, make_store

ROOT = Path(__file__).parents[2]
KEY = "sse-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}


def make_app(rt: Runtime, heartbeat_s: float = 15.0) -> Starlette:
    async def stream(request: Request) -> Response:
        return await log_stream(
            rt,
            request.path_params["room_id"],
            last_event_id(request),
            poll_s=0.05,
            heartbeat_s=heartbeat_s,
        )

    async def echo(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": {"code": "not_found", "message": str(exc), "details": None}}, 404
        )

    async def bad_input(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"error": {"code": "invalid_input", "message": str(exc), "details": None}}, 400
        )

    return Starlette(
        routes=[
            Route("/api/rooms/{room_id}/logs/stream", stream),
            Route("/api/echo", echo, methods=["POST"]),
        ],
        middleware=[
            Middleware(AccessLog),
            Middleware(SecurityHeaders),
            Middleware(APIKeyAuth, keys=[KEY]),
            Middleware(BodyLimit, max_bytes=1000),
            Middleware(ContentTypeGuard),
        ],
        exception_handlers={RoomNotFoundError: not_found, InputError: bad_input},
    )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """*app* under uvicorn on 127.0.0.1, on a port the OS picked; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive())
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def poll(condition: Any, timeout_s: float = 15.0) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


@pytest.fixture(params=["sqlite", "postgres"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    store = (
        SQLiteStore(tmp_path / "sse.db")
        if request.param == "sqlite"
        else make_store("postgres", tmp_path)
    )
    rt = Runtime(store, store)
    yield rt
    rt.close()
    discard_store(store)


def waiting_room(rt: Runtime) -> str:
    wf = rt.load_workflow(ROOT / "examples" / "order_approval.yaml")
    room = rt.create_room(wf, {"amount": 500})
    assert rt.run(room.id).status.value == "waiting"
    return str(room.id)


def sse_messages(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse an event stream into messages ({"id", "event", "data"} or {"comment"})."""
    message: dict[str, str] = {}
    for line in lines:
        if line == "":
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(":")
            message[field] = value.removeprefix(" ")


def test_a_stream_follows_a_room_advancing_concurrently_to_its_end(runtime: Runtime) -> None:
    room_id = waiting_room(runtime)
    answered = threading.Event()

    def answer() -> None:
        runtime.send_input(room_id, {"approved": True, "by": "sam"})
        answered.set()

    got: list[dict[str, str]] = []
    with (
        serve(make_app(runtime)) as url,
        httpx.Client(timeout=20) as client,
        client.stream("GET", f"{url}/api/rooms/{room_id}/logs/stream", headers=AUTH) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-content-type-options"] == "nosniff"
        for message in sse_messages(r.iter_lines()):
            got.append(message)
            if "id" in message and json.loads(message["data"])["type"] == "ROOM_WAITING":
                threading.Thread(target=answer, daemon=True).start()
    assert answered.wait(10)
    events = [m for m in got if "id" in m]
    expected = runtime.events(room_id)
    assert (
        [int(m["id"]) for m in events]
        == [e.seq for e in expected]
        == list(range(1, len(expected) + 1))
    )
    assert [m["data"] for m in events] == [_event_json(e) for e in expected]
    assert got[-1] == {"event": "end", "data": '{"status": "completed"}'}
    assert any(json.loads(m["data"])["type"] == "INPUT_RECEIVED" for m in events)


def test_a_stream_resumes_after_last_event_id_and_ends_on_a_finished_room(runtime: Runtime) -> None:
    room_id = waiting_room(runtime)
    runtime.send_input(room_id, {"approved": False})
    last = runtime.get_room(room_id).version
    with serve(make_app(runtime)) as url, httpx.Client(timeout=20) as client:
        r = client.get(
            f"{url}/api/rooms/{room_id}/logs/stream", headers={**AUTH, "Last-Event-ID": "3"}
        )
        messages = list(sse_messages(iter(r.text.split("\n"))))
        assert [int(m["id"]) for m in messages if "id" in m] == list(range(4, last + 1))
        assert messages[-1] == {"event": "end", "data": '{"status": "failed"}'}
        r = client.get(f"{url}/api/rooms/{room_id}/logs/stream?after={last}", headers=AUTH)
        assert list(sse_messages(iter(r.text.split("\n")))) == [
            {"event": "end", "data": '{"status": "failed"}'}
        ]


def test_stream_refusals_over_http(runtime: Runtime) -> None:
    room_id = waiting_room(runtime)
    with serve(make_app(runtime)) as url, httpx.Client(timeout=20) as client:
        assert client.get(f"{url}/api/rooms/{room_id}/logs/stream").status_code == 401
        r = client.get(f"{url}/api/rooms/nope/logs/stream", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = client.get(
            f"{url}/api/rooms/{room_id}/logs/stream", headers={**AUTH, "Last-Event-ID": "-1"}
        )
        assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]["message"]


@pytest.mark.parametrize("runtime", ["sqlite"], indirect=True)
def test_heartbeats_flow_while_a_room_waits_and_a_leaving_client_ends_the_stream(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="openrooms.server.sse")
    room_id = waiting_room(runtime)
    with serve(make_app(runtime, heartbeat_s=0.2)) as url, httpx.Client(timeout=20) as client:
        with client.stream("GET", f"{url}/api/rooms/{room_id}/logs/stream", headers=AUTH) as r:
            comments = 0
            for message in sse_messages(r.iter_lines()):
                if message.get("comment") == "keepalive":
                    comments += 1
                    if comments == 2:
                        break
        # the client has gone: the server notices without sending anything more
        poll(lambda: any("closed" in rec.getMessage() for rec in caplog.records))
    assert comments == 2


@pytest.mark.parametrize("runtime", ["sqlite"], indirect=True)
def test_the_body_cap_holds_for_chunked_bodies_over_real_http(runtime: Runtime) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 100

    with serve(make_app(runtime)) as url, httpx.Client(timeout=20) as client:
        h = {**AUTH, "Content-Type": "application/json"}
        r = client.post(f"{url}/api/echo", content=chunks(), headers=h)
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert "content-length" not in r.request.headers
        r = client.post(f"{url}/api/echo", content=iter([b"[1,", b"2]"]), headers=h)
        assert r.status_code == 200 and r.json() == {"bytes": 5}
        r = client.post(
            f"{url}/api/echo", content=b"[]", headers={**AUTH, "Content-Type": "text/csv"}
        )
        assert r.status_code == 415
