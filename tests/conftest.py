"""Shared fixtures: Hypothesis profiles, backends for the contract suites, service URLs."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, settings

from openrooms.backends import (
    AtomicStore,
    BackendRegistry,
    MemoryStore,
    SQLiteStore,
    default_backends,
    open_backend,
)
from openrooms.errors import BackendUnavailableError
from openrooms.llm.registry import default_models
from openrooms.nodes.registry import NodeRegistry, node_types
from openrooms.tools.registry import ToolRegistry, default_tools

settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("OPENROOMS_HYPOTHESIS", "ci" if os.environ.get("CI") else "dev")
)
# tests/property/test_hostile.py: a fixed, small budget in every run; `nox -s hostile` raises it
settings.register_profile(
    "hostile",
    max_examples=int(os.environ.get("OPENROOMS_HOSTILE_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# The original design's variables choose a runtime's backends (openrooms/urls.py) when no
# OPENROOMS_* URL is set: a developer's own DATABASE_URL must never receive the suite's rooms.
# Tests find the services at OPENROOMS_TEST_*_URL instead.
for _name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(_name, None)

REDIS_URL = os.environ.get("OPENROOMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "OPENROOMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

BACKENDS = ["memory", "sqlite", "postgres", "redis"]


@functools.cache
def _postgres_problem() -> str | None:
    """Why the test Postgres cannot be used (None when it can); asked once per session."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'openrooms[postgres]')"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"Postgres at {POSTGRES_URL} is unreachable ({exc}); start it or set " + (
            "OPENROOMS_TEST_POSTGRES_URL"
        )
    return None


def require_postgres() -> None:
    """Skip the test when the test Postgres is unreachable; under CI=true, fail it."""
    problem = _postgres_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {problem}")
        pytest.skip(problem)


def postgres_url(schema: str | None = None) -> str:
    """POSTGRES_URL with ``?schema=`` a new, unused schema (or *schema*); drop it with
    :func:`drop_postgres_schema`."""
    require_postgres()
    parts = urlsplit(POSTGRES_URL)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema or f"or_test_{uuid.uuid4().hex[:12]}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


def drop_postgres_schema(url: str) -> None:
    """Drop the schema *url* names (and everything in it)."""
    import psycopg
    from psycopg import sql

    schema = dict(parse_qsl(urlsplit(url).query))["schema"]
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


_redis_prefixes: list[str] = []
"""The key prefixes of the Redis stores opened by the running test (see _drop_redis_keys)."""


def redis_url(prefix: str | None = None) -> str:
    """REDIS_URL with a fresh key prefix (or *prefix*), dropped when the test ends."""
    if prefix is None:
        prefix = f"test-{uuid.uuid4().hex}:"
        _redis_prefixes.append(prefix)
    return f"{REDIS_URL}{'&' if '?' in REDIS_URL else '?'}prefix={prefix}"


def open_service(url: str, **kwargs: object) -> AtomicStore:
    """open_backend(url), skipped with a reason when the service is down (failed under CI)."""
    try:
        store: AtomicStore = open_backend(url, **kwargs)  # type: ignore[arg-type]
    except BackendUnavailableError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{exc} (start the service, or set OPENROOMS_TEST_*_URL)")
    return store


def make_store(kind: str, tmp_path: Path, name: str = "contract") -> AtomicStore:
    """A fresh store of *kind* that keeps its data under *tmp_path* (SQLite: in the file
    *name*.db; Postgres: in a new schema, dropped when the test ends, or by
    :func:`discard_store`; Redis: under a new key prefix on db 15, whose keys are deleted
    when the test ends)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / f"{name}.db")
    if kind == "postgres":
        from openrooms.backends.postgres import PostgresStore

        url = postgres_url()
        try:
            store = PostgresStore(url)
        except BaseException:
            drop_postgres_schema(url)
            raise
        _MADE[id(store)] = (store, url)
        return store
    if kind == "redis":
        return open_service(redis_url())
    raise ValueError(kind)


_MADE: dict[int, tuple[Any, str]] = {}
"""id(store) -> (store, URL) of the Postgres stores make_store opened in this test."""


def discard_store(store: Any) -> None:
    """Close a store made by :func:`make_store` and drop what it made (a Postgres schema)."""
    store.close()
    made = _MADE.pop(id(store), None)
    if made is not None:
        drop_postgres_schema(made[1])


@pytest.fixture(autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Every schema make_store made for a test is dropped when it ends (its store closed
    first), whether or not the test's own fixtures discarded it."""
    yield
    while _MADE:
        store, url = _MADE.popitem()[1]
        store.close()
        drop_postgres_schema(url)


def drop_redis_prefix(prefix: str) -> None:
    """Delete the keys under *prefix* (SCAN + DEL on that prefix only; never FLUSHDB)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL.split("?", 1)[0])
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _drop_redis_keys() -> Iterator[None]:
    """Every Redis store a test opened through redis_url()/make_store is dropped after it."""
    yield
    while _redis_prefixes:
        drop_redis_prefix(_redis_prefixes.pop())


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AtomicStore]:
    """Each backend in turn, as state store and event log at once; closed and dropped after."""
    s = make_store(request.param, tmp_path)
    yield s
    discard_store(s)


def _defaults() -> dict[str, list[str]]:
    """What the process-wide default registries hold."""
    return {
        "node types": node_types.names(),
        "tools": default_tools.names(),
        "model providers": default_models.providers(),
        "backend schemes": default_backends.schemes(),
    }


_BUILTINS = {
    "node types": NodeRegistry.builtins().names(),
    "tools": ToolRegistry.builtins().names(),
    "model providers": [],
    "backend schemes": BackendRegistry.builtins().schemes(),
}


@pytest.fixture(autouse=True)
def _no_registration_leaks() -> Iterator[None]:
    """Every test starts and ends with the process-wide registries holding the built-ins
    only: tests register on their own runtime's registries (``rt.tools``, a fixture's
    ``Registries()``), never in the defaults every runtime starts from. A test module that
    registers at import time fails every test."""
    assert _defaults() == _BUILTINS, "a test module registered into the process-wide defaults"
    yield
    assert _defaults() == _BUILTINS, "this test registered into the process-wide defaults"
