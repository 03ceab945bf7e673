"""The dashboard's session cookie and CSRF tokens, signed with the API keys themselves.

A person enters an API key once on ``/login``; the server answers with a cookie::

    openrooms_session=KEY_ID.EXPIRY.MAC

``KEY_ID`` is the key's public id (:func:`~openrooms_server.security.key_id`), ``EXPIRY``
the end of the session in seconds since the epoch, and ``MAC`` the HMAC-SHA256 of
``KEY_ID.EXPIRY`` under the key. Nothing is stored on the server: any process configured
with the same keys accepts the cookie, and removing a key from ``OPENROOMS_API_KEYS``
revokes every session signed with it.

A request authenticated by the cookie that can change something (POST, PUT, PATCH,
DELETE) must also carry the session's CSRF token, the HMAC of the cookie's value under the
key: in the ``X-OpenRooms-CSRF`` header (the pages' scripts read it from ``<meta
name="csrf-token">``) or, for the dashboard's HTML forms, in the hidden field
``openrooms-csrf``. A cross-site page can make the browser send the cookie (the cookie is
``SameSite=Strict`` too, so modern browsers do not) but cannot read the token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from typing import Final

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_TTL_S",
    "Sessions",
]

SESSION_COOKIE: Final = "openrooms_session"
"""The cookie's name."""
CSRF_HEADER: Final = "x-openrooms-csrf"
"""The header a script sends the CSRF token in."""
CSRF_FIELD: Final = "openrooms-csrf"
"""The hidden form field the dashboard's forms send the CSRF token in (not a valid variable
name, so it never collides with a form's own fields)."""
SESSION_TTL_S: Final = 12 * 3600
"""How long a session lasts, in seconds."""
_SHAPE: Final = re.compile(r"([0-9a-f]{8})\.([0-9]{1,12})\.([0-9a-f]{64})")


def _mac(key: str, purpose: bytes, message: str) -> str:
    return hmac.new(key.encode(), purpose + b"\0" + message.encode(), hashlib.sha256).hexdigest()


class Sessions:
    """Signs and checks session cookies and CSRF tokens with the configured API keys.

    Args:
        keys: the API keys (as :func:`~openrooms_server.security.load_api_keys` returns).
        ttl_s: how long a new session lasts.
        clock: seconds since the epoch.
    """

    def __init__(
        self,
        keys: Iterable[str],
        *,
        ttl_s: int = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from openrooms_server.security import key_id

        self._by_id: dict[str, list[str]] = {}
        self._digests: list[tuple[bytes, str]] = []
        for k in keys:
            self._by_id.setdefault(key_id(k), []).append(k)
            self._digests.append((hashlib.sha256(k.encode()).digest(), k))
        self.ttl_s = ttl_s
        self.clock = clock

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (else there is nothing to log in to)."""
        return bool(self._digests)

    def find_key(self, candidate: str) -> str | None:
        """The configured key equal to *candidate* (compared in constant time), or None."""
        digest = hashlib.sha256(candidate.encode("utf-8", "replace")).digest()
        found = None
        for known, key in self._digests:  # no early exit
            if hmac.compare_digest(digest, known):
                found = key
        return found

    def issue(self, key: str, now: float) -> str:
        """A new session cookie value for *key* (a configured key), valid *ttl_s* from *now*.

        Raises:
            ValueError: *key* is not configured.
        """
        from openrooms_server.security import key_id

        kid = key_id(key)
        if key not in self._by_id.get(kid, ()):
            raise ValueError("not a configured API key")
        message = f"{kid}.{int(now) + self.ttl_s}"
        return f"{message}.{_mac(key, b'session', message)}"

    def _key_of(self, session: str | None, now: float) -> str | None:
        if not session:
            return None
        m = _SHAPE.fullmatch(session)
        if m is None or int(m[2]) <= now:
            return None
        found = None
        for key in self._by_id.get(m[1], ()):
            if hmac.compare_digest(_mac(key, b"session", f"{m[1]}.{m[2]}"), m[3]):
                found = key
        return found

    def verify(self, session: str | None, now: float) -> str | None:
        """The key id of a valid, unexpired *session* (a cookie value), else None."""
        if session is None or self._key_of(session, now) is None:
            return None
        return session.split(".", 1)[0]

    def csrf_token(self, session: str, now: float) -> str | None:
        """The CSRF token of a valid *session*, else None."""
        key = self._key_of(session, now)
        return None if key is None else _mac(key, b"csrf", session)

    def check_csrf(self, session: str, token: str | None, now: float) -> bool:
        """Whether *token* is the CSRF token of the valid *session*."""
        expected = self.csrf_token(session, now)
        if expected is None or not token:
            return False
        return hmac.compare_digest(expected, token.strip())
