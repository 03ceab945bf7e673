"""Backends chosen by URL: ``memory://``, ``sqlite:///path``, ``redis://host:port/db``;
more register themselves.

``postgresql://`` (or ``postgres://``) opens :class:`PostgresStore` (the ``postgres``
extra). ``open_backend(url)`` returns an object implementing :class:`StateStore` and/or
:class:`EventLog` (both, for the built-in ones). New schemes register a factory in a
:class:`BackendRegistry` (a runtime's ``rt.backends``, or the process-wide defaults with
:func:`register_backend`), like fsspec's protocol registry. A factory that takes a
``read_only`` keyword is told when the opener only reads (``open_backend(url,
read_only=True)``: ``show``, ``rooms``, ``logs``...), so it can skip set-up and locks.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

from openrooms._extras import require
from openrooms.backends.base import (
    AtomicStore,
    EventLog,
    JobQueue,
    Lease,
    LeasingStore,
    StateStore,
    StoredWorkflow,
)
from openrooms.errors import BackendConfigError

if TYPE_CHECKING:
    from openrooms.backends.memory import MemoryJobQueue, MemoryStore
    from openrooms.backends.postgres import PostgresStore
    from openrooms.backends.redis import RedisStore
    from openrooms.backends.sqlite import SQLiteStore

__all__ = [
    "DEFAULT_DB_URL",
    "AtomicStore",
    "BackendRegistry",
    "EventLog",
    "JobQueue",
    "Lease",
    "LeasingStore",
    "MemoryJobQueue",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "SQLiteStore",
    "StateStore",
    "StoredWorkflow",
    "default_backends",
    "open_backend",
    "register_backend",
    "upgrade_backend",
]

DEFAULT_DB_URL: Final = "sqlite:///./.openrooms/openrooms.db"

Factory = Callable[..., Any]
_named_memory: dict[str, MemoryStore] = {}
_memory_lock = threading.Lock()


class BackendRegistry:
    """Maps URL schemes to the factories that open them. Every
    :class:`~openrooms.Runtime`'s registries hold one (``rt.backends``), a copy of
    :data:`default_backends`; :func:`~openrooms.open_runtime` opens its URLs with it."""

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}
        self._reads_only: set[str] = set()  # schemes whose factory takes read_only=

    @classmethod
    def builtins(cls) -> BackendRegistry:
        """A new registry with the built-in schemes: ``memory``, ``sqlite``, and the
        server backends' schemes, which name the extra they need."""
        registry = cls()
        registry.register("memory", _open_memory)
        registry.register("sqlite", _open_sqlite)
        registry.register("postgresql", _open_postgres)
        registry.register("postgres", _open_postgres)
        registry.register("redis", _open_redis)
        registry.register("rediss", _open_redis)
        return registry

    def register(self, scheme: str, factory: Factory, *, replace: bool = False) -> None:
        """Make ``scheme://...`` URLs open with *factory(url)* (and ``read_only=True`` for a
        reading opener, if *factory* takes that keyword).

        Raises:
            ValueError: the scheme is taken and *replace* is false.
        """
        scheme = scheme.lower()
        if scheme in self._factories and not replace:
            raise ValueError(f"backend scheme {scheme!r} is already registered")
        self._factories[scheme] = factory
        if _takes_read_only(factory):
            self._reads_only.add(scheme)
        else:
            self._reads_only.discard(scheme)

    def open(self, url: str, *, read_only: bool = False) -> Any:
        """Open the backend *url* names; see :func:`open_backend`.

        Raises:
            BackendConfigError: an unknown scheme or bad settings.
            DatabaseNotFoundError: *read_only* and the SQLite file does not exist.
        """
        if "://" not in url:
            if url.endswith((".db", ".sqlite", ".sqlite3")):
                from openrooms.backends.sqlite import SQLiteStore

                return SQLiteStore(url, read_only=read_only)
            raise BackendConfigError(url, "expected a URL like sqlite:///path.db or memory://")
        scheme = url.split("://", 1)[0].lower()
        factory = self._factories.get(scheme)
        if factory is None:
            known = ", ".join(sorted(self._factories))
            raise BackendConfigError(
                _shown(url), f"unknown backend scheme {scheme!r}; available: {known}"
            )
        try:
            if read_only and scheme in self._reads_only:
                return factory(url, read_only=True)
            return factory(url)
        except BackendConfigError as exc:
            shown = _shown(url)
            if shown == url or url not in f"{exc.backend}\0{exc.message}":
                raise
            # a factory that quoted the URL: never its password
            raise BackendConfigError(
                exc.backend.replace(url, shown), exc.message.replace(url, shown)
            ) from exc.__cause__

    def schemes(self) -> list[str]:
        """Registered schemes, sorted."""
        return sorted(self._factories)

    def copy(self) -> BackendRegistry:
        """An independent registry with the same schemes."""
        registry = BackendRegistry()
        registry._factories = dict(self._factories)
        registry._reads_only = set(self._reads_only)
        return registry

    def __contains__(self, scheme: object) -> bool:
        return scheme in self._factories


