"""Which URLs a runtime opens: the precedence table of openrooms/urls.py and docs/backends.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from openrooms import open_runtime
from openrooms.backends import DEFAULT_DB_URL, RedisStore, SQLiteStore, open_backend
from openrooms.config import RuntimeConfig
from openrooms.errors import BackendConfigError, SchemaValidationError
from openrooms.registries import Registries
from openrooms.urls import PRECEDENCE, display_url, resolve_urls
from tests.conftest import redis_url

ROOT = Path(__file__).parents[2]
PG = "postgresql://app:pw@db:5432/app"
RD = "redis://cache:6379/0"
SQL = "sqlite:///./other.db"

# (what is set, expected state, log, queue)
CASES: list[tuple[dict[str, Any], str, str, str | None]] = [
    ({}, DEFAULT_DB_URL, DEFAULT_DB_URL, None),
    ({"DATABASE_URL": PG}, PG, PG, None),
    ({"REDIS_URL": RD}, RD, RD, RD),
    ({"DATABASE_URL": PG, "REDIS_URL": RD}, PG, PG, RD),  # the original design
    ({"OPENROOMS_DB": SQL, "DATABASE_URL": PG, "REDIS_URL": RD}, SQL, SQL, RD),
    # the original design's split: Redis state, the Postgres log as the truth
    ({"OPENROOMS_STATE_URL": RD, "DATABASE_URL": PG}, RD, PG, None),
    ({"OPENROOMS_LOG_URL": SQL, "OPENROOMS_DB": PG}, PG, SQL, None),
    ({"OPENROOMS_QUEUE_URL": "redis://q/1", "REDIS_URL": RD}, RD, RD, "redis://q/1"),
    ({"DATABASE_URL": "", "REDIS_URL": ""}, DEFAULT_DB_URL, DEFAULT_DB_URL, None),  # empty: unset
    ({"--db": SQL, "OPENROOMS_STATE_URL": RD, "OPENROOMS_DB": PG}, SQL, SQL, None),
    ({"state_url": RD, "--db": SQL}, RD, SQL, None),
    ({"log_url": PG, "--db": SQL, "--queue": RD}, SQL, PG, RD),
    ({"--queue": "redis://flag/2", "OPENROOMS_QUEUE_URL": RD}, DEFAULT_DB_URL, DEFAULT_DB_URL,
     "redis://flag/2"),
    ({"config": {"db": SQL, "queue": "redis://c/3"}, "DATABASE_URL": PG, "REDIS_URL": RD},
     SQL, SQL, "redis://c/3"),
    ({"config": {"db": SQL}, "OPENROOMS_DB": PG}, PG, PG, None),
    ({"config": {"state": RD, "db": SQL}}, RD, SQL, None),
    ({"config": {"queue": "redis://c/3"}, "OPENROOMS_QUEUE_URL": RD}, DEFAULT_DB_URL,
     DEFAULT_DB_URL, RD),
]  # fmt: skip

_FLAGS = {"--db": "db", "--queue": "queue_url", "state_url": "state_url", "log_url": "log_url"}


def resolve(setting: dict[str, Any]) -> tuple[str, str, str | None]:
    env = {k: v for k, v in setting.items() if k.isupper()}
    flags = {_FLAGS[k]: v for k, v in setting.items() if k in _FLAGS}
    config = (
        RuntimeConfig.from_dict({"backends": setting["config"]}) if "config" in setting else None
    )
    urls = resolve_urls(env, config=config, **flags)
    return urls.state, urls.log, urls.queue


@pytest.mark.parametrize(("setting", "state", "log", "queue"), CASES)
def test_each_role_takes_its_first_source_that_is_set(
    setting: dict[str, Any], state: str, log: str, queue: str | None
) -> None:
    assert resolve(setting) == (state, log, queue)


def test_the_sources_say_where_each_url_came_from() -> None:
    urls = resolve_urls({"DATABASE_URL": PG, "REDIS_URL": RD, "OPENROOMS_LOG_URL": SQL})
    assert urls.sources == {
        "state": "DATABASE_URL",
        "log": "OPENROOMS_LOG_URL",
        "queue": "REDIS_URL",
    }
    assert resolve_urls({}).sources == {"state": "default", "log": "default"}


def test_docs_backends_table_is_the_precedence_in_code() -> None:
    """docs/backends.md's precedence table: a column per role, its sources in order."""
    text = (ROOT / "docs" / "backends.md").read_text()
    header = re.search(r"^\| # \|(.*)\|\s*$", text, re.MULTILINE)
    assert header is not None, "docs/backends.md has no precedence table"
    roles = [c.strip() for c in header.group(1).split("|")]
    columns: dict[str, list[str]] = {role: [] for role in roles}
    for row in re.findall(r"^\| \d+ \|(.*)\|\s*$", text, re.MULTILINE):
        for role, cell in zip(roles, row.split("|"), strict=True):
            if cell.strip():
                columns[role].append(re.sub(r"[`]", "", cell.strip()).split(" (")[0])
    assert columns == {role: list(order) for role, order in PRECEDENCE.items()}


