"""Backends chosen by URL: schemes, options, and the extras some schemes need."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import pytest

from openrooms import BackendConfigError, MissingExtraError
from openrooms._extras import require
from openrooms.backends import MemoryStore, SQLiteStore, open_backend


def test_sqlite_urls_open_relative_and_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_backend("sqlite:///rel.db")
    absolute = open_backend(f"sqlite:///{tmp_path / 'abs.db'}")
    assert isinstance(relative, SQLiteStore)
    assert isinstance(absolute, SQLiteStore)
    assert (tmp_path / "rel.db").exists()
    assert (tmp_path / "abs.db").exists()
    relative.close()
    absolute.close()


def test_named_memory_stores_are_shared_and_bare_ones_are_not() -> None:
    assert open_backend("memory://shared-test") is open_backend("memory://shared-test")
    first, second = open_backend("memory://"), open_backend("memory://")
    assert isinstance(first, MemoryStore)
    assert first is not second


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("bogus://x", "unknown backend scheme 'bogus'"),
        ("sqlite://host/x.db", "expected sqlite:///relative/path.db"),
        ("sqlite:///x.db?fsync=1", "unknown option(s) fsync"),
        ("sqlite:///x.db?busy_timeout_ms=soon", "busy_timeout_ms must be a whole number"),
        ("openrooms.txt", "expected a URL like"),
    ],
)
def test_bad_urls_are_refused_naming_the_url_and_the_fix(url: str, fragment: str) -> None:
    with pytest.raises(BackendConfigError) as info:
        open_backend(url)
    assert fragment in str(info.value)
    assert url in str(info.value)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "redis", "redis"),
        ("postgresql://127.0.0.1/test", "psycopg", "postgres"),
    ],
)
def test_a_scheme_whose_extra_is_missing_names_the_pip_command(
    url: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
    with pytest.raises(MissingExtraError) as info:
        open_backend(url)
    assert isinstance(info.value, ImportError)
    assert f"pip install 'openrooms[{extra}]'" in str(info.value)


def test_require_returns_the_module_or_names_the_extra() -> None:
    assert require("json", feature="json", extra="none").__name__ == "json"
    with pytest.raises(MissingExtraError, match=r"openrooms\[llm\]"):
        require("openrooms_test_no_such_module", feature="agents", extra="llm")


def test_an_explicit_db_beats_the_environment_and_split_urls_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openrooms import open_runtime

    monkeypatch.setenv("OPENROOMS_STATE_URL", "bogus://state")
    monkeypatch.setenv("OPENROOMS_LOG_URL", "bogus://log")
    rt = open_runtime(f"sqlite:///{tmp_path / 'explicit.db'}")
    assert rt.states is cast(object, rt.log)  # one store serves as both
    assert isinstance(rt.states, SQLiteStore)
    rt.close()
    monkeypatch.setenv("OPENROOMS_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("OPENROOMS_LOG_URL", "memory://split-log-test")
    split = open_runtime()
    assert isinstance(split.states, SQLiteStore)
    assert split.log is open_backend("memory://split-log-test")
    split.close()


def test_read_only_reaches_factories_that_take_it_and_spares_those_that_do_not() -> None:
    from openrooms.backends import BackendRegistry

    registry = BackendRegistry.builtins()  # this test's own: nothing registered leaks out
    calls: list[tuple[str, bool | None]] = []

    def knows(url: str, *, read_only: bool = False) -> MemoryStore:
        calls.append((url, read_only))
        return MemoryStore()

    def plain(url: str) -> MemoryStore:
        calls.append((url, None))
        return MemoryStore()

    registry.register("test-knows", knows)
    registry.register("test-plain", plain)
    open_backend("test-knows://x", read_only=True, registry=registry)
    registry.open("test-knows://y")
    open_backend("test-plain://z", read_only=True, registry=registry)
    assert calls == [("test-knows://x", True), ("test-knows://y", False), ("test-plain://z", None)]
