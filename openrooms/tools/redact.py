"""Make tool arguments and results safe and small enough to log.

:func:`redact` hides credentials (``Authorization`` headers, ``api_key`` fields, ``?token=``
in URLs); :func:`truncate_json` shortens big values to a preview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "is_sensitive_key", "redact", "redact_text", "truncate_json"]

REDACTED: Final = "[redacted]"
"""What :func:`redact` puts in place of a secret."""

_SENSITIVE_NAMES: Final = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "api_key",
        "apikey",
        "x_api_key",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
    }
)
# Names such as github_token, db_password, stripe_api_key, but not max_tokens.
_SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_password", "_api_key", "_apikey")
_URL: Final = re.compile(r"\Ahttps?://", re.IGNORECASE)


def is_sensitive_key(key: str) -> bool:
    """Whether a field, header or query parameter called *key* holds a credential.

    Case, ``-`` and ``_`` do not matter: ``X-Api-Key``, ``x_api_key`` and ``X_API_KEY``
    are one name. Matches ``authorization``, ``proxy-authorization``, ``cookie``,
    ``set-cookie``, ``api_key``/``apikey``/``x-api-key``, ``token``, ``access_token``,
    ``secret``, ``password`` and names ending in ``_token``, ``_secret``, ``_password``
    or ``_api_key``.
    """
    name = key.strip().lower().replace("-", "_")
    return name in _SENSITIVE_NAMES or name.endswith(_SENSITIVE_SUFFIXES)


def redact(value: Any) -> Any:
    """A copy of *value* with every credential replaced by ``"[redacted]"``.

    Values under sensitive keys (see :func:`is_sensitive_key`) are replaced wherever they
    sit in nested mappings and lists; in ``http(s)://`` URL strings, the password and
    sensitive query parameters are replaced. Mappings become dicts and tuples become
    lists; other values are returned as they are. *value* is never changed.

    Example::

        >>> redact({"headers": {"Authorization": "Bearer abc"}, "url": "https://x/?token=t"})
        {'headers': {'Authorization': '[redacted]'}, 'url': 'https://x/?token=[redacted]'}
    """
    if type(value) is dict and not value:  # a call without arguments, the common case
        return {}
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_sensitive_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str) and _URL.match(value):
        return _redact_url(value)
    return value


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL after all (a bad port or bracket): leave it be
        return url
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_sensitive_key(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if is_sensitive_key(k) else v) for k, v in pairs], safe="[]"
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL_IN_TEXT: Final = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """*text* with every ``http(s)://`` URL in it redacted as :func:`redact` does (the
    password and sensitive query parameters): for error messages that quote a URL."""
    return _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(0)), text)


def truncate_json(value: Any, max_bytes: int) -> tuple[Any, bool]:
    """*value* if its JSON text fits in *max_bytes* (UTF-8), else a preview of it.

    Returns:
        ``(value, False)`` when it fits; otherwise ``(preview, True)``, where *preview* is
        a string: the start of the JSON text, cut to at most *max_bytes* bytes on a
        character boundary. A value that is not JSON (a set, NaN, a cycle) is always
        previewed, through ``repr`` of the parts JSON cannot show, so the first item is
        always safe to serialize.

    Raises:
        ValueError: *max_bytes* is negative.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError, RecursionError):  # circular, or nested too deep
            text = repr(value)
    else:
        if len(text) <= max_bytes // 4 or len(text.encode()) <= max_bytes:
            return value, False
    encoded = text.encode()[:max_bytes]
    return encoded.decode(errors="ignore"), True
