"""What the contract suites do not cover on Postgres: schema versions and `db upgrade`, the
append-only log, LISTEN/NOTIFY tails, leases' recoveries, URLs and connection failures.

Every test runs against the real Postgres of tests/conftest.py, in a schema of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from openrooms import engine
from openrooms.backends import open_backend, upgrade_backend
from openrooms.backends.postgres import SCHEMA_VERSION, PostgresStore, upgrade
from openrooms.errors import (
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    DatabaseNotFoundError,
    RoomLeasedError,
    SchemaOutdatedError,
    StaleRoomError,
)
from openrooms.room import RoomState
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import WorkflowBuilder
from tests.conftest import POSTGRES_URL, drop_postgres_schema, postgres_url

ROOT = Path(__file__).parents[2]

WF = (
    WorkflowBuilder("pg", variables={"i": 0})
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 3")
    .transition("inc", "done")
    .build()
)


@pytest.fixture
def url() -> Iterator[str]:
    """A URL naming a schema nobody has made yet; dropped afterwards."""
    made = postgres_url()
    yield made
    drop_postgres_schema(made)


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(url)
    yield s
    s.close()


def make_room(store: PostgresStore, room_id: str = "r1") -> RoomState:
    step = engine.create_room(WF, RoomId(room_id), now=1000, variables={})
    store.commit(step.state, step.events, expected_version=None)
    return step.state


def schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def raw(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """A plain connection with the store's schema on its search path."""
    conn = psycopg.connect(POSTGRES_URL, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_of(url))))
    return conn


def versions(url: str) -> list[int]:
    with raw(url) as conn:
        rows = conn.execute("SELECT version FROM openrooms_schema ORDER BY 1").fetchall()
        return [int(str(r[0])) for r in rows]


