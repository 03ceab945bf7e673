"""A real OpenAI-compatible HTTP server that answers from a script, for tests and benchmarks.

:class:`FakeOpenAI` serves ``POST /v1/chat/completions`` (and ``/chat/completions``) on
127.0.0.1 from a background thread, so litellm, the OpenAI SDK or curl talk to it over
real HTTP. Replies come from a queue of specs; when the queue is empty it answers with
a default text reply, so benchmarks can loop without scripting every call::

    with FakeOpenAI() as fake:
        fake.enqueue(
            {"tool_calls": [{"name": "search", "arguments": {"q": "refunds"}}]},
            {"status": 429, "retry_after": 2},
            {"content": "done"},
        )
        model = LiteLLMModel()
        await model.complete(ChatRequest("openai/fake-model", msgs, api_base=fake.base_url))

A reply spec is a dict with any of:

``content``, ``tool_calls`` (``[{"name": ..., "arguments": dict or raw str, "id": ...}]``),
``usage`` (``{"prompt_tokens": .., "completion_tokens": ..}``), ``model``, ``finish_reason``
    a normal completion (``finish_reason`` is ``tool_calls`` or ``stop`` unless given).
``status`` (with ``retry_after``: seconds or an HTTP date, ``message``, ``headers``)
    an error response in OpenAI's error shape.
``raw`` (with ``status``, default 200)
    this text as the body, JSON or not.
``hang: True``
    no answer until :meth:`FakeOpenAI.release` is called or the server stops; then the
    rest of the spec (or the default reply) is sent.

Needs the ``server`` extra (Starlette and uvicorn), imported when a server is created.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import attrs

from openrooms._extras import require

__all__ = ["FakeOpenAI", "FakeRequest"]

_SPEC_KEYS: Final = frozenset(
    {
        "content",
        "tool_calls",
        "usage",
        "model",
        "finish_reason",
        "status",
        "retry_after",
        "message",
        "headers",
        "raw",
        "hang",
    }
)
_TOOL_CALL_KEYS: Final = frozenset({"name", "arguments", "id"})


@attrs.frozen
class FakeRequest:
    """One request the server received.

    Attributes:
        path: the URL path, e.g. ``/v1/chat/completions``.
        headers: the request headers, names lower-cased.
        body: the parsed JSON body, or None when it was not JSON.
    """

    path: str
    headers: Mapping[str, str]
    body: Any


def _check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse a malformed reply spec when it is enqueued, not when a request arrives."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"a FakeOpenAI reply is a dict spec, not {type(spec).__name__}")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f"unknown FakeOpenAI reply keys {sorted(unknown)}; known keys: {sorted(_SPEC_KEYS)}"
        )
    for call in spec.get("tool_calls") or ():
        if not isinstance(call, Mapping) or "name" not in call:
            raise ValueError(f"a tool call spec needs a 'name': {call!r}")
        extra = set(call) - _TOOL_CALL_KEYS
        if extra:
            raise ValueError(f"unknown tool call keys {sorted(extra)} in {call!r}")
    status = spec.get("status", 200)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"reply status must be an HTTP status code, not {status!r}")
    return dict(spec)


def _words(text: Any) -> int:
    return len(str(text).split()) if text else 0


class FakeOpenAI:
    """An OpenAI-compatible chat completions server on 127.0.0.1, run in a background thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Thread-safe:
    replies may be enqueued and requests read from any thread while it serves.

    Args:
        default_reply: what to answer when the queue is empty: a text, or a reply spec.
        startup_timeout_s: how long :meth:`start` waits for the server to be ready.

    Raises:
        MissingExtraError: Starlette or uvicorn is not installed (the ``server`` extra).
    """

    def __init__(
        self, default_reply: str | Mapping[str, Any] = "ok", *, startup_timeout_s: float = 10.0
    ) -> None:
        require("starlette", feature="FakeOpenAI", extra="server")
        require("uvicorn", feature="FakeOpenAI", extra="server")
        self._default: dict[str, Any] = {}
        self.default_reply = default_reply
        self._startup_timeout_s = startup_timeout_s
        self._lock = threading.Lock()
        self._queue: deque[dict[str, Any]] = deque()
        self._requests: list[FakeRequest] = []
        self._hangs: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._ids = itertools.count(1)
        self._server: Any = None  # uvicorn.Server; Any keeps uvicorn out of module import
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind a free port and serve; returns once the server accepts requests.

        Raises:
            RuntimeError: already started, or the server did not come up in time.
        """
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI is already running; use one instance per server")
        uvicorn: Any = require("uvicorn", feature="FakeOpenAI", extra="server")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._build_app(),
            log_config=None,  # leave the host application's logging alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        ready = threading.Event()

        class _Server(uvicorn.Server):  # type: ignore[misc]  # uvicorn is imported lazily, so Any
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                try:
                    await super().startup(sockets=sockets)
                finally:
                    ready.set()

        self._server = server = _Server(config)

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # reported by start(); a thread has nobody to raise to
                self._error = exc
            finally:
                sock.close()
                ready.set()

        self._stopping = False
        self._thread = threading.Thread(target=serve, name="openrooms-fake-openai", daemon=True)
        self._thread.start()
        ready.wait(self._startup_timeout_s)
        if not server.started:
            self.stop()
            raise RuntimeError(
                f"FakeOpenAI did not start within {self._startup_timeout_s} s"
                + (f": {self._error!r}" if self._error else "")
            ) from self._error

    def stop(self) -> None:
        """Release hanging requests, stop the server and join its thread. Idempotent."""
        thread, server = self._thread, self._server
        if thread is None:
            return
        with self._lock:
            self._stopping = True
        self.release()
        server.should_exit = True
        thread.join(timeout=10)
        self._thread = self._server = self._loop = None

    @property
    def default_reply(self) -> dict[str, Any]:
        """The reply spec used when the queue is empty; set it to a text or a spec."""
        return dict(self._default)

    @default_reply.setter
    def default_reply(self, reply: str | Mapping[str, Any]) -> None:
        self._default = _check_spec({"content": reply} if isinstance(reply, str) else reply)

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to give clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        if self._thread is None:
            raise RuntimeError("FakeOpenAI is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._port}/v1"

    # -- script ----------------------------------------------------------------------

    def enqueue(self, *replies: Mapping[str, Any] | str) -> None:
        """Queue replies, answered in order, one per request. A str is a text reply.

        Raises:
            ValueError, TypeError: a spec has unknown keys or a bad status.
        """
        checked = [_check_spec({"content": r} if isinstance(r, str) else r) for r in replies]
        with self._lock:
            self._queue.extend(checked)

    def pending(self) -> int:
        """How many queued replies have not been served yet."""
        with self._lock:
            return len(self._queue)

    def release(self) -> None:
        """Let every request currently hanging on a ``{"hang": True}`` reply answer."""
        with self._lock:
            hangs, self._hangs = self._hangs, set()
            loop = self._loop
        if loop is None or loop.is_closed():
            return
        for event in hangs:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed meanwhile; nothing waits any more
                return

    def reset(self) -> None:
        """Forget queued replies and recorded requests, and release hanging requests."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
        self.release()

    @property
    def requests(self) -> list[FakeRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    # -- the app ---------------------------------------------------------------------

    def _build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            Route("/models", self._models, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    async def _models(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _chat(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._requests.append(
                FakeRequest(request.url.path, dict(request.headers.items()), body)
            )
            spec = self._queue.popleft() if self._queue else None
        if spec is None:
            spec = self.default_reply

        if spec.get("hang"):
            spec = {k: v for k, v in spec.items() if k != "hang"}
            event = asyncio.Event()
            with self._lock:  # checked under the lock that stop() sets _stopping under
                if self._stopping:
                    event.set()
                else:
                    self._hangs.add(event)
            await event.wait()
            if not spec:
                spec = self.default_reply

        if not isinstance(body, dict):
            return JSONResponse(_error_body("request body is not a JSON object", 400), 400)
        if body.get("stream"):
            return JSONResponse(_error_body("FakeOpenAI does not stream", 400), 400)

        status = int(spec.get("status", 200))
        headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        if spec.get("retry_after") is not None:
            headers["Retry-After"] = str(spec["retry_after"])
        if "raw" in spec:
            return Response(
                str(spec["raw"]), status, headers=headers, media_type="application/json"
            )
        if status >= 400:
            message = spec.get("message") or f"fake error {status}"
            return JSONResponse(_error_body(message, status), status, headers=headers)
        return JSONResponse(self._completion(spec, body), status, headers=headers)

    def _completion(self, spec: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        tool_calls = [
            {
                "id": str(call.get("id") or f"call_{n}_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": call["arguments"]
                    if isinstance(call.get("arguments"), str)
                    else json.dumps(call.get("arguments") or {}),
                },
            }
            for i, call in enumerate(spec.get("tool_calls") or (), start=1)
        ]
        content = spec.get("content")
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        usage = dict(spec.get("usage") or {})
        prompt = sum(_words(m.get("content")) for m in body.get("messages") or () if m)
        usage.setdefault("prompt_tokens", max(prompt, 1))
        usage.setdefault("completion_tokens", max(_words(content), 1))
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": spec.get("model") or body.get("model") or "fake-model",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": spec.get("finish_reason")
                    or ("tool_calls" if tool_calls else "stop"),
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }


def _error_body(message: str, status: int) -> dict[str, Any]:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        429: "rate_limit_error",
    }.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
