"""The server's guards: API keys, rate limits, CORS, security headers and request limits.

Each guard is a pure ASGI middleware class, so it goes into Starlette's ``middleware=[...]``
as ``Middleware(Class, **options)`` and works under any ASGI server. Together they sit, from
the outside in (see ``docs/server-security.md``)::

    AccessLog -> SecurityHeaders -> cors(...) -> APIKeyAuth -> RateLimit -> BodyLimit
              -> ContentTypeGuard -> the routes

(``AccessLog`` is in :mod:`openrooms_server.observability`, ``RateLimit`` in
:mod:`openrooms_server.ratelimit`.)

Every refusal has the API's error shape, ``{"error": {"code", "message", "details"}}``:

=================  ===========================  ==========================================
status             code                          when
=================  ===========================  ==========================================
401                ``unauthorized``              no key, or a key that is not configured
429                ``rate_limited``              the key's (or the room's) bucket is empty
413                ``payload_too_large``         the body is bigger than the cap
415                ``unsupported_media_type``    a body that is not JSON (or YAML, opted in)
400 / 422          ``invalid_json``              :func:`parse_json`: not JSON / breaks a rule
400                ``invalid_request``           a ``Content-Length`` that is not a number
503                ``backend_unavailable``       the shared rate limiter's Redis is down
=================  ===========================  ==========================================

Keys are compared in constant time (:func:`hmac.compare_digest`) and never logged: what the
logs and metrics see is the key id, the first 8 hex digits of the key's SHA-256
(``scope["state"]["key_id"]``, ``request.state.key_id`` in a route).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlencode

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openrooms.errors import InputError
from openrooms.loading import MAX_INPUT_NESTING, decode
from openrooms.loading import parse_json as strict_json
from openrooms_server.session import CSRF_HEADER, SESSION_COOKIE

__all__ = [
    "API_CSP",
    "API_KEYS_ENV",
    "DEFAULT_BODY_LIMIT",
    "DEFAULT_PUBLIC_PATHS",
    "APIKeyAuth",
    "BodyLimit",
    "ContentTypeGuard",
    "InvalidJSONError",
    "SecurityHeaders",
    "cors",
    "error_response",
    "json_error_response",
    "key_id",
    "load_api_keys",
    "parse_json",
    "read_json",
    "request_state",
]

DEFAULT_PUBLIC_PATHS: Final = frozenset({"/health"})
"""Paths answered without a key."""
DEFAULT_BODY_LIMIT: Final = 1_000_000
"""The default cap on a request body, in bytes."""
API_KEYS_ENV: Final = "OPENROOMS_API_KEYS"
"""The environment variable holding the API keys, comma-separated."""
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_TYPES: Final = frozenset({"application/json"})
_YAML_TYPES: Final = frozenset({"application/yaml", "application/x-yaml", "text/yaml"})
_FORM_TYPES: Final = frozenset({"application/x-www-form-urlencoded"})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The API's error body, ``{"error": {"code", "message", "details"}}``, as a response."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def request_state(scope: Scope) -> dict[str, Any]:
    """The request's ``scope["state"]`` (``request.state`` in a route), made if missing."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _is_preflight(scope: Scope) -> bool:
    return (
        scope.get("method") == "OPTIONS"
        and _header(scope, b"origin") is not None
        and _header(scope, b"access-control-request-method") is not None
    )


# --- API keys ---------------------------------------------------------------------------------


