"""Keep known secret values out of everything a room stores and shows.

A provider's error can quote the API key it was sent; a server can echo the token of the
request it refused; a traceback repeats both. Before a node's outcome or a call's record
reaches the engine (and so the log, the room's state, ``logs`` and ``show``), the runner
passes it through a :class:`Scrubber` that replaces every known secret value with
``[redacted]``, in error messages, tracebacks and results alike.

Known secrets are the values of environment variables whose names say they hold one
(``OPENAI_API_KEY``, ``GITHUB_TOKEN``, ``DB_PASSWORD``, ``OPENROOMS_API_KEYS``: names ending
in ``KEY``, ``KEYS``, ``TOKEN``, ``SECRET``, ``PASSWORD``, ``PASSWD`` or ``CREDENTIALS``),
and, for one tool call, the credentials its arguments carry (an ``Authorization`` header,
``?api_key=`` in the URL: see :func:`secrets_in`). Values shorter than
:data:`MIN_SECRET_LENGTH` characters are not treated as secrets: replacing ``"1"`` or
``"true"`` everywhere would garble the log and hide nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

import attrs

from openrooms.events import ErrorInfo
from openrooms.nodes.base import LogRecord, Outcome
from openrooms.storable import MAX_DEPTH
from openrooms.tools.redact import REDACTED, is_sensitive_key

__all__ = [
    "MIN_SECRET_LENGTH",
    "Scrubber",
    "environment_scrubber",
    "environment_secrets",
    "secrets_in",
]

MIN_SECRET_LENGTH: Final = 8
"""Shorter values are never scrubbed (they are not credentials, and would garble text)."""

_SECRET_NAME: Final = re.compile(
    r"(?:\A|_)(?:KEYS?|TOKENS?|SECRETS?|PASSWORDS?|PASSWD|CREDENTIALS?)\Z", re.IGNORECASE
)
_URL: Final = re.compile(r"\Ahttps?://", re.IGNORECASE)
_AUTH_SCHEME: Final = re.compile(r"\A(?:Bearer|Basic|Token|Bot|Digest)\s+(\S+)\Z", re.IGNORECASE)


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of credential-named environment variables (a comma-separated list counts
    as several), each at least :data:`MIN_SECRET_LENGTH` long."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    for name, value in env.items():
        if _SECRET_NAME.search(name):
            found.extend(part.strip() for part in value.split(","))
    return [v for v in found if len(v) >= MIN_SECRET_LENGTH]


def environment_scrubber() -> Scrubber:
    """A :class:`Scrubber` for the secrets ``os.environ`` holds now.

    The one made last is reused while the environment is unchanged, which a comparison of
    its raw mapping tells in a few microseconds (reading it through ``os.environ`` decodes
    every name and value: a tenth of a short room's run). The runner asks at the start of
    every run, so a key set or changed since the last one is known to it.
    """
    global _last_environment
    raw = getattr(os.environ, "_data", None)  # CPython's mapping behind os.environ
    now = dict(raw) if isinstance(raw, dict) else dict(os.environ)
    last = _last_environment
    if last is not None and last[0] == now:
        return last[1]
    scrubber = Scrubber(environment_secrets())
    _last_environment = (now, scrubber)
    return scrubber


_last_environment: tuple[dict[Any, Any], Scrubber] | None = None


def secrets_in(args: Any) -> list[str]:
    """The credentials a tool call's arguments carry: values under credential-named keys
    (``Authorization``, ``api_key``, ``token``...; the token alone too, for
    ``Bearer <token>``), and credential-named query parameters and passwords in URLs."""
    if type(args) is dict and not args:
        return []
    found: list[str] = []

    def walk(value: Any, sensitive: bool, depth: int = 0) -> None:
        if depth > MAX_DEPTH:  # no store keeps it: the storability check refuses it
            return
        kind = type(value)
        if kind in _SCALARS:  # the common case, without the slower ABC checks below
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, sensitive or (isinstance(k, str) and is_sensitive_key(k)), depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, sensitive, depth + 1)
        elif isinstance(value, str):
            if sensitive:
                found.append(value)
                scheme = _AUTH_SCHEME.match(value.strip())
                if scheme:
                    found.append(scheme.group(1))
            elif _URL.match(value):
                found.extend(_url_secrets(value))

    walk(args, False)
    return [v for v in found if len(v) >= MIN_SECRET_LENGTH]


_SCALARS: Final = frozenset({int, float, bool, type(None)})


def _url_secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password] if password else []
    found.extend(v for k, v in parse_qsl(parts.query) if is_sensitive_key(k))
    return found


class Scrubber:
    """Replaces known secret values with ``[redacted]`` in text and JSON-like values.

    Args:
        secrets: the values to hide; those shorter than :data:`MIN_SECRET_LENGTH` are
            ignored. Their percent-encoded forms (as in a URL) are hidden too.
    """

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        if not secrets:  # an empty list or tuple (a call without credentials): nothing to do
            self._pattern = None
            return
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                forms.add(secret)
                forms.add(quote(secret, safe=""))
        # longest first, so a key that contains another is replaced whole
        ordered = sorted(forms, key=lambda s: (-len(s), s))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, extra: Iterable[str] = ()
    ) -> Scrubber:
        """A scrubber for :func:`environment_secrets` plus *extra* values."""
        return cls([*environment_secrets(environ), *extra])

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """*text* with every secret replaced."""
        if self._pattern is None or self._pattern.search(text) is None:
            return text  # the very same object: callers tell "changed" by identity
        return self._pattern.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """*value* with every secret replaced in its strings (keys included); containers
        are copied only where something changed, so an untouched value is returned as is.
        Nesting past :data:`~openrooms.storable.MAX_DEPTH` is left as it is: no store can
        keep it, and the storability check that follows refuses it with its path."""
        if self._pattern is None:
            return value
        return self._value(value, 0)

    def _value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            items = [(self._value(k, depth), self._value(v, depth + 1)) for k, v in value.items()]
            changed = any(
                nk is not k or nv is not v
                for (nk, nv), (k, v) in zip(items, value.items(), strict=True)
            )
            return dict(items) if changed else value
        if isinstance(value, list | tuple):
            new = [self._value(v, depth + 1) for v in value]
            if all(n is o for n, o in zip(new, value, strict=True)):
                return value
            return new if isinstance(value, list) else tuple(new)
        return value

    def error(self, info: ErrorInfo | None) -> ErrorInfo | None:
        """*info* with its message and traceback scrubbed."""
        if info is None or self._pattern is None:
            return info
        message = self.text(info.message)
        traceback = None if info.traceback is None else self.text(info.traceback)
        if message == info.message and traceback == info.traceback:
            return info
        return attrs.evolve(info, message=message, traceback=traceback)

    def record(self, record: LogRecord) -> LogRecord:
        """A call's log record with its data and error scrubbed."""
        if self._pattern is None:
            return record
        data, error = self.value(record.data), self.error(record.error)
        if data is record.data and error is record.error:
            return record
        return attrs.evolve(record, data=data, error=error)

    def outcome(self, outcome: Outcome) -> Outcome:
        """A node's outcome with its output, assignments, error and records scrubbed."""
        if self._pattern is None:
            return outcome
        return attrs.evolve(
            outcome,
            output=self.value(outcome.output),
            assign=self.value(outcome.assign),
            error=self.error(outcome.error),
            records=tuple(self.record(r) for r in outcome.records),
        )
