"""A room's log as server-sent events: ``GET /api/rooms/{id}/logs/stream``.

One event per log line: ``id:`` is the event's sequence number and ``data:`` the event as
``openrooms logs ROOM --json`` prints it (one JSON object on one line). A client that
reconnects sends ``Last-Event-ID`` and gets the events after it. Once the room is finished
(completed, failed or cancelled) and every event has been sent, the stream sends one last
``event: end`` whose data is ``{"status": ...}`` (no id: a browser's ``EventSource``
should ``close()`` on it rather than reconnect) and closes. While nothing happens, a
comment line (``: keepalive``) goes out every 15 s, so proxies keep the connection open.

Store calls run in worker threads. Where the log can say when it grows
(``wait_for_events``: Postgres' LISTEN/NOTIFY) one stream per log waits on that, in a
thread pool of its own so waiting streams cannot starve the routes; every other stream
polls every ``poll_s``. A client that goes away ends its stream at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from openrooms import serde
from openrooms.errors import InputError
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.runtime import Runtime
from openrooms.types import RoomId

__all__ = [
    "HEARTBEAT_S",
    "EventStreamResponse",
    "event_line",
    "last_event_id",
    "log_stream",
]

log = logging.getLogger("openrooms.server.sse")

HEARTBEAT_S: Final = 15.0
"""Seconds between keepalive comments while no event is sent."""
_BATCH: Final = 500
_SEQ: Final = re.compile(r"[0-9]{1,18}")
_WAIT_S: Final = 5.0
_WAIT_THREADS = anyio.CapacityLimiter(64)
_waited_logs: set[int] = set()
"""id() of the logs a stream is waiting on now (one ``wait_for_events`` per log at a time:
the Postgres store has one listening connection, so a second waiter would queue)."""


def event_line(e: Event) -> str:
    """*e* as a line of ``openrooms logs --json``."""
    return json.dumps(serde.event_to_dict(e), ensure_ascii=False)


def last_event_id(request: Request) -> int:
    """Where a stream resumes: the ``Last-Event-ID`` header, else the ``after`` query
    parameter, else 0. Both are checked when both are given (the header wins).

    Raises:
        InputError: a value is not a whole number from 0 (ASCII digits, at most 18), or
            ``after`` is given more than once.
    """
    afters = request.query_params.getlist("after")
    if len(afters) > 1:
        raise InputError("after", "is given more than once")
    found: list[int] = []
    for source, value in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("after", afters[0] if afters else None),
    ):
        if value is not None:
            text = value.strip()
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses
            if not _SEQ.fullmatch(text):
                raise InputError(
                    source, f"must be a sequence number (0 or more), got {value[:40]!r}"
                )
            found.append(int(text))
    return found[0] if found else 0


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that notices a client leaving even while nothing is
    sent (Starlette's own listens only under ASGI servers older than spec 2.4)."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tg:

            async def stream_then_stop() -> None:
                with contextlib.suppress(OSError):  # the client went away mid-send
                    await self.stream_response(send)
                tg.cancel_scope.cancel()

            async def listen_then_stop() -> None:
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()

            tg.start_soon(stream_then_stop)
            tg.start_soon(listen_then_stop)


async def _wait_for_more(runtime: Runtime, room_id: RoomId, cursor: int, poll_s: float) -> None:
    waiter = getattr(runtime.log, "wait_for_events", None)
    key = id(runtime.log)
    if waiter is None or key in _waited_logs or _WAIT_THREADS.available_tokens == 0:
        await anyio.sleep(poll_s)
        return
    _waited_logs.add(key)
    try:
        # abandoned on cancel (the client left): the thread ends by itself within _WAIT_S
        await anyio.to_thread.run_sync(
            waiter, room_id, cursor, _WAIT_S, abandon_on_cancel=True, limiter=_WAIT_THREADS
        )
    finally:
        _waited_logs.discard(key)


async def _events(
    runtime: Runtime, room_id: RoomId, after: int, poll_s: float, heartbeat_s: float
) -> AsyncIterator[str]:
    cursor = after
    last_sent = time.monotonic()

    def read() -> tuple[RoomState, list[Event]]:
        state = runtime.get_room(room_id)  # first: every event up to its version is in the log
        return state, runtime.events(room_id, after=cursor, limit=_BATCH)

    try:
        while True:
            state, events = await anyio.to_thread.run_sync(read)
            if events:
                chunk = "".join(f"id: {e.seq}\ndata: {event_line(e)}\n\n" for e in events)
                cursor = events[-1].seq
                last_sent = time.monotonic()
                yield chunk
                if len(events) == _BATCH:
                    continue
            if state.status.is_terminal and cursor >= state.version:
                yield f"event: end\ndata: {json.dumps({'status': state.status.value})}\n\n"
                return
            if time.monotonic() - last_sent >= heartbeat_s:
                last_sent = time.monotonic()
                yield ": keepalive\n\n"
            with anyio.move_on_after(max(0.0, heartbeat_s - (time.monotonic() - last_sent))):
                await _wait_for_more(runtime, room_id, cursor, poll_s)
    finally:
        log.debug("log stream of room %s closed at seq %d", room_id, cursor)


async def log_stream(
    runtime: Runtime,
    room_id: str,
    last_event_id: int | str | None = None,
    *,
    poll_s: float = 0.25,
    heartbeat_s: float = HEARTBEAT_S,
) -> EventStreamResponse:
    """A room's log as server-sent events, from the event after *last_event_id*.

    Args:
        runtime: where the room lives.
        room_id: the room.
        last_event_id: the last sequence number the client has (``Last-Event-ID``; see
            :func:`last_event_id`); None or 0 streams from the start.
        poll_s: how often to look for new events where the log cannot say when it grows.
        heartbeat_s: the longest silence before a keepalive comment.

    Returns:
        The streaming response (``Cache-Control: no-cache``, ``X-Accel-Buffering: no``).

    Raises:
        RoomNotFoundError: there is no such room (checked before the response starts).
        InputError: *last_event_id* is not a sequence number.
    """
    if isinstance(last_event_id, str):
        if not last_event_id.strip().isdigit():
            raise InputError(
                "Last-Event-ID", f"must be a sequence number, got {last_event_id[:40]!r}"
            )
        last_event_id = int(last_event_id)
    after = last_event_id or 0
    rid = RoomId(room_id)
    await anyio.to_thread.run_sync(runtime.get_room, room_id)
    headers: dict[str, Any] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStreamResponse(_events(runtime, rid, after, poll_s, heartbeat_s), headers=headers)
