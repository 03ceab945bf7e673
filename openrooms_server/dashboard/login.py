"""The dashboard's login: ``/login`` takes an API key once and sets the signed session
cookie (see :mod:`openrooms_server.session`); ``/logout`` forgets it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from openrooms_server.dashboard.http import read_form, render, same_origin, see, sessions_of
from openrooms_server.security import error_response
from openrooms_server.session import SESSION_COOKIE

__all__ = ["login", "login_page", "logout", "safe_next"]


def safe_next(target: str | None) -> str:
    """*target* when it is a path on this server (``/rooms/x?y``), else ``/``: never
    another site (``//evil``, ``/\\evil``, ``https://...``)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(c in target for c in "\\\r\n\t")
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return "/"
    return target


async def login_page(request: Request) -> Response:
    """``GET /login``: the form taking an API key."""
    return render(
        request,
        "login.html",
        title="Log in",
        nav="",
        next=safe_next(request.query_params.get("next")),
        error="",
    )


async def login(request: Request) -> Response:
    """``POST /login``: check the key; a session cookie and 303 to ``next``, or 401."""
    posted = await read_form(request)
    target = safe_next(posted.get("next"))
    sessions = sessions_of(request)
    if sessions is None or not sessions.enabled:
        return see(target)
    if not same_origin(request):
        return error_response(403, "csrf_failed", "a login must come from this site's form")
    key = posted.get("key", "").strip()
    known = sessions.find_key(key)
    if known is None:
        return render(
            request,
            "login.html",
            401,
            title="Log in",
            nav="",
            next=target,
            error="that key is not one this server accepts",
        )
    response = see(target)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(known, sessions.clock()),
        max_age=sessions.ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_tls(request),
    )
    return response


def _is_tls(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    settings = request.app.state.settings
    if getattr(settings, "trust_forwarded_proto", False):
        proto = request.headers.get("x-forwarded-proto", "")
        return proto.split(",")[0].strip().lower() == "https"
    return False


async def logout(request: Request) -> Response:
    """``POST /logout``: forget the session cookie."""
    await read_form(request)
    response = see("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