def test_open_runtime_follows_database_url_and_redis_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With both set: state and log in DATABASE_URL's store (a SQLite file here, Postgres in
    the original design), and REDIS_URL the queue's."""
    queue = redis_url()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/db.sqlite")
    monkeypatch.setenv("REDIS_URL", queue)
    for name in ("OPENROOMS_DB", "OPENROOMS_STATE_URL", "OPENROOMS_LOG_URL", "OPENROOMS_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    with open_runtime() as rt:
        assert isinstance(rt.states, SQLiteStore) and rt.log is rt.states
        assert rt.urls is not None and rt.urls.queue == queue
    monkeypatch.delenv("DATABASE_URL")
    with open_runtime() as rt:  # REDIS_URL alone: Redis holds everything
        assert isinstance(rt.states, RedisStore) and rt.log is rt.states
        assert rt.urls is not None and rt.urls.sources["state"] == "REDIS_URL"


def test_a_config_backends_section_is_checked() -> None:
    with pytest.raises(SchemaValidationError) as caught:
        RuntimeConfig.from_dict({"backends": {"dbs": SQL, "queue": "no scheme:pw@host"}})
    text = str(caught.value)
    assert "backends.dbs" in text and "did you mean 'db'" in text
    assert "backends.queue" in text and "expected a URL with a scheme" in text
    assert "pw@host" not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("redis://:s3cret@cache:6379/0?prefix=a:", "redis://:***@cache:6379/0?prefix=a:"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:///./rooms.db", "sqlite:///./rooms.db"),
    ],
)
def test_display_url_hides_the_password(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_a_url_that_cannot_be_opened_is_named_without_its_password_and_with_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OPENROOMS_DB", "OPENROOMS_STATE_URL", "OPENROOMS_LOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@db/app")
    with pytest.raises(BackendConfigError) as caught:
        open_runtime()
    text = str(caught.value)
    assert "hunter2" not in text
    assert "mysql://app:***@db/app" in text
    assert "unknown backend scheme 'mysql'" in text
    assert "(the state URL was set by DATABASE_URL)" in text
    with pytest.raises(BackendConfigError) as caught:  # given directly: no source to add
        open_runtime("mysql://app:hunter2@db/app")
    assert "hunter2" not in str(caught.value) and "set by" not in str(caught.value)


def test_a_factory_quoting_its_url_never_shows_the_password() -> None:
    registries = Registries()

    def refuse(url: str) -> object:
        raise BackendConfigError(url, f"cannot open {url}")

    registries.backends.register("acme", refuse)
    with pytest.raises(BackendConfigError) as caught:
        open_backend("acme://u:hunter2@h/x", registry=registries.backends)
    assert str(caught.value) == "acme://u:***@h/x: cannot open acme://u:***@h/x"
