"""What every dashboard page and form needs: rendering a template with the dashboard's CSP,
reading a posted form (its CSRF token and its origin checked), store calls off the loop.

Every page is rendered on the server, complete without JavaScript; room data reaches the
HTML only through Jinja's autoescaping (on for every template, never ``|safe`` on data).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from openrooms.runtime import Runtime
from openrooms_server.errors import ApiError
from openrooms_server.session import CSRF_FIELD, CSRF_HEADER, Sessions

__all__ = [
    "DASHBOARD_CSP",
    "FORM_ROUTES",
    "is_page",
    "json_text",
    "not_found",
    "read",
    "read_form",
    "render",
    "runtime",
    "same_origin",
    "see",
    "sessions_of",
    "when",
    "whole_number",
    "write",
]

T = TypeVar("T")

DASHBOARD_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""The Content-Security-Policy of every dashboard page: our own scripts and styles only."""
FORM_ROUTES: Final = (
    ("POST", r"/login"),
    ("POST", r"/logout"),
    ("POST", r"/new"),
    ("POST", r"/rooms/[^/]+/(input|cancel|resume)"),
)
"""The routes whose bodies are HTML forms (and may carry the CSRF token in the form)."""
_PAGES: Final = re.compile(r"/|/rooms/[^/]+|/workflows(/[^/]+)?|/tools|/new")
MAX_FORM_BYTES: Final = 1_000_000
MAX_FORM_FIELDS: Final = 2000
"""The most fields a posted form may have (a wait form has one per input)."""
_HERE: Final = Path(__file__).parent

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,  # everywhere: room data is only ever text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def is_page(method: str, path: str) -> bool:
    """Whether ``method path`` is a dashboard page a person opens (sent to the login page
    when there is no session, rather than refused with 401)."""
    return method in ("GET", "HEAD") and _PAGES.fullmatch(path) is not None


# --- plumbing ---------------------------------------------------------------------------------


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def read(rt: Runtime, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await rt.store_io.call(fn, *args, **kwargs)


async def write(rt: Runtime, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await rt.store_io.off_loop(fn, *args, **kwargs)


def sessions_of(request: Request) -> Sessions | None:
    sessions: Sessions | None = getattr(request.app.state, "sessions", None)
    return sessions


def render(request: Request, template: str, code: int = 200, /, **context: Any) -> HTMLResponse:
    """*template* rendered with *context* (and what every page needs), with the dashboard's
    CSP, no caching, and ``Referrer-Policy: same-origin``."""
    sessions = sessions_of(request)
    context.setdefault("nav", "")
    html = _env.get_template(template).render(
        request=request,
        csrf=getattr(request.state, "csrf", None) or "",
        logged_in=getattr(request.state, "csrf", None) is not None,
        keys_enabled=sessions is not None and sessions.enabled,
        **context,
    )
    return HTMLResponse(
        html,
        status_code=code,
        headers={
            "Content-Security-Policy": DASHBOARD_CSP,
            "Cache-Control": "no-store",
            # not the API's no-referrer: under it a browser posts this page's forms with
            # "Origin: null", and the origin is what tells our forms from another site's
            "Referrer-Policy": "same-origin",
        },
    )


def not_found(request: Request, what: str) -> HTMLResponse:
    return render(request, "error.html", 404, title="Not found", message=f"{what} not found")


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str)


def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


_WHOLE: Final = re.compile(r"[0-9]{1,16}")
MAX_WHOLE: Final = 2**53
"""The largest number a page's query takes (a version, a sequence number, a page size):
what every store and a browser's JavaScript hold exactly."""


def whole_number(text: str | None, high: int = MAX_WHOLE) -> int | None:
    """*text* as a whole number from 0 to *high*, or None: a page's query parameter that is
    not one (``abc``, ``-1``, ``²``, a hundred digits) falls back to its default rather than
    reaching a store, which could not take it."""
    if text is None or not _WHOLE.fullmatch(text):
        return None
    value = int(text)
    return value if value <= high else None


async def read_form(request: Request) -> dict[str, str]:
    """The posted urlencoded form (the first value of each name), checked: it was posted
    from this site (:func:`same_origin`: with no API keys there is no session, and a form
    post is a request any other site could make), and, when the request came with a session
    cookie, it carries the session's CSRF token.

    Raises:
        ApiError: 403 ``csrf_failed`` (another site's post, or a session without its
            token), 413 (too big), 400 (not UTF-8, or more than MAX_FORM_FIELDS fields).
    """
    if not same_origin(request):
        raise ApiError(403, "csrf_failed", "a form must be posted from this site's own pages")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ApiError(413, "payload_too_large", f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_request", "the form is not UTF-8") from None
    form: dict[str, str] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than that
        raise ApiError(
            400, "invalid_request", f"the form has more than {MAX_FORM_FIELDS} fields"
        ) from None
    for k, v in pairs:
        form.setdefault(k, v)
    session = getattr(request.state, "session", None)
    sessions = sessions_of(request)
    if session is not None and sessions is not None:
        token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not sessions.check_csrf(session, token, sessions.clock()):
            raise ApiError(
                403, "csrf_failed", "the form has no valid CSRF token; reload the page and retry"
            )
    form.pop(CSRF_FIELD, None)
    return form


def see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def same_origin(request: Request) -> bool:
    """Whether a POST came from this site's own pages: browsers send ``Origin`` with every
    cross-origin POST (and ``Sec-Fetch-Site``); a request without either is not a
    browser's cross-site post."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host")