def key_id(key: str) -> str:
    """A key's public name for logs and metrics: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def load_api_keys(value: str | None = None) -> list[str]:
    """The API keys in *value* (default: ``$OPENROOMS_API_KEYS``), comma-separated; blanks
    around each are dropped, and so are empty entries.

    Raises:
        InputError: a key holds a character outside printable ASCII (it could never be sent
            in an ``Authorization`` header), or is shorter than 16 characters.
    """
    text = os.environ.get(API_KEYS_ENV, "") if value is None else value
    keys = [k.strip() for k in text.split(",") if k.strip()]
    for i, k in enumerate(keys, 1):
        if not all(33 <= ord(c) < 127 for c in k):
            raise InputError(
                API_KEYS_ENV, "a key holds a space or a non-ASCII character", f"key {i}"
            )
        if len(k) < 16:
            raise InputError(
                API_KEYS_ENV,
                f"a key is {len(k)} characters long; use at least 16",
                f"key {i}",
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
    return keys


class APIKeyAuth:
    """Require ``Authorization: Bearer KEY`` (or the dashboard's session cookie) on every
    path but *public_paths*.

    With no keys configured it lets everything through (the server refuses to listen on a
    non-loopback address that way unless told ``--insecure``). The key's id
    (:func:`key_id`) goes into ``scope["state"]["key_id"]``, None when there was no key.

    The dashboard's session cookie (see :mod:`openrooms_server.session`) counts as the key
    it was signed with; then ``scope["state"]["session"]`` holds the cookie's value and
    ``scope["state"]["csrf"]`` its CSRF token. A POST, PUT, PATCH or DELETE authenticated
    by the cookie must carry that token in the ``X-OpenRooms-CSRF`` header, else it is
    refused with 403 ``csrf_failed``; on *form_paths* the token may come in the form body
    instead, and the route checks it (``scope["state"]["csrf_pending"]`` is True).

    Args:
        app: the ASGI app it guards.
        keys: the accepted keys (default: :func:`load_api_keys` from the environment).
        public_paths: paths answered without a key (exact matches).
        public_prefixes: path prefixes answered without a key (``/static/``).
        login_pages: which requests without a key are pages a person opened: they are
            redirected (303) to ``login_path?next=PATH`` rather than refused with 401.
        login_path: the dashboard's login page.
        form_paths: ``(method, path pattern)`` pairs whose CSRF token may be in a form.
        clock: seconds since the epoch (for the cookie's expiry).

    Raises:
        InputError: a configured key is malformed (see :func:`load_api_keys`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Iterable[str] | None = None,
        public_paths: Collection[str] = DEFAULT_PUBLIC_PATHS,
        public_prefixes: Sequence[str] = (),
        login_pages: Callable[[str, str], bool] | None = None,
        login_path: str = "/login",
        form_paths: Iterable[tuple[str, str]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        from openrooms_server.session import Sessions

        self.app = app
        loaded = load_api_keys() if keys is None else load_api_keys(",".join(keys))
        # compared as digests: every comparison takes the same time whatever the key's length
        self._keys = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in loaded]
        self.sessions = Sessions(loaded)
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.login_pages = login_pages
        self.login_path = login_path
        self.form_paths = [(m.upper(), re.compile(p)) for m, p in form_paths]
        self.clock = clock

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else every request passes)."""
        return bool(self._keys)

    def identify(self, authorization: str | None) -> str | None:
        """The id of the configured key *authorization* (a header value) carries, or None."""
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        digest = hashlib.sha256(token.encode("latin-1", "replace")).digest()
        found = None
        for known, kid in self._keys:  # no early exit: the time does not depend on which
            if hmac.compare_digest(digest, known):
                found = kid
        return found

    def _is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = request_state(scope)
        kid = self.identify(_header(scope, b"authorization"))
        session = None
        if kid is None and self._keys:
            session = _cookie(scope, SESSION_COOKIE)
            kid = self.sessions.verify(session, self.clock())
            if kid is None:
                session = None
        state["key_id"] = kid
        path = scope["path"]
        if (
            self._keys
            and kid is None
            and not self._is_public(path)
            and not _is_preflight(scope)  # CORS preflights carry no credentials
        ):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
                return
            method = scope.get("method", "GET")
            if self.login_pages is not None and self.login_pages(method, path):
                await _login_redirect(scope, self.login_path)(scope, receive, send)
                return
            response = error_response(
                401,
                "unauthorized",
                "this API needs a key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="openrooms"'},
            )
            await response(scope, receive, send)
            return
        if session is not None:
            now = self.clock()
            state["session"] = session
            state["csrf"] = self.sessions.csrf_token(session, now)
            if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
                token = _header(scope, CSRF_HEADER.encode())
                if not self.sessions.check_csrf(session, token, now):
                    method, path = scope["method"], scope["path"]
                    if not any(m == method and p.fullmatch(path) for m, p in self.form_paths):
                        response = error_response(
                            403,
                            "csrf_failed",
                            "a request authenticated by the session cookie must carry its "
                            "CSRF token (the X-OpenRooms-CSRF header)",
                        )
                        await response(scope, receive, send)
                        return
                    state["csrf_pending"] = True  # the route reads the form and checks it
        await self.app(scope, receive, send)


def _cookie(scope: Scope, name: str) -> str | None:
    """The value of the cookie *name* in the request's ``Cookie`` header(s), if any."""
    for key, value in scope.get("headers", ()):
        if key != b"cookie":
            continue
        for part in bytes(value).decode("latin-1").split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k == name:
                return v.strip()
    return None


def _login_redirect(scope: Scope, login_path: str) -> Response:
    """303 to the login page, with the page asked for as ``next`` (a local path)."""
    target = scope["path"]
    query = scope.get("query_string", b"")
    if query:
        target += "?" + bytes(query).decode("latin-1")
    return Response(
        status_code=303,
        headers={"Location": f"{login_path}?{urlencode({'next': target})}"},
    )


# --- CORS and headers -------------------------------------------------------------------------


def cors(
    app: ASGIApp,
    *,
    allow_origins: Sequence[str] = (),
    allow_methods: Sequence[str] = ("GET", "POST", "OPTIONS"),
    allow_headers: Sequence[str] = (
        "Authorization",
        "Content-Type",
        "Idempotency-Key",
        "Last-Event-ID",
        "X-Request-ID",
    ),
    expose_headers: Sequence[str] = ("X-Request-ID", "Retry-After"),
    max_age: int = 600,
) -> ASGIApp:
    """Starlette's CORS middleware for an allow-list of origins, or *app* itself when the
    list is empty (CORS is off by default). Credentials (cookies) are never allowed: the API
    authenticates with a header. Use it as ``Middleware(cors, allow_origins=[...])``.

    Raises:
        ValueError: an origin is not ``scheme://host[:port]`` (or the lone ``*``).
    """
    for origin in allow_origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port], without a path")
    if not allow_origins:
        return app
    return CORSMiddleware(
        app,
        allow_origins=list(allow_origins),
        allow_methods=list(allow_methods),
        allow_headers=list(allow_headers),
        expose_headers=list(expose_headers),
        allow_credentials=False,
        max_age=max_age,
    )


API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
"""The Content-Security-Policy of API responses: they are data, never a page."""
_API_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """Add the API's security headers to every response (where the route set none):
    ``Content-Security-Policy: default-src 'none'``, ``X-Content-Type-Options: nosniff``,
    ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, and
    ``Strict-Transport-Security`` when the request came over TLS.

    Args:
        app: the ASGI app.
        trust_forwarded_proto: a request with ``X-Forwarded-Proto: https`` counts as TLS
            (only behind a proxy that sets it: a client could send it too).
        hsts_max_age: seconds, for ``Strict-Transport-Security``.
        content_security_policy: the policy (a route that sets its own, such as a future
            dashboard page, keeps it).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trust_forwarded_proto: bool = False,
        hsts_max_age: int = 31536000,
        content_security_policy: str = API_CSP,
    ) -> None:
        self.app = app
        self._base = [(b"content-security-policy", content_security_policy.encode()), *_API_HEADERS]
        self.trust_forwarded_proto = trust_forwarded_proto
        self._hsts = f"max-age={hsts_max_age}; includeSubDomains".encode()

    def _tls(self, scope: Scope) -> bool:
        if scope.get("scheme") in ("https", "wss"):
            return True
        if self.trust_forwarded_proto:
            proto = _header(scope, b"x-forwarded-proto") or ""
            return proto.split(",")[0].strip().lower() == "https"
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self._base)
        if self._tls(scope):
            extra.append((b"strict-transport-security", self._hsts))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {bytes(k).lower() for k, _ in headers}
                headers.extend((k, v) for k, v in extra if k not in have)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- request bodies ---------------------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over *max_bytes* with 413 ``payload_too_large``: at once when
    ``Content-Length`` says so, else (a chunked body) as soon as the bytes read pass the cap;
    the rest is never read, and the app sees the client disconnect.

    Args:
        app: the ASGI app.
        max_bytes: the cap.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> JSONResponse:
        return error_response(
            413,
            "payload_too_large",
            f"the request body is over {self.max_bytes} bytes",
            {"max_bytes": self.max_bytes},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                response = error_response(
                    400, "invalid_request", f"Content-Length {length[:40]!r} is not a number"
                )
                await response(scope, receive, send)
                return
            if int(length) > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True  # read no more of it
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the app's answer to a body cut short is replaced by the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._too_large()(scope, receive, send)


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


class ContentTypeGuard:
    """Refuse a request body that is not ``application/json`` with 415
    ``unsupported_media_type``; on the routes in *yaml_routes*, YAML is accepted too
    (``application/yaml``, ``application/x-yaml``, ``text/yaml``), and on the routes in
    *form_routes* (the dashboard's HTML forms) only ``application/x-www-form-urlencoded``.

    Applies to POST, PUT, PATCH and DELETE requests that carry a body (a ``Content-Length``
    above 0, or chunked); a ``POST .../run`` without a body needs no content type.

    Args:
        app: the ASGI app.
        yaml_routes: ``(method, path pattern)`` pairs whose bodies may be YAML; a pattern
            is a regular expression matched against the whole path.
        form_routes: ``(method, path pattern)`` pairs whose bodies are HTML forms.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        yaml_routes: Iterable[tuple[str, str]] = (),
        form_routes: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.yaml_routes = [(m.upper(), re.compile(p)) for m, p in yaml_routes]
        self.form_routes = [(m.upper(), re.compile(p)) for m, p in form_routes]

    def allowed(self, method: str, path: str) -> frozenset[str]:
        """The media types a body of *method* *path* may have."""
        if any(m == method and p.fullmatch(path) for m, p in self.form_routes):
            return _FORM_TYPES
        if any(m == method and p.fullmatch(path) for m, p in self.yaml_routes):
            return _JSON_TYPES | _YAML_TYPES
        return _JSON_TYPES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
        has_body = chunked or (length is not None and length.strip() not in ("", "0"))
        if has_body:
            allowed = self.allowed(scope["method"], scope["path"])
            media = _media_type(_header(scope, b"content-type"))
            if media not in allowed:
                said = f"Content-Type {media!r}" if media else "no Content-Type"
                response = error_response(
                    415,
                    "unsupported_media_type",
                    f"the body has {said}; send {' or '.join(sorted(allowed))}",
                    {"allowed": sorted(allowed)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class InvalidJSONError(InputError):
    """A request body that :func:`parse_json` refused.

    Attributes:
        status: the HTTP status to answer: 400 (not JSON at all), 422 (JSON breaking a
            rule: too deep, a duplicate key, a huge number) or 413 (too big).
        code: the error code: ``invalid_json``, or ``payload_too_large`` with 413.
    """

    def __init__(
        self, source: str, message: str, where: str = "", hint: str = "", status: int = 400
    ) -> None:
        super().__init__(source, message, where, hint)
        self.status = status
        self.code = "payload_too_large" if status == 413 else "invalid_json"


def json_error_response(exc: InvalidJSONError) -> JSONResponse:
    """The error response for *exc*: its status and code, the message naming the place."""
    details = {"where": exc.where} if exc.where else None
    return error_response(exc.status, exc.code, str(exc), details)


def _depth_problem(value: Any, max_depth: int) -> str | None:
    """The JSON path of the first container nested deeper than *max_depth*, if any."""
    todo: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while todo:
        item, depth, path = todo.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return path
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for k, v in pairs:
                if isinstance(v, dict | list):
                    step = f"[{k}]" if isinstance(item, list) else f".{k}"
                    todo.append((v, depth + 1, path + step))
    return None


def parse_json(
    body: bytes | str,
    *,
    max_depth: int = 32,
    max_bytes: int = DEFAULT_BODY_LIMIT,
    source: str = "request body",
) -> Any:
    """Parse a request body as strict JSON (the rules of :mod:`openrooms.loading`: UTF-8, no
    duplicate keys, no NaN or Infinity, bounded integers) within a depth and a size.

    Args:
        body: the bytes (or text) of the body.
        max_depth: the most levels of nested objects and arrays (at most
            :data:`openrooms.loading.MAX_INPUT_NESTING`).
        max_bytes: the most bytes it may hold.
        source: what to call it in messages.

    Returns:
        The value.

    Raises:
        InvalidJSONError: too big (413), not JSON (400), or JSON that breaks a rule (422);
            the message says what and where (a line and column, or a JSON path).
        ValueError: *max_depth* is out of range.
    """
    if not 1 <= max_depth <= MAX_INPUT_NESTING:
        raise ValueError(f"max_depth must be 1 to {MAX_INPUT_NESTING}, got {max_depth}")
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > max_bytes:
        raise InvalidJSONError(source, f"is {len(raw)} bytes; the most is {max_bytes}", status=413)
    try:
        text = decode(raw, source=source) if isinstance(body, bytes) else body
        value = strict_json(text, source=source, limit=max_bytes)
    except InputError as exc:
        status = 400 if isinstance(exc.__cause__, json.JSONDecodeError) else 422
        if "UTF-8" in exc.message:
            status = 400
        raise InvalidJSONError(exc.source, exc.message, exc.where, exc.hint, status) from None
    where = _depth_problem(value, max_depth)
    if where is not None:
        raise InvalidJSONError(source, f"nested deeper than {max_depth} levels", where, status=422)
    return value


async def read_json(
    receive_body: Callable[[], Awaitable[bytes]],
    *,
    max_depth: int = 32,
    max_bytes: int = DEFAULT_BODY_LIMIT,
) -> Any:
    """``parse_json(await receive_body(), ...)``: for a route, ``await
    read_json(request.body)``.

    Raises:
        InvalidJSONError: see :func:`parse_json`.
    """
    return parse_json(await receive_body(), max_depth=max_depth, max_bytes=max_bytes)
