"""The SQLite store opened read-only, beside a writer, and over rows damaged in the file."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms import (
    BackendConfigError,
    BackendError,
    CorruptDataError,
    CorruptRoomError,
    DatabaseNotFoundError,
    RoomNotFoundError,
    Runtime,
    open_runtime,
)
from openrooms.backends import SQLiteStore, open_backend
from openrooms.backends import sqlite as sqlite_backend
from openrooms.backends.sqlite import SCHEMA_VERSION
from openrooms.events import Event
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId
from openrooms.workflow import WorkflowBuilder

WF = (
    WorkflowBuilder("loop", variables={"i": 0})
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 2")
    .transition("inc", "done")
    .build()
)


def rooms_in(path: Path, *ids: str) -> None:
    """A database at *path* holding one completed room per id."""
    with open_runtime(f"sqlite:///{path}") as rt:
        for room_id in ids:
            rt.create_room(WF, room_id=room_id)
            rt.run(room_id)


def sql(path: Path, statement: str, *params: object) -> None:
    """Change the file behind the store's back, as damage would."""
    with sqlite3.connect(path) as db:
        db.execute(statement, params)
    db.close()


# --- read-only opening ------------------------------------------------------------------------


def test_read_only_of_a_missing_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "folder" / "rooms.db"
    with pytest.raises(DatabaseNotFoundError) as info:
        SQLiteStore(path, read_only=True)
    assert str(path) in str(info.value) and "--db" in str(info.value)
    assert isinstance(info.value, LookupError)
    assert not (tmp_path / "folder").exists()
    with pytest.raises(DatabaseNotFoundError):
        open_runtime(f"sqlite:///{path}", read_only=True)
    assert not (tmp_path / "folder").exists()


def test_read_only_of_a_file_without_our_tables_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(DatabaseNotFoundError, match="holds no OpenRooms tables"):
        SQLiteStore(empty, read_only=True)
    assert empty.read_bytes() == b""