def _shown(url: str) -> str:
    from openrooms.urls import display_url  # here: openrooms.urls imports this package

    return display_url(url)


def register_backend(scheme: str, factory: Factory, *, replace: bool = False) -> None:
    """Make ``scheme://...`` URLs open with *factory(url)* in the process-wide
    :data:`default_backends`, which runtimes opened afterwards start from. For one runtime,
    register in a plugin's ``register(registries)`` hook (``registries.backends.register``).

    Raises:
        ValueError: the scheme is taken and *replace* is false.
    """
    default_backends.register(scheme, factory, replace=replace)


def _takes_read_only(factory: Factory) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a callable whose signature cannot be read
        return False
    return any(p.name == "read_only" or p.kind is p.VAR_KEYWORD for p in params)


def open_backend(
    url: str, *, read_only: bool = False, registry: BackendRegistry | None = None
) -> Any:
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
        registry: the schemes to open it with (default: :data:`default_backends`).

    Raises:
        BackendConfigError: an unknown scheme or bad settings.
        DatabaseNotFoundError: *read_only* and the SQLite file does not exist.
    """
    return (registry if registry is not None else default_backends).open(url, read_only=read_only)


def upgrade_backend(url: str, *, registry: BackendRegistry | None = None) -> str:
    """Bring the schema of the database *url* names up to date (``openrooms db upgrade``),
    creating it if there is none; idempotent, and safe to run from two processes at once.

    Postgres runs its migrations under an advisory lock; a SQLite file is migrated by
    opening it to write; other schemes are opened (and closed), which sets up what they need.

    Returns:
        One line saying what was done, naming the database (never its password).

    Raises:
        BackendConfigError: an unknown scheme, bad settings, or a schema newer than this
            OpenRooms.
        BackendUnavailableError: the database cannot be reached.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else "sqlite"
    if scheme in ("postgresql", "postgres") and (registry is None or "postgresql" in registry):
        require("psycopg", feature=f"the {scheme}:// backend", extra="postgres")
        from openrooms.backends import postgres

        before, after = postgres.upgrade(url)
        where = postgres.PostgresStore.describe(url)
    elif scheme == "sqlite":
        from openrooms.backends.sqlite import SQLiteStore

        store = open_backend(url, registry=registry)
        try:
            after = store._schema_version() if isinstance(store, SQLiteStore) else 0
            where = store.where if isinstance(store, SQLiteStore) else url
        finally:
            store.close()
        return f"{where}: schema version {after} (SQLite files are migrated when opened)"
    else:
        open_backend(url, registry=registry).close()
        return f"{scheme}:// opened; it keeps no versioned schema"
    if before == after:
        return f"{where}: schema version {after}, up to date"
    if before == 0:
        return f"{where}: created, schema version {after}"
    return f"{where}: upgraded from schema version {before} to {after}"


def _open_memory(url: str, *, read_only: bool = False) -> MemoryStore:
    from openrooms.backends.memory import MemoryStore

    name = url.split("://", 1)[1]
    if not name:
        return MemoryStore()
    with _memory_lock:
        return _named_memory.setdefault(name, MemoryStore())


def _open_sqlite(url: str, *, read_only: bool = False) -> SQLiteStore:
    from openrooms.backends.sqlite import SQLiteStore

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


def _open_postgres(url: str, *, read_only: bool = False) -> PostgresStore:
    """``postgresql://`` / ``postgres://``: psycopg is imported only now."""
    scheme = url.split("://", 1)[0].lower()
    require("psycopg", feature=f"the {scheme}:// backend", extra="postgres")
    require("psycopg_pool", feature=f"the {scheme}:// backend", extra="postgres")
    from openrooms.backends.postgres import PostgresStore

    return PostgresStore(url, read_only=read_only)


def _open_redis(url: str, *, read_only: bool = False) -> Any:
    scheme = url.split("://", 1)[0].lower()
    require("redis", feature=f"the {scheme}:// backend", extra="redis")
    from openrooms.backends.redis import open_redis

    return open_redis(url, read_only=read_only)


default_backends = BackendRegistry.builtins()
"""The process-wide defaults: the built-in schemes, and those :func:`register_backend`
adds. Every runtime's registries start from a copy."""

_LAZY = {
    "MemoryStore": "openrooms.backends.memory",
    "MemoryJobQueue": "openrooms.backends.memory",
    "PostgresStore": "openrooms.backends.postgres",
    "RedisStore": "openrooms.backends.redis",  # needs the redis extra
    "SQLiteStore": "openrooms.backends.sqlite",
}


def __getattr__(name: str) -> Any:
    """The built-in stores, their modules imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