def cli(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# schema versions


def test_a_new_schema_is_created_on_first_open(url: str) -> None:
    store = PostgresStore(url)
    store.close()
    assert versions(url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_schema_behind_is_refused_naming_db_upgrade_and_never_migrated_by_opening(
    url: str,
) -> None:
    assert upgrade(url, target=1) == (0, 1)
    for read_only in (False, True):
        with pytest.raises(SchemaOutdatedError) as caught:
            PostgresStore(url, read_only=read_only)
        assert "openrooms db upgrade" in str(caught.value)
        assert isinstance(caught.value, BackendConfigError)
    assert versions(url) == [1]  # opening did not migrate it
    done = cli(url, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"upgraded from schema version 1 to {SCHEMA_VERSION}" in done.stdout
    assert versions(url) == list(range(1, SCHEMA_VERSION + 1))
    PostgresStore(url).close()
    again = cli(url, "db", "upgrade")
    assert again.returncode == 0 and "up to date" in again.stdout


def test_db_upgrade_run_by_two_processes_at_once_migrates_once(url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "openrooms.cli", "--db", url, "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    said = sorted(out for out, _ in outs)
    assert "created" in said[0] and "up to date" in said[1], said
    assert versions(url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_read_only_opening_of_a_new_schema_creates_nothing(url: str) -> None:
    with pytest.raises(DatabaseNotFoundError):
        open_backend(url, read_only=True)
    with psycopg.connect(POSTGRES_URL) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema_of(url),)
        ).fetchall()
    assert found == []


def test_a_read_only_store_refuses_writes(url: str, store: PostgresStore) -> None:
    state = make_room(store)
    reader = PostgresStore(url, read_only=True)
    try:
        assert reader.get(state.room_id) == state
        with pytest.raises(BackendError, match="read-only"):
            reader.commit(state, (), expected_version=None)
    finally:
        reader.close()


def test_upgrade_backend_on_sqlite_opens_the_file(tmp_path: Path) -> None:
    said = upgrade_backend(f"sqlite:///{tmp_path}/up.db")
    assert "schema version" in said and (tmp_path / "up.db").exists()


# the append-only log


def test_raw_update_delete_and_truncate_of_events_are_refused(
    url: str, store: PostgresStore
) -> None:
    state = make_room(store)
    with raw(url) as conn:
        for statement in (
            "UPDATE events SET body = '[]'",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
        # the retention path: a transaction that says so may delete, never update
        with conn.transaction():
            conn.execute("SET LOCAL openrooms.retention = on")
            # a savepoint, so the outer transaction goes on
            with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
                conn.execute("UPDATE events SET body = '[]'")
            conn.execute("DELETE FROM events WHERE room_id = %s", (state.room_id,))
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
        with pytest.raises(psycopg.errors.RaiseException):  # SET LOCAL ended with it
            conn.execute("DELETE FROM events")


# LISTEN/NOTIFY


def test_wait_for_events_times_out_when_nothing_is_written(store: PostgresStore) -> None:
    state = make_room(store)
    assert store.wait_for_events(state.room_id, 0, 5.0) is True  # already there
    started = time.monotonic()
    assert store.wait_for_events(state.room_id, state.version, 0.3) is False
    assert time.monotonic() - started >= 0.3


def test_a_commit_on_another_connection_wakes_a_waiter_at_once(url: str) -> None:
    """Two stores (two pools, two connections): the follower waits with a long timeout,
    the writer commits; the follower returns within a fraction of a second of the commit."""
    writer = PostgresStore(url)
    follower = PostgresStore(url)
    try:
        state = make_room(writer)
        make_room(writer, "other")
        woke: list[tuple[bool, float]] = []

        def wait() -> None:
            result = follower.wait_for_events(state.room_id, state.version, 30.0)
            woke.append((result, time.monotonic()))

        thread = threading.Thread(target=wait)
        thread.start()
        # another room's commit is no reason to return
        other = engine.start(WF, writer.get(RoomId("other")), now=1500)
        writer.commit(other.state, other.events, expected_version=1)
        deadline = time.monotonic() + 10
        while follower._listener is None and time.monotonic() < deadline:
            time.sleep(0.005)  # poll for the condition: the follower is listening
        assert woke == []
        step = engine.start(WF, state, now=2000)
        writer.commit(step.state, step.events, expected_version=state.version)
        committed = time.monotonic()
        thread.join(timeout=30)
        assert woke and woke[0][0] is True
        assert woke[0][1] - committed < 1.0, "woke by the notification, not the timeout"
    finally:
        writer.close()
        follower.close()


def test_a_commit_notifies_only_while_someone_follows_the_room(
    url: str, store: PostgresStore
) -> None:
    """NOTIFY costs every commit; it is sent only where a follower holds the room's lock."""
    state = make_room(store)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as listener:
        listener.execute("LISTEN openrooms_events")
        step = engine.start(WF, state, now=2000)
        store.commit(step.state, step.events, expected_version=state.version)
        assert list(listener.notifies(timeout=0.2)) == []  # nobody follows r1
        listener.execute(
            "SELECT pg_advisory_lock_shared(28518, hashtext(%s))", (f"{store.schema}/r1",)
        )
        again = engine.fail(step.state, now=3000, reason="x")
        store.commit(again.state, again.events, expected_version=step.state.version)
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert len(notes) == 1 and notes[0].channel == "openrooms_events"


def test_follow_yields_a_new_event_without_waiting_for_the_poll_interval(url: str) -> None:
    """Runtime.follow with a 60 s poll interval: an input written by another runtime
    reaches the follower in well under a second."""
    wf = (
        WorkflowBuilder("pg_wait")
        .wait("ask", prompt="go?")
        .end("done")
        .transition("ask", "done")
        .build()
    )
    writer_store = PostgresStore(url)
    writer = Runtime(writer_store, writer_store)
    reader_store = PostgresStore(url, read_only=True)
    reader = Runtime(reader_store, reader_store)
    try:
        room = writer.create_room(wf)
        waiting = writer.run(room.id)
        assert waiting.status.value == "waiting"
        seen: list[tuple[str, float]] = []

        def follow() -> None:
            events = reader.follow(room.id, after=waiting.version, poll_s=60, stop_when_idle=False)
            for e in events:
                seen.append((e.type.value, time.monotonic()))

        thread = threading.Thread(target=follow)
        thread.start()
        deadline = time.monotonic() + 10
        while reader_store._listener is None and time.monotonic() < deadline:
            time.sleep(0.005)  # poll for the condition: the follower is listening
        done = writer.send_input(room.id, {"ok": True})
        sent = time.monotonic()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert done.status.value == "completed"
        assert seen and seen[-1][0] == "ROOM_COMPLETED"
        assert seen[0][1] - sent < 1.0
    finally:
        writer.close()
        reader.close()


# leases


def test_recoveries_count_takeovers_of_expired_unreleased_leases(store: PostgresStore) -> None:
    state = make_room(store)
    room = state.room_id
    first = store.acquire_lease(room, "w1", ttl_ms=100, now=0)
    assert first.recoveries == 0
    second = store.acquire_lease(room, "w2", ttl_ms=100, now=200)  # w1 never let go
    assert second.recoveries == 1
    third = store.acquire_lease(room, "w3", ttl_ms=100, now=400)
    assert third.recoveries == 2
    assert store.find_lease(room) == third
    renewed = store.renew_lease(third, ttl_ms=100, now=450)
    assert renewed.recoveries == 2
    store.release_lease(renewed)
    clean = store.acquire_lease(room, "w4", ttl_ms=100, now=600)
    assert clean.recoveries == 0
    forced = store.acquire_lease(room, "w5", ttl_ms=100, now=650, force=True)
    assert forced.recoveries == 1  # w4 never let go either
    step = engine.start(WF, state, now=900)
    taken = store.acquire_and_commit(
        step.state, step.events, expected_version=state.version, owner="w6", ttl_ms=9, now=900
    )
    assert taken.recoveries == 2  # nor did w5


def test_expired_rooms_are_running_or_queued_rooms_whose_lease_ran_out_unreleased(
    store: PostgresStore,
) -> None:
    def started(room_id: str) -> RoomId:
        state = make_room(store, room_id)
        step = engine.start(WF, state, now=1100)
        store.commit(step.state, step.events, expected_version=state.version)
        return state.room_id

    crashed, later, released = started("crashed"), started("later"), started("released")
    queued = make_room(store, "queued")
    store.replace(engine.queue(queued, now=1200).state, expected_version=queued.version)
    done = make_room(store, "done")
    store.acquire_lease(crashed, "w1", ttl_ms=100, now=0)
    store.acquire_lease(later, "w1", ttl_ms=300, now=0)
    store.acquire_lease(queued.room_id, "w1", ttl_ms=200, now=0)
    store.acquire_lease(done.room_id, "w1", ttl_ms=100, now=0)  # created, not running: no
    store.release_lease(store.acquire_lease(released, "w1", ttl_ms=100, now=0))
    assert store.expired_rooms(99) == []
    assert store.expired_rooms(1000) == ["crashed", "queued", "later"]
    assert store.expired_rooms(1000, limit=2) == ["crashed", "queued"]


def test_clock_ms_is_the_server_s_clock(store: PostgresStore) -> None:
    assert abs(store.clock_ms() - time.time() * 1000) < 60_000


# URLs and connections


def test_schemas_keep_deployments_apart(url: str, store: PostgresStore) -> None:
    make_room(store)
    other_url = postgres_url()
    try:
        other = PostgresStore(other_url)
        assert other.find(RoomId("r1")) is None
        assert other.list_rooms() == []
        other.close()
    finally:
        drop_postgres_schema(other_url)


def test_schema_names_and_ids_with_quotes_are_parameters_not_sql() -> None:
    hostile = f'or_test_{uuid.uuid4().hex[:8]}"; DROP TABLE x; --'
    url = postgres_url(hostile)
    try:
        store = PostgresStore(url)
        assert store.schema == hostile
        state = make_room(store, "r'); DELETE FROM rooms; --")
        assert store.get(state.room_id) == state
        assert store.count_rooms("r'") == 1
        store.close()
    finally:
        drop_postgres_schema(url)


def test_an_unreachable_server_is_backend_unavailable_naming_the_host_not_the_password() -> None:
    with pytest.raises(BackendUnavailableError) as caught:
        open_backend("postgresql://postgres:s3cretpw@127.0.0.1:1/test?connect_timeout=2")
    text = str(caught.value)
    assert "127.0.0.1:1" in text
    assert "s3cretpw" not in text and "s3cretpw" not in repr(caught.value.args)


def test_bad_url_options_are_config_errors_without_the_password() -> None:
    for bad in ("pool_max=0", "pool_timeout=soon", "schema=", "no_such_option=1"):
        with pytest.raises(BackendConfigError) as caught:
            open_backend(f"postgres://u:s3cretpw@127.0.0.1:5432/test?{bad}")
        assert "s3cretpw" not in str(caught.value)


# concurrency: the room's row lock orders every lease change


def test_concurrent_acquisitions_of_one_room_let_exactly_one_owner_in(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(4)]
    try:
        make_room(stores[0])
        won: list[object] = []
        refused: list[object] = []
        barrier = threading.Barrier(len(stores) * 2)

        def take(store: PostgresStore, owner: str) -> None:
            barrier.wait()
            try:
                won.append(store.acquire_lease(RoomId("r1"), owner, ttl_ms=60_000, now=0))
            except RoomLeasedError as exc:
                refused.append(exc)

        threads = [
            threading.Thread(target=take, args=(stores[i % len(stores)], f"w{i}"))
            for i in range(len(stores) * 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert len(won) == 1 and len(refused) == len(threads) - 1
        assert stores[0].find_lease(RoomId("r1")) == won[0]
    finally:
        for s in stores:
            s.close()


def test_concurrent_commits_at_one_version_let_exactly_one_in(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(4)]
    try:
        state = make_room(stores[0])
        outcomes: list[str] = []
        barrier = threading.Barrier(len(stores))

        def commit(store: PostgresStore, i: int) -> None:
            step = engine.start(WF, state, now=2000 + i)
            barrier.wait()
            try:
                store.acquire_and_commit(
                    step.state,
                    step.events,
                    expected_version=state.version,
                    owner=f"w{i}",
                    ttl_ms=60_000,
                    now=2000,
                    force=True,
                )
                outcomes.append("ok")
            except StaleRoomError:
                outcomes.append("stale")

        threads = [threading.Thread(target=commit, args=(s, i)) for i, s in enumerate(stores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(outcomes) == ["ok", "stale", "stale", "stale"]
        log = stores[0].read(state.room_id)
        assert [e.seq for e in log] == list(range(1, len(log) + 1))
        assert engine.fold(log) == stores[0].get(state.room_id)
    finally:
        for s in stores:
            s.close()


# the test suite's own rule: an unreachable Postgres skips, except under CI=true


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_an_unreachable_test_postgres_skips_locally_and_fails_under_ci(
    ci: str, outcome: str, tmp_path: Path
) -> None:
    test = tmp_path / "test_needs_pg.py"
    test.write_text(
        "from tests.conftest import make_store\n\n"
        "def test_it(tmp_path):\n"
        "    make_store('postgres', tmp_path)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CI": ci,
        "OPENROOMS_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            str(test),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert outcome in done.stdout, done.stdout + done.stderr


def test_db_check_reads_every_row_and_names_the_damaged_ones(
    url: str, store: PostgresStore
) -> None:
    state = make_room(store)
    assert cli(url, "db", "check").stdout.strip() == "ok"
    with raw(url) as conn:
        conn.execute(
            "INSERT INTO rooms (id, workflow_id, status, version, created_at, body) "
            "VALUES ('bad', 'wf', 'created', 1, 0, '{not json')"
        )
        conn.execute(
            "INSERT INTO events (room_id, first_seq, last_seq, body) VALUES (%s, 5, 5, '[]')",
            (state.room_id,),
        )
    checked = cli(url, "db", "check")
    assert checked.returncode == 1, checked.stderr
    lines = checked.stdout.splitlines()
    assert any("table rooms, row id='bad'" in line and "not valid JSON" in line for line in lines)
    assert any("first_seq=5: expected first_seq 2" in line for line in lines)
    assert any("first_seq=5: the body is not events 5..5" in line for line in lines)


def test_a_connection_the_server_dropped_is_replaced(url: str) -> None:
    """A server restart drops every pooled connection: a read is made again on a new one; a
    write fails once (it may have committed) and the next one works."""
    name = f"or_test_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{url}&application_name={name}")

    def drop_the_store_s_connections() -> None:  # this store's, and nobody else's
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            ).fetchall()
        assert dropped

    try:
        state = make_room(store)
        drop_the_store_s_connections()
        assert store.get(state.room_id) == state  # the read was made again
        drop_the_store_s_connections()
        step = engine.start(WF, state, now=2000)
        with pytest.raises(BackendUnavailableError):
            store.commit(step.state, step.events, expected_version=state.version)
        store.commit(step.state, step.events, expected_version=state.version)
        assert store.get(state.room_id) == step.state
    finally:
        store.close()