def test_read_only_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    rooms_in(path, "a")
    sql(path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(BackendConfigError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStore(path, read_only=True)


def test_read_only_reads_everything_and_refuses_every_write(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    rooms_in(path, "a")
    before = path.read_bytes()
    store = open_backend(f"sqlite:///{path}", read_only=True)
    try:
        state = store.get(RoomId("a"))
        assert state.status.value == "completed"
        assert [s.room_id for s in store.list_rooms()] == ["a"]
        assert store.read(RoomId("a"))[-1].type.value == "ROOM_COMPLETED"
        assert store.get_workflow("loop").version == 1
        with pytest.raises(BackendError, match="opened read-only"):
            store.replace(state, expected_version=state.version)
        with pytest.raises(BackendError, match="opened read-only"):
            store.commit(state, [], expected_version=state.version)
        with pytest.raises(RoomNotFoundError) as info:
            store.get(RoomId("b"))
        assert str(info.value) == f"no room 'b' in {path}"
    finally:
        store.close()
    assert path.read_bytes() == before


def test_read_only_and_writer_openings_do_not_wait_for_a_held_write_lock(tmp_path: Path) -> None:
    """Another connection in the middle of a write transaction: opening and reading go on."""
    path = tmp_path / "rooms.db"
    rooms_in(path, "a")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE rooms SET status = 'running'")
    try:
        reader = SQLiteStore(path, read_only=True, busy_timeout_ms=50)
        assert reader.get(RoomId("a")).status.value == "completed"
        assert reader.check() == []
        reader.close()
        writer = SQLiteStore(path, busy_timeout_ms=50)  # the schema is current: no lock
        assert writer.get(RoomId("a")).status.value == "completed"
        writer.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# --- corrupt rows -----------------------------------------------------------------------------


def body_of(path: Path, table: str, where: str) -> object:
    with sqlite3.connect(path) as db:
        body = db.execute(f"SELECT body FROM {table} WHERE {where}").fetchone()[0]
    db.close()
    return json.loads(body)


def _without(key: str):
    def change(d: dict[str, object]) -> str:
        del d[key]
        return json.dumps(d)

    return change


def _with(key: str, value: object):
    def change(d: dict[str, object]) -> str:
        d[key] = value
        return json.dumps(d)

    return change


STATE_DAMAGE = {
    "bad-json": (lambda d: '{"room_id": "a", ', "the body is not valid JSON: Expecting"),
    "not-an-object": (lambda d: "[1, 2]", "expected an object, got a list"),
    "missing-key": (_without("status"), "missing key 'status'"),
    "wrong-type": (_with("steps", "many"), "'steps' should be a whole number, not a string"),
    "unknown-status": (_with("status", "zombie"), "unknown status 'zombie'"),
    "another-room": (_with("room_id", "b"), "the body is room 'b'"),
}


@pytest.mark.parametrize("damage", sorted(STATE_DAMAGE))
def test_a_corrupt_state_row_is_a_typed_error_and_the_other_rooms_stay_listable(
    tmp_path: Path, damage: str
) -> None:
    change, problem = STATE_DAMAGE[damage]
    path = tmp_path / "rooms.db"
    rooms_in(path, "a", "b")
    sql(path, "UPDATE rooms SET body = ? WHERE id = 'a'", change(body_of(path, "rooms", "id='a'")))
    store = SQLiteStore(path, read_only=True)
    try:
        with pytest.raises(CorruptRoomError) as info:
            store.get(RoomId("a"))
        error = info.value
        assert isinstance(error, BackendError)
        assert error.room_id == "a"
        assert f"{path}, table rooms, row id='a'" in str(error)
        assert problem in str(error) and "openrooms db check" in str(error)
        with pytest.raises(CorruptRoomError):
            store.list_rooms()
        seen: list[CorruptRoomError] = []
        assert [s.room_id for s in store.list_rooms(on_corrupt=seen.append)] == ["b"]
        assert [e.room_id for e in seen] == ["a"]
        assert store.get(RoomId("b")).status.value == "completed"
        assert [p for p in store.check() if problem in p and "row id='a'" in p]
    finally:
        store.close()


def _event(index: int, value: object):
    def change(rows: list[list[object]]) -> str:
        rows[0][index] = value
        return json.dumps(rows)

    return change


EVENT_DAMAGE = {
    "bad-json": (lambda rows: "[[1, ", "the body is not valid JSON"),
    "not-an-array": (lambda rows: "{}", "the body is a JSON dict, not an array"),
    "short-row": (lambda rows: json.dumps([rows[0][:5]]), "expected an array of 8 values"),
    "unknown-type": (_event(1, "ROOM_EXPLODED"), "event 1: unknown event type 'ROOM_EXPLODED'"),
    "unknown-level": (_event(2, "LOUD"), "event 1: unknown level 'LOUD'"),
    "type-not-text": (_event(1, ["a"]), "event 1: 'type' should be an event type, not a list"),
    "data-not-object": (_event(5, [1]), "event 1: 'data' should be an object, not a list"),
    "bad-error": (_event(6, ["only", "two"]), "event 1: error: expected an array of 3"),
}


@pytest.mark.parametrize("damage", sorted(EVENT_DAMAGE))
def test_a_corrupt_events_row_is_a_typed_error_naming_room_and_row(
    tmp_path: Path, damage: str
) -> None:
    change, problem = EVENT_DAMAGE[damage]
    path = tmp_path / "rooms.db"
    rooms_in(path, "a", "b")
    first = "room_id='a' AND first_seq=1"
    rows = body_of(path, "events", first)
    sql(path, f"UPDATE events SET body = ? WHERE {first}", change(rows))
    store = SQLiteStore(path, read_only=True)
    try:
        with pytest.raises(CorruptRoomError) as info:
            store.read(RoomId("a"))
        assert info.value.room_id == "a"
        assert f"{path}, table events, row room_id='a' first_seq=1" in str(info.value)
        assert problem in str(info.value)
        assert store.get(RoomId("a")).status.value == "completed"  # the state is sound
        assert store.read(RoomId("b"))  # and so is the other room's log
        assert [p for p in store.check() if problem in p]
    finally:
        store.close()


def test_a_corrupt_workflow_row_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    rooms_in(path, "a")
    sql(path, "UPDATE workflows SET body = '\"just a string\"'")
    store = SQLiteStore(path, read_only=True)
    try:
        with pytest.raises(CorruptDataError, match="table workflows, row id='loop' version=1"):
            store.get_workflow("loop")
        with pytest.raises(CorruptDataError, match="the body is a JSON str, not an object"):
            store.list_workflows()
        assert store.check() == [
            f"{path}, table workflows, row id='loop' version=1: "
            "the body is a JSON str, not an object"
        ]
    finally:
        store.close()


# --- check ------------------------------------------------------------------------------------


def test_check_of_a_sound_file_is_empty_and_finds_gaps_and_orphans(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    rooms_in(path, "a", "b")
    store = SQLiteStore(path, read_only=True)
    assert store.check() == []
    store.close()
    sql(path, "DELETE FROM events WHERE room_id = 'a' AND first_seq = 1")
    sql(path, "DELETE FROM rooms WHERE id = 'b'")
    store = SQLiteStore(path, read_only=True)
    problems = store.check()
    store.close()
    assert any("row room_id='a'" in p and "expected first_seq 1" in p for p in problems)
    assert any(
        "row room_id='b' first_seq=1: events of a room that has no rooms row" in p for p in problems
    )


def test_check_reports_what_sqlites_integrity_check_finds(tmp_path: Path) -> None:
    """An index whose definition no longer matches its entries, as a damaged file has."""
    path = tmp_path / "rooms.db"
    rooms_in(path, "a", "b")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA writable_schema = ON")
    db.execute(
        "UPDATE sqlite_schema SET sql = replace(sql, '(created_at DESC, id DESC)', "
        "'(id DESC, created_at DESC)') WHERE name = 'rooms_by_created'"
    )
    db.close()
    store = SQLiteStore(path, read_only=True)
    try:
        problems = store.check()
    finally:
        store.close()
    assert f"{path}: row 1 missing from index rooms_by_created" in problems


def test_check_reports_a_page_too_damaged_to_check_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    rooms_in(path, "a", "b")
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'rooms_by_created'"
        ).fetchone()
    db.close()
    assert not Path(f"{path}-wal").exists()  # every page is in the main file
    with path.open("r+b") as f:  # scribble over the index's root page
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
    store = SQLiteStore(path, read_only=True)
    try:
        problems = store.check()
    finally:
        store.close()
    assert (
        f"{path}: the integrity check stopped: DatabaseError: database disk image is "
        "malformed" in problems
    )


# --- serde's decoders -------------------------------------------------------------------------


def test_state_and_event_decoders_raise_typed_errors() -> None:
    from openrooms import serde

    with pytest.raises(CorruptRoomError, match="room state: missing key 'name'"):
        serde.state_from_dict({"room_id": "r"})
    with pytest.raises(CorruptRoomError) as info:
        serde.event_from_dict(
            {"room_id": "r", "seq": 4, "type": "NOPE", "level": "INFO", "timestamp": 1}
        )
    assert info.value.room_id == "r"
    assert "event 4: unknown event type 'NOPE'" in str(info.value)
    with pytest.raises(CorruptRoomError, match="expected an object, got a string"):
        serde.event_from_dict("nope")  # type: ignore[arg-type]


# --- schema version 2 -> 3 ----------------------------------------------------------------------

TIMED = (
    WorkflowBuilder("timed")
    .wait("ask", timeout_s=60)
    .end("done")
    .end("late", status="failed")
    .transition("ask", "done")
    .transition("ask", "late", on="timeout")
    .build()
)

V2_SCHEMA = """
CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    lease_token INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX rooms_by_created ON rooms (created_at DESC, id DESC);
CREATE TABLE events (
    room_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room_id, first_seq)
) WITHOUT ROWID;
CREATE TABLE leases (
    room_id TEXT PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE workflows (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);
"""

ASKS = (
    WorkflowBuilder("asks", variables={"n": 0, "big": list(range(50))})
    .set("inc", {"n": "{{ vars.n + 1 }}"})
    .wait("ask", prompt="go on?", timeout_s=3600)
    .end("done")
    .transitions(("inc", "ask"), ("ask", "done"))
    .transition("ask", "done", on="timeout")
    .build()
)


def version_2_file(path: Path) -> dict[str, Any]:
    """A file as schema version 2 wrote it (the table layout of 5ea0db9, whole states in
    ``body``, compact JSON): one completed and one waiting room. Returns their states."""
    from openrooms import serde
    from openrooms.backends import MemoryStore
    from openrooms.backends.sqlite import _batch, _dumps
    from openrooms.runtime import workflow_digest

    memory = MemoryStore()
    rt = Runtime(memory, memory)
    rt.run(rt.create_room(WF, room_id="done").id)
    rt.run(rt.create_room(ASKS, room_id="waits").id)
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(V2_SCHEMA)
    states = {}
    for wf in (WF, ASKS):
        definition = wf.to_dict()
        db.execute(
            "INSERT INTO workflows VALUES (?, ?, ?, ?, ?)",
            (wf.id, wf.version, workflow_digest(definition), _dumps(definition), 1),
        )
    for room_id in ("done", "waits"):
        state = memory.get(RoomId(room_id))
        states[room_id] = state
        db.execute(
            "INSERT INTO rooms VALUES (?, ?, ?, ?, 0, ?, ?)",
            (
                room_id,
                state.workflow_id,
                state.status.value,
                state.version,
                state.created_at,
                _dumps(serde.state_to_dict(state)),
            ),
        )
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", _batch(memory.read(RoomId(room_id))))
    db.execute("PRAGMA user_version = 2")
    db.close()
    return states


def test_a_version_2_file_is_migrated_when_opened_to_write(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    before = version_2_file(path)
    reader = SQLiteStore(path, read_only=True)  # read as it is: nothing is written
    try:
        assert reader.get(RoomId("waits")) == before["waits"]
        assert sorted(s.room_id for s in reader.list_rooms()) == ["done", "waits"]
        assert reader.check() == []
        assert reader._schema_version() == 2
    finally:
        reader.close()
    store = SQLiteStore(path)
    try:
        assert store._schema_version() == SCHEMA_VERSION == 5
        for room_id, state in before.items():
            assert store.get(RoomId(room_id)) == state
        row = store._db.execute(
            "SELECT current_node, steps, wake_at, variables FROM rooms WHERE id = 'waits'"
        ).fetchone()
        waiting = before["waits"]
        # the hot columns come from the body; the containers stay there until the next write
        assert row == ("ask", waiting.steps, waiting.wake_at, None)
        assert store.check() == []
    finally:
        store.close()
    with open_runtime(f"sqlite:///{path}") as rt:
        done = rt.send_input("waits", {"ok": True})
        assert done.status.value == "completed"
        assert rt.replay("waits") == rt.get_room("waits") == done
        assert rt.get_room("done") == before["done"]
    db = sqlite3.connect(path)
    body, variables = db.execute("SELECT body, variables FROM rooms WHERE id = 'waits'").fetchone()
    db.close()
    assert "variables" not in json.loads(body)  # moved out on its first write
    assert json.loads(variables) == dict(done.variables)


def test_a_step_rewrites_only_the_columns_it_changed(tmp_path: Path) -> None:
    """A wait's input (no variable changes: the node has no output) leaves a large
    ``variables`` column alone; a changed one is rewritten. Whatever was skipped, a reader
    with no memory of the writes reads every state as it was committed."""
    path = tmp_path / "rooms.db"
    statements: list[str] = []
    store = SQLiteStore(path)
    store._db.set_trace_callback(statements.append)
    # the runner's commits go through the connection that never waits for a lock
    store._nowait_connection().set_trace_callback(statements.append)
    rt = Runtime(store, store)
    committed: list[RoomState] = []

    def check(event: Event) -> None:
        state = store.get(RoomId("r"))
        if state.version == event.seq:  # the last event of a commit: compare with a reader
            reader = SQLiteStore(path, read_only=True)
            assert reader.get(RoomId("r")) == state == rt.replay("r")
            reader.close()
            committed.append(state)

    rt.run(rt.create_room(ASKS, room_id="r").id, on_event=check)
    statements.clear()
    rt.run("r", on_event=check)  # nothing to do: it waits
    rt.send_input("r", {"ok": True})
    updates = [s for s in statements if s.startswith("UPDATE rooms SET status")]
    assert updates and all("variables" not in s for s in updates)
    assert all("visits" in s for s in updates)  # input completes the wait, enters the end
    # a room another store moved on meanwhile: this store's memory of it is stale, unused
    rt.run(rt.create_room(ASKS, room_id="r2", variables={"n": 5}).id)
    other_store = SQLiteStore(path)
    other = Runtime(other_store, other_store)
    other.send_input("r2", {"ok": True})
    assert rt.get_room("r2").status.value == "completed"
    reader = SQLiteStore(path, read_only=True)
    assert reader.get(RoomId("r")) == rt.get_room("r") == rt.replay("r")
    assert reader.get(RoomId("r2")) == rt.get_room("r2") == rt.replay("r2")
    reader.close()
    other.close()
    store.close()
    assert committed


def test_a_version_2_file_is_migrated_with_every_room_due_as_before(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    before = version_2_file(path)
    waiting = before["waits"]
    assert waiting.wake_at is not None
    sql(path, "INSERT INTO rooms VALUES ('damaged', 'asks', 'waiting', 3, 0, 1, '{not json')")
    reader = SQLiteStore(path, read_only=True)  # a reader reads it and migrates nothing
    listed = reader.list_rooms(on_corrupt=lambda e: None)
    reader.close()
    assert {s.room_id for s in listed} == {"done", "waits"}
    store = SQLiteStore(path)
    try:
        assert store.due_rooms(waiting.wake_at) == ["waits"]
        assert store.due_rooms(waiting.wake_at - 1) == []
        assert store.next_wake_at() == waiting.wake_at
        # every backfilled due_at agrees with its state; only the damaged body is reported
        damaged = [p for p in store.check() if "row id=" in p]
        assert len(damaged) == 1 and "row id='damaged'" in damaged[0], damaged
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM rooms WHERE due_at IS NOT NULL AND due_at <= 5"
        ).fetchall()
    db.close()
    assert "rooms_by_due" in str(plan)


def test_check_reports_a_due_at_that_disagrees_with_the_state(tmp_path: Path) -> None:
    path = tmp_path / "rooms.db"
    with open_runtime(f"sqlite:///{path}") as rt:
        waiting = rt.run(rt.create_room(TIMED, room_id="waiting").id)
    sql(path, "UPDATE rooms SET due_at = 5 WHERE id = 'waiting'")
    store = SQLiteStore(path, read_only=True)
    problems = store.check()
    store.close()
    assert problems == [
        f"{path}, table rooms, row id='waiting': due_at is 5, its state says "
        f"{waiting.wake_at}; a worker would wake it at the wrong time"
    ]


def version_3_file(path: Path) -> None:
    """A file as version 3 wrote it: leases without a recovery count, one lease held (by
    a runner that died) and one released."""
    rooms_in(path, "held", "free")
    store = SQLiteStore(path)
    store.acquire_lease(RoomId("held"), "dead-runner", ttl_ms=100, now=1000)
    store.release_lease(store.acquire_lease(RoomId("free"), "w", ttl_ms=100, now=1000))
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX leases_held")
        db.execute("ALTER TABLE leases DROP COLUMN recoveries")
        db.execute("PRAGMA user_version = 3")
    db.close()


def test_a_version_3_file_is_read_as_it_is_and_migrated_when_opened_to_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v3.db"
    version_3_file(path)
    reader = SQLiteStore(path, read_only=True)
    try:
        held = reader.find_lease(RoomId("held"))
        assert held is not None and (held.owner, held.recoveries) == ("dead-runner", 0)
        assert reader.find_lease(RoomId("free")) is None
        assert reader._schema_version() == 3
    finally:
        reader.close()
    store = SQLiteStore(path)
    try:
        assert store._schema_version() == SCHEMA_VERSION == 5
        # the dead runner's lease was never released: taking it over counts a recovery
        taken = store.acquire_lease(RoomId("held"), "w2", ttl_ms=100, now=5000)
        assert (taken.token, taken.recoveries) == (held.token + 1, 1)
        assert store.acquire_lease(RoomId("free"), "w2", ttl_ms=100, now=5000).recoveries == 0
        assert store.check() == []
    finally:
        store.close()


# --- schema version 4 -> 5 ----------------------------------------------------------------------


def version_4_file(path: Path) -> RoomState:
    """A file as schema version 4 left it (no index by status or workflow), holding a room
    whose lease was taken over once (recoveries 1). Returns the room."""
    rooms_in(path, "loop-1")
    store = SQLiteStore(path)
    try:
        state = store.get(RoomId("loop-1"))
        store.acquire_lease(state.room_id, "w1", ttl_ms=10, now=0)
        store.acquire_lease(state.room_id, "w2", ttl_ms=10, now=100)  # expired, unreleased
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX rooms_by_status")
        db.execute("DROP INDEX rooms_by_workflow")
        db.execute("PRAGMA user_version = 4")
    db.close()
    return state


def indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    db.close()
    return {name for (name,) in rows}


def test_a_version_4_file_gets_the_listing_indexes_when_opened_to_write(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    state = version_4_file(path)
    reader = SQLiteStore(path, read_only=True)  # read as it is: nothing is written
    try:
        assert reader._schema_version() == 4
        assert reader.list_rooms(query=state.room_id[:2]) == [state]
        assert reader.status_counts()[state.status.value] == 1
        lease = reader.find_lease(state.room_id)
        assert lease is not None and lease.recoveries == 1  # version 4 has the column
    finally:
        reader.close()
    assert not {"rooms_by_status", "rooms_by_workflow"} & indexes(path)
    store = SQLiteStore(path)
    try:
        assert store._schema_version() == SCHEMA_VERSION == 5
        assert store.list_rooms(status=state.status) == [state]
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN SELECT status, count(*) FROM rooms GROUP BY status"
        ).fetchall()
        assert "rooms_by_status" in str(plan)
        assert store.check() == []
    finally:
        store.close()
    assert {"rooms_by_status", "rooms_by_workflow"} <= indexes(path)


_texts = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
_ints = st.integers(min_value=-(2**63), max_value=2**63)


@given(
    texts=st.tuples(_texts, _texts, _texts),
    node=st.none() | _texts,
    reason=st.none() | _texts,
    wake_at=st.none() | _ints | st.booleans() | st.floats(allow_nan=False, allow_infinity=False),
    numbers=st.lists(_ints, min_size=7, max_size=7),
    odd=st.none() | st.tuples(st.integers(0, 6), st.booleans() | st.floats(allow_nan=False)),
    status=st.sampled_from(list(RoomStatus)),
)
def test_a_rooms_row_body_is_written_as_the_json_encoder_writes_it(
    texts: tuple[str, str, str],
    node: str | None,
    reason: str | None,
    wake_at: Any,
    numbers: list[Any],
    odd: tuple[int, Any] | None,
    status: RoomStatus,
) -> None:
    """The body written by hand on the hot path (``_scalars_json``) is the encoder's text,
    byte for byte, and whatever the encoder refuses is still refused."""
    room_id, name, workflow_id = texts
    if odd is not None:  # a number that is not an int
        numbers[odd[0]] = odd[1]
    version, attempt, steps, created, updated, seq, node_seq = numbers
    state = RoomState(
        room_id=RoomId(room_id),
        name=name,
        workflow_id=workflow_id,
        workflow_version=version,
        status=status,
        current_node=node,
        variables={},
        attempt=attempt,
        visits={},
        steps=steps,
        wake_at=wake_at,
        reason=reason,
        created_at=created,
        updated_at=updated,
        version=seq,
        node_seq=node_seq,
    )
    try:
        expected = sqlite_backend._dumps(sqlite_backend._scalars(state))
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            sqlite_backend._scalars_json(state)
        return
    assert sqlite_backend._scalars_json(state) == expected


def test_the_hot_columns_of_a_rooms_row_follow_its_state_through_every_status(
    tmp_path: Path,
) -> None:
    """A step's UPDATE leaves ``status`` and ``due_at`` out when this store last wrote the
    same values (their indexes then keep their pages): after every commit the row's columns
    still say what its state says, through a retry's backoff, a wait and the end."""
    from openrooms import ToolRegistry, tool
    from openrooms.backends.base import due_at

    registry = ToolRegistry()
    calls: list[int] = []

    @tool(name="flaky_once", registry=registry)
    def flaky_once() -> int:
        """Fails the first time."""
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("once")
        return len(calls)

    wf = (
        WorkflowBuilder("hot_columns", variables={"n": 0})
        .tool("call", "flaky_once", {}, output="n", retry={"max_attempts": 2, "backoff_s": 0.001})
        .tool("again", "flaky_once", {}, output="n")
        .wait("ask", timeout_s=3600)
        .end("done")
        .transitions(("call", "again"), ("again", "ask"), ("ask", "done"))
        .transition("ask", "done", on="timeout")
        .build(tools=registry)
    )
    db = tmp_path / "rooms.db"
    store = SQLiteStore(db)
    rt = Runtime(store, store, tools=registry)
    reader = sqlite3.connect(db)
    seen: list[tuple[str, int | None]] = []

    def check(_event: Event) -> None:
        state = rt.get_room(room.id)
        row = reader.execute("SELECT status, due_at FROM rooms WHERE id = ?", (room.id,))
        status, due = row.fetchone()
        assert (status, due) == (state.status.value, due_at(state))
        seen.append((status, due))

    room = rt.create_room(wf)
    waiting = rt.run(room.id, on_event=check)
    assert waiting.status is RoomStatus.WAITING
    done = rt.send_input(room.id, {"ok": True}, on_event=check)
    assert done.status is RoomStatus.COMPLETED
    statuses = {s for s, _ in seen}
    assert {"running", "waiting", "completed"} <= statuses
    assert any(d is not None for s, d in seen if s == "running")  # the retry's backoff
    assert any(d is not None for s, d in seen if s == "waiting")  # the wait's timeout
    assert seen[-1] == ("completed", None)
    reader.close()
    rt.close()
