"""Backends chosen by URL: ``memory://``, ``sqlite:///path``; more register themselves.

``open_backend(url)`` returns an object implementing :class:`StateStore` and/or
:class:`EventLog` (both, for the built-in ones). New schemes register a factory with
:func:`register_backend`, like fsspec's protocol registry. A factory that takes a
``read_only`` keyword is told when the opener only reads (``open_backend(url,
read_only=True)``: ``show``, ``rooms``, ``logs``...), so it can skip set-up and locks.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from openrooms._extras import require
from openrooms.backends.base import (
    AtomicStore,
    EventLog,
    JobQueue,
    Lease,
    StateStore,
    StoredWorkflow,
)
from openrooms.backends.memory import MemoryJobQueue, MemoryStore
from openrooms.backends.sqlite import SQLiteStore
from openrooms.errors import BackendConfigError

__all__ = [
    "DEFAULT_DB_URL",
    "AtomicStore",
    "EventLog",
    "JobQueue",
    "Lease",
    "MemoryJobQueue",
    "MemoryStore",
    "SQLiteStore",
    "StateStore",
    "StoredWorkflow",
    "open_backend",
    "register_backend",
]

DEFAULT_DB_URL: Final = "sqlite:///./.openrooms/openrooms.db"

Factory = Callable[..., Any]
_factories: dict[str, Factory] = {}
_reads_only: set[str] = set()  # schemes whose factory takes read_only=
_named_memory: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


def register_backend(scheme: str, factory: Factory, *, replace: bool = False) -> None:
    """Make ``scheme://...`` URLs open with *factory(url)*.

    Raises:
        ValueError: the scheme is taken and *replace* is false.
    """
    if scheme in _factories and not replace:
        raise ValueError(f"backend scheme {scheme!r} is already registered")
    _factories[scheme] = factory
    if _takes_read_only(factory):
        _reads_only.add(scheme)
    else:
        _reads_only.discard(scheme)


def _takes_read_only(factory: Factory) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a callable whose signature cannot be read
        return False
    return any(p.name == "read_only" or p.kind is p.VAR_KEYWORD for p in params)


def open_backend(url: str, *, read_only: bool = False) -> Any:
    """Open the backend a URL names.

    ``memory://`` is a fresh store; ``memory://NAME`` is shared by every opener in the
    process. ``sqlite:///relative.db`` and ``sqlite:////absolute.db`` take
    ``?synchronous=full|normal`` and ``?busy_timeout_ms=N``; a bare path ending in
    ``.db``/``.sqlite`` is read as a SQLite file.

    Args:
        url: the backend's URL.
        read_only: the opener only reads: a SQLite file is opened ``mode=ro`` and must
            exist (nothing is created, no schema is written, no lock is taken); passed on
            to factories that take a ``read_only`` keyword.

    Raises:
        BackendConfigError: an unknown scheme or bad settings.
        DatabaseNotFoundError: *read_only* and the SQLite file does not exist.
    """
    if "://" not in url:
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return SQLiteStore(url, read_only=read_only)
        raise BackendConfigError(url, "expected a URL like sqlite:///path.db or memory://")
    scheme = url.split("://", 1)[0].lower()
    factory = _factories.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_factories))
        raise BackendConfigError(url, f"unknown backend scheme {scheme!r}; available: {known}")
    if read_only and scheme in _reads_only:
        return factory(url, read_only=True)
    return factory(url)


def _open_memory(url: str, *, read_only: bool = False) -> MemoryStore:
    name = url.split("://", 1)[1]
    if not name:
        return MemoryStore()
    with _memory_lock:
        return _named_memory.setdefault(name, MemoryStore())


def _open_sqlite(url: str, *, read_only: bool = False) -> SQLiteStore:
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.netloc and parts.netloc != ":memory:":
        raise BackendConfigError(
            url, "expected sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    if parts.netloc == ":memory:" or path == ":memory:":
        path = ":memory:"
    if not path:
        raise BackendConfigError(url, "no file path; e.g. sqlite:///./.openrooms/openrooms.db")
    options = dict(parse_qsl(parts.query))
    unknown = set(options) - {"synchronous", "busy_timeout_ms"}
    if unknown:
        raise BackendConfigError(
            url,
            f"unknown option(s) {', '.join(sorted(unknown))}; known: synchronous, busy_timeout_ms",
        )
    try:
        timeout = int(options.get("busy_timeout_ms", 10_000))
    except ValueError:
        raise BackendConfigError(url, "busy_timeout_ms must be a whole number") from None
    return SQLiteStore(
        path,
        synchronous=options.get("synchronous", "full"),
        busy_timeout_ms=timeout,
        read_only=read_only,
    )


def _server_backend(extra: str, module: str) -> Factory:
    """A scheme whose backend needs an extra: the extra's absence is named, not a KeyError."""

    def open_(url: str) -> Any:
        scheme = url.split("://", 1)[0].lower()
        require(module, feature=f"the {scheme}:// backend", extra=extra)
        raise BackendConfigError(
            url,
            f"{module} is installed, but this version of OpenRooms has no {scheme}:// "
            f"backend yet; use sqlite:/// or memory://",
        )

    return open_


register_backend("memory", _open_memory)
register_backend("sqlite", _open_sqlite)
for _scheme, _extra, _module in [
    ("redis", "redis", "redis"),
    ("rediss", "redis", "redis"),
    ("postgresql", "postgres", "psycopg"),
    ("postgres", "postgres", "psycopg"),
]:
    register_backend(_scheme, _server_backend(_extra, _module))
