"""The embedded default: state, leases, workflows and logs in one SQLite file.

WAL mode, ``BEGIN IMMEDIATE`` for every write and a busy timeout, so several
processes can share one file. A step's events and state commit in one transaction.
``synchronous`` defaults to ``FULL`` (a committed step survives power loss); pass
``?synchronous=normal`` in the URL to trade that for speed (it still survives a crash
of the process).

``read_only=True`` opens an existing file with ``mode=ro``: no folder or file is created,
no schema is written and no lock is taken, so a reader works beside a writer stopped in
the middle of a transaction (WAL readers see the last commit) and on a file it may not
write. Opening to write runs the schema set-up only when the file's ``user_version`` is
behind, so it needs no write lock either when the schema is current.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from openrooms import serde
from openrooms.backends.base import Lease, LeasingStore, StoredWorkflow, due_at, zero_counts
from openrooms.backends.selection import select_events
from openrooms.errors import (
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    CorruptDataError,
    CorruptRoomError,
    DatabaseNotFoundError,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    StaleRoomError,
    UnstorableValueError,
    WorkflowConflictError,
    WorkflowNotFoundError,
    WouldBlockError,
)
from openrooms.events import Event, EventType, Level
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId

__all__ = ["SQLiteStore"]

SCHEMA_VERSION: Final = 5

# rooms_by_status and rooms_by_workflow (schema version 5, as Postgres has them) serve a
# listing filtered by status or workflow (a dashboard's "failed" page among 10,000 rooms reads
# its rooms, not every room) and status_counts (a GROUP BY over the index, no row read: 0.3
# ms for 10,000 rooms, against 1.5 ms scanning the table). A step's UPDATE sets status only
# when it changed since this store's last write of the room (see _update_statement): set to
# the same value, SQLite still rewrites the index entry, a WAL page more per commit (4.2
# frames a tool step's commit against 3.3). workflow_id is never updated.
#
# The current fencing token is mirrored in rooms.lease_token, so a step's save checks it in
# the same UPDATE that compares the version. rooms.due_at is
# base.due_at(state) (a timer's wake_at, a queued room's queue time), NULL for most rooms:
# its partial index holds only the rooms a worker may have to wake (due_rooms).
#
# A room's state is split so that a step writes only what changed (schema version 3):
# `body` holds the scalar fields (a few hundred bytes, whatever the room's size), the hot
# columns status, version, current_node, steps and wake_at mirror some of them for queries,
# and variables, memory, usage and visits each have a JSON column, rewritten only when the
# step changed it. A NULL container column means "in the body": how version 2 kept it, so
# a migrated file's rows move their containers out on their next write.
#
# A leases row stays when its lease is released (owner NULL, expires_at 0), so the next token
# is higher still; `recoveries` counts takeovers of leases never released (base.Lease), and
# the partial index leases_held holds only the leases not released: expired_rooms reads it.
#
# log_fences holds the log's fence of a room (EventLog.fence) where this file is a split
# runtime's event log; where it holds the state too, rooms.lease_token fences the commit. It
# is created on first use too (_FENCES), so files made before it need no new schema version.
#
# One events row per commit, not per event: a step writes two to four events, and each extra
# B-tree insert cost more than the JSON of the whole batch (bench/engine.py). A row holds the
# events first_seq..last_seq as a JSON array of compact rows (see _event_row); reads explode
# the batches and filter by seq, level and type in Python.
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    lease_token INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    due_at INTEGER,
    current_node TEXT,
    steps INTEGER,
    wake_at INTEGER,
    variables TEXT,
    memory TEXT,
    usage TEXT,
    visits TEXT
);
CREATE INDEX IF NOT EXISTS rooms_by_created ON rooms (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS rooms_by_due ON rooms (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS rooms_by_status ON rooms (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS rooms_by_workflow ON rooms (workflow_id, created_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS events (
    room_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (room_id, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    room_id TEXT PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    recoveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS leases_held ON leases (expires_at, room_id) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS log_fences (
    room_id TEXT PRIMARY KEY,
    token INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (id, version)
);
"""

# Version 2 -> 3 (columns appended, so a migrated table is the same as a new one): the hot
# columns and rooms.due_at filled from the body (a body that is not JSON gets NULL: it is
# reported by `openrooms db check`, not here); the containers stay in the body until the
# row is next written.
_MIGRATE_2_TO_3: Final = """
ALTER TABLE rooms ADD COLUMN due_at INTEGER;
ALTER TABLE rooms ADD COLUMN current_node TEXT;
ALTER TABLE rooms ADD COLUMN steps INTEGER;
ALTER TABLE rooms ADD COLUMN wake_at INTEGER;
ALTER TABLE rooms ADD COLUMN variables TEXT;
ALTER TABLE rooms ADD COLUMN memory TEXT;
ALTER TABLE rooms ADD COLUMN usage TEXT;
ALTER TABLE rooms ADD COLUMN visits TEXT;
UPDATE rooms SET current_node = json_extract(body, '$.current_node'),
    steps = json_extract(body, '$.steps'), wake_at = json_extract(body, '$.wake_at')
    WHERE json_valid(body) AND json_type(body) = 'object';
UPDATE rooms SET due_at = CASE
    WHEN NOT json_valid(body) THEN NULL
    WHEN status IN ('running', 'waiting') AND json_type(body, '$.wake_at') = 'integer'
        THEN json_extract(body, '$.wake_at')
    WHEN status = 'queued' AND json_type(body, '$.updated_at') = 'integer'
        THEN json_extract(body, '$.updated_at')
END;
CREATE INDEX IF NOT EXISTS rooms_by_due ON rooms (due_at, id) WHERE due_at IS NOT NULL;
"""

# Version 3 -> 4: the recovery count of a lease (base.Lease.recoveries); a lease held while
# the file is migrated counts from 0.
_MIGRATE_3_TO_4: Final = """
ALTER TABLE leases ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS leases_held ON leases (expires_at, room_id) WHERE owner IS NOT NULL;
"""

# Version 4 -> 5: the indexes a dashboard's filtered listings and status counts read.
_MIGRATE_4_TO_5: Final = """
CREATE INDEX IF NOT EXISTS rooms_by_status ON rooms (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS rooms_by_workflow ON rooms (workflow_id, created_at DESC, id DESC);
"""

_MIGRATES_FROM: Final = (2, 3, 4)

_MIGRATIONS: Final = {
    0: (_SCHEMA,),
    2: (_MIGRATE_2_TO_3, _MIGRATE_3_TO_4, _MIGRATE_4_TO_5),
    3: (_MIGRATE_3_TO_4, _MIGRATE_4_TO_5),
    4: (_MIGRATE_4_TO_5,),
}
"""The scripts that bring a file of each version (0: new) to SCHEMA_VERSION, in order."""

_LEASE_COLUMNS: Final = "owner, token, expires_at, recoveries"
_LEASE_COLUMNS_V3: Final = "owner, token, expires_at, 0"
"""... in a file of version 2 or 3 opened read-only (not migrated): no recovery count."""

_CONTAINERS: Final = ("variables", "memory", "usage", "visits")
"""RoomState fields kept in their own columns, written only when a step changed them."""

_ROOM_COLUMNS: Final = "id, body, variables, memory, usage, visits"
"""What a state is read from."""
_ROOM_COLUMNS_V2: Final = "id, body, NULL, NULL, NULL, NULL"
"""... in a version 2 file opened read-only (not migrated): the body holds it all."""

_KEEP: Final = 4096
"""Rooms whose last written containers a store remembers (to skip unchanged ones)."""

_T = TypeVar("_T")

_SYNC_MODES: Final = ("full", "normal", "off", "extra")

_FENCES: Final = (
    "CREATE TABLE IF NOT EXISTS log_fences (room_id TEXT PRIMARY KEY, token INTEGER NOT NULL) "
    "WITHOUT ROWID"
)


def _prefix_range(column: str, prefix: str) -> tuple[str, list[Any]]:
    """SQL and parameters for "*column* starts with *prefix*": case-sensitive and literal
    (LIKE is case-insensitive for ASCII in SQLite and treats ``%`` and ``_`` as wildcards),
    a range an index on *column* can serve: from *prefix* up to the next string after it
    (TEXT compares in code-point order). *column* is one of ours, never user input."""
    last = prefix[-1]
    if last < "\U0010ffff" and not "\ud7ff" <= last < "\ue000":
        return f"({column} >= ? AND {column} < ?)", [prefix, prefix[:-1] + chr(ord(last) + 1)]
    # no next code point (or a surrogate would be next): compare the first characters
    return f"substr({column}, 1, ?) = ?", [len(prefix), prefix]


def _room_filters(
    status: RoomStatus | None, workflow_id: str | None, query: str | None
) -> tuple[list[str], list[Any]]:
    """WHERE clauses (to AND) and their parameters for the filters of
    :meth:`SQLiteStore.list_rooms` and :meth:`SQLiteStore.status_counts`."""
    where: list[str] = []
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(status.value)
    if workflow_id is not None:
        where.append("workflow_id = ?")
        params.append(workflow_id)
    if query:
        by_id, id_params = _prefix_range("id", query)
        by_workflow, workflow_params = _prefix_range("workflow_id", query)
        where.append(f"({by_id} OR {by_workflow})")
        params += id_params + workflow_params
    return where, params


def _is_busy(exc: BaseException | None) -> bool:
    """Whether a sqlite3 error says another connection holds a lock (SQLITE_BUSY/LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    """Re-raise sqlite3 failures as OpenRooms errors, keeping the original as __cause__."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise BackendUnavailableError("sqlite", str(exc)) from exc
    except sqlite3.DatabaseError as exc:
        raise BackendUnavailableError("sqlite", f"{type(exc).__name__}: {exc}") from exc
    except UnicodeEncodeError as exc:  # SQLite keeps UTF-8: a lone surrogate cannot be sent
        bad = exc.object[exc.start : exc.start + 1]
        raise UnstorableValueError(
            "a value for the database",
            "$",
            f"is a string with a lone surrogate ({bad!a}), which is not valid Unicode text",
        ) from None


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _compact_encoder() -> Callable[[object], str]:
    """Compact, NaN-refusing JSON; the C encoder built once rather than on every call.

    ``JSONEncoder.encode`` builds a fresh C encoder per call, a third of the cost of
    encoding a step's state; reusing one is byte-for-byte the same output.
    """
    slow = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the _json accelerator
        return slow
    fast = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    join = "".join

    def dumps(value: object) -> str:
        return join(fast(value, 0))

    return dumps


_dumps = _compact_encoder()


def _workflow_from_row(where: str, row: Sequence[Any]) -> StoredWorkflow:
    """A ``workflows`` row (id, version, digest, JSON body, created_at) of the database
    *where* names, as a StoredWorkflow (the SQL stores' one reading of it).

    Raises:
        CorruptDataError: the body is not a JSON object.
    """
    try:
        definition = _json(row[3])
        if not isinstance(definition, dict):
            raise ValueError(f"the body is a JSON {type(definition).__name__}, not an object")
    except ValueError as exc:
        at = f"{where}, table workflows, row id={row[0]!r} version={row[1]}"
        raise CorruptDataError(at, str(exc)) from None
    return StoredWorkflow(row[0], row[1], row[2], definition, row[4])


_INSERT_EVENTS: Final = (
    "INSERT INTO events (room_id, first_seq, last_seq, body) VALUES (?, ?, ?, ?)"
)


def _batch(events: Sequence[Event]) -> tuple[str, int, int, str]:
    """The one row a commit's events are stored in."""
    return (events[0].room_id, events[0].seq, events[-1].seq, _dumps(_event_rows(events)))


def _event_rows(events: Iterable[Event]) -> list[list[Any]]:
    """Events without their room id, as JSON arrays: the log's storage format (one
    comprehension: a call per event costs more than the row)."""
    return [
        [
            e.seq,
            e.type,
            e.level,
            e.timestamp,
            e.node,
            e.data,
            None if (err := e.error) is None else [err.type, err.message, err.traceback],
            e.duration_ms,
        ]
        for e in events
    ]


def _event_row(e: Event) -> list[Any]:
    """An event without its room id, as a JSON array (see :func:`_event_rows`)."""
    return _event_rows((e,))[0]


_TYPES: Final = {t.value: t for t in EventType}
_LEVELS: Final = {lv.value: lv for lv in Level}


def _event_from_row(room_id: RoomId, row: Any) -> Event:
    """The inverse of :func:`_event_row`; CorruptRoomError (``where`` = ``event``) if *row*
    is not one.

    Rows as written take the fast path; anything else goes through serde's decoder, which
    accepts what it can and names what is wrong.
    """
    if type(row) is list and len(row) == 8:
        seq, type_, level, timestamp, node, data, err, duration_ms = row
        if (
            type(seq) is int
            and type(timestamp) is int
            and type(data) is dict
            and (node is None or type(node) is str)
            and (duration_ms is None or type(duration_ms) in (int, float))
            and type(type_) is str
            and type_ in _TYPES
            and type(level) is str
            and level in _LEVELS
            and err is None
        ):
            return Event(
                room_id=room_id,
                seq=seq,
                type=_TYPES[type_],
                level=_LEVELS[level],
                timestamp=timestamp,
                node=node,
                data=data,
                duration_ms=duration_ms,
            )
    return _checked_event_from_row(room_id, row)


def _checked_event_from_row(room_id: RoomId, row: Any) -> Event:
    if type(row) is not list or len(row) != 8:
        raise CorruptRoomError(room_id, "event", "expected an array of 8 values")
    seq, type_, level, timestamp, node, data, err, duration_ms = row
    if err is not None:
        if type(err) is not list or len(err) != 3:
            raise CorruptRoomError(room_id, f"event {seq}", "error: expected an array of 3")
        err = {"type": err[0], "message": err[1], "traceback": err[2]}
    return serde.event_from_dict(
        {
            "room_id": room_id,
            "seq": seq,
            "type": type_,
            "level": level,
            "timestamp": timestamp,
            "node": node,
            "data": data,
            "error": err,
            "duration_ms": duration_ms,
        }
    )


@functools.cache
def _update_statement(changed: int, fenced: bool, hot: int = 0) -> str:
    """The UPDATE of a step writing the containers whose bits are set in *changed* (bit
    1 + their index in _CONTAINERS), checking the lease token if *fenced*; built once.

    *hot* says how the indexed hot columns are written: ``status`` left as it is (bit 1)
    and ``due_at`` too (bit 2) when this store last wrote them with the same values (an
    indexed column set, even to its value, rewrites its index entry: a page more in the
    WAL each step); ``due_at`` (bit 4) and ``wake_at`` (bit 8) as NULL literals, not
    parameters (sqlite3 binds a None only after asking for an adapter, which raises and
    formats an AttributeError inside)."""
    sets = "" if hot & 1 else "status = ?, "
    sets += "version = ?, body = ?, "
    if not hot & 2:
        sets += "due_at = NULL, " if hot & 4 else "due_at = ?, "
    sets += "current_node = ?, steps = ?, "
    sets += "wake_at = NULL" if hot & 8 else "wake_at = ?"
    for bit, name in enumerate(_CONTAINERS, 1):
        if changed & (1 << bit):
            sets += f", {name} = ?"
    # S608: the statement is built from our column names only; values are parameters
    sql = f"UPDATE rooms SET {sets} WHERE id = ? AND version = ?"  # noqa: S608
    return sql + " AND lease_token = ?" if fenced else sql


def _scalars(state: RoomState) -> dict[str, Any]:
    """What a rooms row's body holds: the state without its containers (see _CONTAINERS)."""
    return {
        "room_id": state.room_id,
        "name": state.name,
        "workflow_id": state.workflow_id,
        "workflow_version": state.workflow_version,
        "status": state.status.value,
        "current_node": state.current_node,
        "attempt": state.attempt,
        "steps": state.steps,
        "wake_at": state.wake_at,
        "reason": state.reason,
        "created_at": state.created_at,
        "updated_at": state.updated_at,
        "version": state.version,
        "node_seq": state.node_seq,
    }


_text: Final = json.encoder.encode_basestring  # the one _dumps uses: the same bytes


def _scalars_json(state: RoomState) -> str:
    """``_dumps(_scalars(state))``, written directly: the same text in a fifth of the time
    (once per step). A state whose numbers are not all ``int`` goes the general way."""
    version, attempt, steps = state.workflow_version, state.attempt, state.steps
    created, updated, seq, node_seq = (
        state.created_at,
        state.updated_at,
        state.version,
        state.node_seq,
    )
    wake_at, node, reason = state.wake_at, state.current_node, state.reason
    if not (
        type(version) is int
        and type(attempt) is int
        and type(steps) is int
        and type(created) is int
        and type(updated) is int
        and type(seq) is int
        and type(node_seq) is int
        and (wake_at is None or type(wake_at) is int)
    ):
        return _dumps(_scalars(state))  # refuses what is not JSON, as ever
    return (
        f'{{"room_id":{_text(state.room_id)},"name":{_text(state.name)},'
        f'"workflow_id":{_text(state.workflow_id)},"workflow_version":{version},'
        f'"status":{_text(state.status._value_)},'
        f'"current_node":{"null" if node is None else _text(node)},'
        f'"attempt":{attempt},"steps":{steps},"wake_at":{"null" if wake_at is None else wake_at},'
        f'"reason":{"null" if reason is None else _text(reason)},"created_at":{created},'
        f'"updated_at":{updated},"version":{seq},"node_seq":{node_seq}}}'
    )


def _not_json(name: str) -> Any:
    raise ValueError(f"the body holds {name}, which is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the body holds {text}, a number no store writes")
    return value


# what the stores write, strictly: NaN, Infinity and 1e400 were never written by OpenRooms
_DECODER: Final = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _json(body: Any) -> Any:
    """A stored JSON text, or ValueError saying where it breaks."""
    if not isinstance(body, str | bytes):
        raise ValueError(f"the body is {type(body).__name__}, not JSON text")
    try:
        return _DECODER.decode(body if isinstance(body, str) else body.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("the body nests too deeply to decode") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8 (byte {exc.start})") from None


class SQLiteStore(LeasingStore):
    """:class:`AtomicStore` in one SQLite file.

    Args:
        path: the database file (its folder is created), or ``:memory:``.
        synchronous: ``full`` (default), ``normal``, ``off`` or ``extra``.
        busy_timeout_ms: how long a write waits for another process's transaction.
        read_only: open an existing file for reading only; nothing is created or written
            (every write raises BackendError).

    Raises:
        BackendConfigError: a bad setting, a path that cannot be opened, or a file whose
            schema is of another version.
        DatabaseNotFoundError: *read_only* and there is no database file at *path*, or the
            file holds no OpenRooms tables.
    """

    may_block = True
    """A call may wait for another process's write lock (or a slow disk); see
    :meth:`without_waiting` for the calls that need not."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        busy_timeout_ms: int = 10_000,
        read_only: bool = False,
    ) -> None:
        if synchronous.lower() not in _SYNC_MODES:
            raise BackendConfigError(
                "sqlite", f"synchronous={synchronous!r}; use one of {', '.join(_SYNC_MODES)}"
            )
        self.path = str(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        # room -> (version, variables, memory, usage, visits) as last written by this store:
        # a commit rewrites a container column only when the state holds another object
        self._written: dict[RoomId, tuple[Any, ...]] = {}
        self._room_columns = _ROOM_COLUMNS
        self._lease_columns = _LEASE_COLUMNS
        self._synchronous = synchronous.upper()
        self._nowait: sqlite3.Connection | None = None  # see call_without_waiting
        self._fences_ready = False
        if read_only:
            self._db = self._open_read_only(busy_timeout_ms)
            return
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise BackendConfigError(
                    "sqlite", f"cannot create folder for {self.path}: {exc}"
                ) from exc
        try:
            # autocommit: transactions are explicit (BEGIN IMMEDIATE) below
            self._db = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
        except sqlite3.Error as exc:
            raise BackendConfigError("sqlite", f"cannot open {self.path}: {exc}") from exc
        with _driver_errors():
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._wal(busy_timeout_ms)
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute("PRAGMA foreign_keys = ON")
            # a read, no lock: only a new (or older) file needs the write transaction below
            current = self._schema_version() == SCHEMA_VERSION
        if current:
            return
        with _driver_errors(), self._transaction():
            found = self._schema_version()  # again: another process may have set it up
            self._check_schema(found, writing=True)
            if found != SCHEMA_VERSION:
                for script in _MIGRATIONS[found]:
                    for statement in script.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def where(self) -> str:
        """The database file, as error messages name it (an absolute path)."""
        return self.path if self.path == ":memory:" else os.path.abspath(self.path)

    def _schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_schema(self, found: int, *, writing: bool = False) -> None:
        """Refuse a file of a schema version other than ours, 0 (new) and those we migrate
        (when opened to write; a reader reads a version-2 file as it is)."""
        if found in _MIGRATES_FROM:
            if not writing and found < 4:
                self._lease_columns = _LEASE_COLUMNS_V3
                if found == 2:
                    self._room_columns = _ROOM_COLUMNS_V2
            return
        if found not in (0, SCHEMA_VERSION):
            raise BackendConfigError(
                "sqlite",
                f"{self.path} has schema version {found}; this OpenRooms reads version "
                f"{SCHEMA_VERSION} and migrates versions "
                f"{', '.join(map(str, _MIGRATES_FROM))}. Use a new file "
                "(older rooms are not migrated before 1.0)",
            )

    def _open_read_only(self, busy_timeout_ms: int) -> sqlite3.Connection:
        """Connect with ``mode=ro``; no file, folder, schema, journal switch or lock."""
        if self.path == ":memory:":
            raise BackendConfigError("sqlite", "read_only needs a database file, not :memory:")
        file = Path(self.path)
        if not file.is_file():
            raise DatabaseNotFoundError(self.where)
        uri = f"{file.resolve().as_uri()}?mode=ro"
        db = self._connect_uri(uri, busy_timeout_ms)
        try:
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            db.close()
            if not self._is_frozen():
                hint = ""
                if not os.access(os.path.dirname(self.where), os.W_OK):
                    hint = (
                        f"; its folder is read-only and a write-ahead log ({self.where}-wal) "
                        "is beside it: open it once where the folder can be written"
                    )
                raise BackendUnavailableError(
                    "sqlite", f"cannot read {self.where}: {exc}{hint}"
                ) from exc
            # A WAL file in a folder we cannot write, with no -wal beside it: the reader
            # cannot create the -shm it would lock through, and no writer (which would have
            # to create the -wal) is at work, so the file is read as the snapshot it is.
            db = self._connect_uri(f"{uri}&immutable=1", busy_timeout_ms)
            with _driver_errors():
                found = int(db.execute("PRAGMA user_version").fetchone()[0])
        try:
            if found == 0:
                raise DatabaseNotFoundError(self.where, "the file holds no OpenRooms tables")
            # a reader does not migrate: a version-2 file reads the same, but for due_rooms
            self._check_schema(found)
        except BackendError:
            db.close()
            raise
        return db

    def _connect_uri(self, uri: str, busy_timeout_ms: int) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=busy_timeout_ms / 1000,
            )
        except sqlite3.Error as exc:
            raise BackendConfigError("sqlite", f"cannot open {self.where}: {exc}") from exc
        with _driver_errors():
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        return db

    def _is_frozen(self) -> bool:
        """True when nobody can be writing the file: its folder is not writable (by us) and
        it has no write-ahead log."""
        folder = os.path.dirname(self.where)
        return not os.access(folder, os.W_OK) and not os.path.exists(self.where + "-wal")

    def _wal(self, busy_timeout_ms: int) -> None:
        """Switch to WAL. SQLite does not wait on the busy timeout for this one: when two
        processes open a new file at once, the second is told 'locked' at once, so it
        tries again (with a short pause) until the busy timeout has passed."""
        deadline = time.monotonic() + busy_timeout_ms / 1000
        pause = 0.002
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)  # lock backoff, not synchronisation: the other side holds it
            pause = min(pause * 2, 0.1)

    def _refuse_write(self) -> BackendError:
        return BackendError(
            "sqlite", f"{self.where} was opened read-only; open it without read_only to write"
        )

    def call_without_waiting(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
        """``fn(*args, **kwargs)``, its calls to this store made without waiting: where one
        would (another thread is using the store, another process holds the write lock),
        WouldBlockError is raised at once, nothing having been written. The runner calls the
        store this way on its event loop, and sends only the calls that would wait to its IO
        thread: a step's commit costs less than a hand-off to a thread.

        Raises:
            WouldBlockError: a call would have had to wait.
        """
        lock = self._lock
        if not lock.acquire(blocking=False):
            raise WouldBlockError("sqlite", "another thread is using the store")
        waiting = self._db
        try:
            # a second connection that never waits (busy timeout 0): switching the busy
            # timeout of one connection back and forth costs a sixth of a step
            self._db = self._nowait or self._nowait_connection()
            try:
                return fn(*args, **kwargs)
            except BackendUnavailableError as exc:
                if not _is_busy(exc.__cause__):
                    raise
                if self._db.in_transaction:  # only a BEGIN is expected to fail; never leave one
                    self._db.execute("ROLLBACK")
                raise WouldBlockError("sqlite", f"{self.where} is locked") from exc
            finally:
                self._db = waiting
        finally:
            lock.release()

    def _nowait_connection(self) -> sqlite3.Connection:
        db = self._nowait
        if db is None:
            if self.read_only or self.path == ":memory:":
                db = self._db  # no other process can hold its lock (or it is never written)
            else:
                with _driver_errors():
                    db = sqlite3.connect(
                        self.path, isolation_level=None, check_same_thread=False, timeout=0
                    )
                    db.execute("PRAGMA busy_timeout = 0")
                    db.execute(f"PRAGMA synchronous = {self._synchronous}")
                    db.execute("PRAGMA foreign_keys = ON")
            self._nowait = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise self._refuse_write()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # StateStore

    def create(self, state: RoomState) -> None:
        with _driver_errors(), self._transaction() as db:
            self._insert_room(db, state)
        self._remember(state)

    @staticmethod
    def _insert_room(db: sqlite3.Connection, state: RoomState) -> None:
        try:
            db.execute(
                "INSERT INTO rooms (id, workflow_id, status, version, created_at, body, "
                "due_at, current_node, steps, wake_at, variables, memory, usage, visits) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    state.room_id,
                    state.workflow_id,
                    state.status.value,
                    state.version,
                    state.created_at,
                    _scalars_json(state),
                    due_at(state),
                    state.current_node,
                    state.steps,
                    state.wake_at,
                    _dumps(state.variables),
                    _dumps(state.memory),
                    _dumps(state.usage),
                    _dumps(state.visits),
                ),
            )
        except sqlite3.IntegrityError:
            raise RoomExistsError(state.room_id) from None

    def _remember(self, state: RoomState) -> None:
        """Note the containers, status and due_at just written for *state*'s room (none
        kept once it ended): the next step's UPDATE writes only what changed."""
        written = self._written
        if state.status.is_terminal:
            written.pop(state.room_id, None)
            return
        if len(written) >= _KEEP and state.room_id not in written:
            del written[next(iter(written))]  # the longest remembered
        written[state.room_id] = (
            state.version,
            state.variables,
            state.memory,
            state.usage,
            state.visits,
            state.status,
            due_at(state),
        )

    def get(self, room_id: RoomId) -> RoomState:
        state = self.find(room_id)
        if state is None:
            raise RoomNotFoundError(room_id, self.where)
        return state

    def find(self, room_id: RoomId) -> RoomState | None:
        with _driver_errors(), self._lock:
            row = self._db.execute(
                # S608: the column list is ours; values are parameters
                f"SELECT {self._room_columns} FROM rooms WHERE id = ?",  # noqa: S608
                (room_id,),
            ).fetchone()
        if row is None:
            return None
        state = self._decode_state(room_id, row[1:])
        if not self.read_only and None not in row[2:]:
            # what the row's columns hold now (not a row from version 2, whose containers
            # are in the body): a commit from it rewrites only what it changes
            self._remember(state)
        return state

    def _decode_state(self, room_id: str, columns: Sequence[Any]) -> RoomState:
        """A rooms row (body, variables, memory, usage, visits) as a state, or
        CorruptRoomError naming the file, row and column."""
        where = f"{self.where}, table rooms, row id={room_id!r}"
        try:
            fields = _json(columns[0])
            for name, text in zip(_CONTAINERS, columns[1:], strict=True):
                # NULL: still in the body (a row from version 2); a body that is not an
                # object is left for state_from_dict to describe
                if text is not None and isinstance(fields, dict):
                    try:
                        fields[name] = _json(text)
                    except ValueError as exc:
                        raise ValueError(f"column {name}: {exc}") from None
            state = serde.state_from_dict(fields)
        except ValueError as exc:
            raise CorruptRoomError(room_id, where, str(exc)) from None
        except CorruptRoomError as exc:
            raise CorruptRoomError(room_id, where, exc.problem) from None
        if state.room_id != room_id:
            raise CorruptRoomError(room_id, where, f"the body is room {state.room_id!r}")
        return state

    def replace(
        self, state: RoomState, *, expected_version: int, lease: Lease | None = None
    ) -> None:
        sql, params = self._update_sql(state, expected_version, lease)
        with _driver_errors(), self._transaction() as db:
            self._update_room(db, state, expected_version, sql, params)
        self._remember(state)

    def _update_sql(
        self, state: RoomState, expected_version: int, lease: Lease | None
    ) -> tuple[str, list[Any]]:
        """The UPDATE of a step: the body and hot columns, and the containers that changed
        since this store last wrote the room (all of them if it did not, or not last)."""
        status, due, wake = state.status, due_at(state), state.wake_at
        before = self._written.get(state.room_id)
        if before is not None and before[0] != expected_version:
            before = None  # not this store's last write: every column is written
        hot = 0  # see _update_statement
        if before is not None and before[5] is status:
            hot = 1
            params: list[Any] = [state.version, _scalars_json(state)]
        else:
            params = [status._value_, state.version, _scalars_json(state)]
        if before is not None and before[6] == due:
            hot |= 2
        elif due is None:
            hot |= 4
        else:
            params.append(due)
        params += [state.current_node, state.steps]
        if wake is None:
            hot |= 8
        else:
            params.append(wake)
        # a bit per container written, in _CONTAINERS order (written out: once a step)
        variables, memory, usage, visits = state.variables, state.memory, state.usage, state.visits
        if before is None:
            changed = 0b11110
            params += [_dumps(variables), _dumps(memory), _dumps(usage), _dumps(visits)]
        else:
            changed = 0
            if before[1] is not variables:
                changed = 0b10
                params.append(_dumps(variables))
            if before[2] is not memory:
                changed |= 0b100
                params.append(_dumps(memory))
            if before[3] is not usage:
                changed |= 0b1000
                params.append(_dumps(usage))
            if before[4] is not visits:
                changed |= 0b10000
                params.append(_dumps(visits))
        params += [state.room_id, expected_version]
        if lease is not None:
            params.append(lease.token)
        return _update_statement(changed, lease is not None, hot), params

    def _update_room(
        self,
        db: sqlite3.Connection,
        state: RoomState,
        expected_version: int,
        sql: str,
        params: Sequence[Any],
    ) -> None:
        if db.execute(sql, params).rowcount == 0:
            raise self._refusal(db, state, expected_version)

    def _refusal(
        self, db: sqlite3.Connection, state: RoomState, expected_version: int
    ) -> RoomNotFoundError | StaleRoomError:
        """Why a step's UPDATE changed no row: the room is gone, or it is not at
        *expected_version* (or the lease token is not the room's)."""
        exists = db.execute("SELECT 1 FROM rooms WHERE id = ?", (state.room_id,)).fetchone()
        if exists is None:
            return RoomNotFoundError(state.room_id, self.where)
        return StaleRoomError(state.room_id, expected_version)

    def list_rooms(
        self,
        *,
        status: RoomStatus | None = None,
        workflow_id: str | None = None,
        query: str | None = None,
        before: tuple[int, str] | None = None,
        limit: int = 100,
        on_corrupt: Callable[[CorruptRoomError], None] | None = None,
    ) -> list[RoomState]:
        where, params = _room_filters(status, workflow_id, query)
        if before is not None:
            # a row value: the planner seeks rooms_by_created to the cursor
            where.append("(created_at, id) < (?, ?)")
            params += [int(before[0]), str(before[1])]
        sql = f"SELECT {self._room_columns} FROM rooms"  # noqa: S608 (our column list)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with _driver_errors(), self._lock:
            rows = self._db.execute(sql, (*params, int(limit))).fetchall()
        out = []
        for row in rows:
            room_id = row[0]
            try:
                out.append(self._decode_state(room_id, row[1:]))
            except CorruptRoomError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
        return out

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        """One ``GROUP BY status``: over the ``rooms_by_status`` index alone (schema version
        5) when unfiltered or filtered by workflow; a *query* reads the rows' ids too."""
        where, params = _room_filters(None, workflow_id, query)
        sql = "SELECT status, count(*) FROM rooms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " GROUP BY status"
        with _driver_errors(), self._lock:
            rows = self._db.execute(sql, params).fetchall()
        counts = zero_counts()
        for status, n in rows:
            if status in counts:  # a row of no known status is `openrooms db check`'s
                counts[status] = int(n)
        return counts

    def count_rooms(self, prefix: str) -> int:
        sql: str = "SELECT COUNT(*) FROM rooms WHERE substr(id, 1, ?) = ?"
        params: tuple[object, ...] = (len(prefix), prefix)
        if prefix and prefix[-1] < "\U0010ffff":
            # a range on the primary key: from *prefix* up to the next string after it
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            sql, params = "SELECT COUNT(*) FROM rooms WHERE id >= ? AND id < ?", (prefix, upper)
        with _driver_errors(), self._lock:
            return int(self._db.execute(sql, params).fetchone()[0])

    def due_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        with _driver_errors(), self._lock:
            rows = self._db.execute(
                "SELECT r.id FROM rooms r LEFT JOIN leases l ON l.room_id = r.id "
                "WHERE r.due_at IS NOT NULL AND r.due_at <= ? "
                "AND (l.owner IS NULL OR l.expires_at <= ?) "
                "ORDER BY r.due_at, r.id LIMIT ?",
                (now, now, int(limit)),
            ).fetchall()
        return [RoomId(r[0]) for r in rows]

    def expired_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        """Running or queued rooms whose lease expired unreleased (see
        :mod:`openrooms.backends.base`), from the partial index of unreleased leases."""
        with _driver_errors(), self._lock:
            rows = self._db.execute(
                "SELECT l.room_id FROM leases l JOIN rooms r ON r.id = l.room_id "
                "WHERE l.owner IS NOT NULL AND l.expires_at <= ? "
                "AND r.status IN ('running', 'queued') "
                "ORDER BY l.expires_at, l.room_id LIMIT ?",
                (now, int(limit)),
            ).fetchall()
        return [RoomId(r[0]) for r in rows]

    def clock_ms(self) -> int:
        """The store's clock: this machine's, as for every process sharing the file."""
        return time.time_ns() // 1_000_000

    def next_wake_at(self) -> int | None:
        # in due order up to the first room nobody holds: every later room is due later still
        found = None
        with _driver_errors(), self._lock:
            rows = self._db.execute(
                "SELECT r.due_at, l.owner, l.expires_at FROM rooms r "
                "LEFT JOIN leases l ON l.room_id = r.id "
                "WHERE r.due_at IS NOT NULL ORDER BY r.due_at, r.id"
            )
            try:
                for due, owner, expires_at in rows:
                    at = due if owner is None else max(due, expires_at)
                    found = at if found is None else min(found, at)
                    if owner is None:
                        break
            finally:
                rows.close()  # an unfinished statement would keep its read snapshot open
        return found

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        with _driver_errors(), self._transaction() as db:
            return self._acquire(db, room_id, owner, ttl_ms, now, force)

    def _acquire(
        self,
        db: sqlite3.Connection,
        room_id: RoomId,
        owner: str,
        ttl_ms: int,
        now: int,
        force: bool,
    ) -> Lease:
        if db.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
            raise RoomNotFoundError(room_id, self.where)
        row = db.execute(
            "SELECT owner, token, expires_at, recoveries FROM leases WHERE room_id = ?",
            (room_id,),
        ).fetchone()
        token, recoveries = 1, 0
        if row is not None:
            held_by, held_token, expires_at, held_recoveries = row
            if held_by is not None and held_by != owner and expires_at > now and not force:
                raise RoomLeasedError(room_id, held_by, expires_at)
            token = held_token + 1
            if held_by is not None:  # never released: its runner died, stalled or was forced
                recoveries = held_recoveries + 1
        lease = Lease(room_id, owner, token, now + ttl_ms, recoveries)
        db.execute(
            "INSERT INTO leases (room_id, owner, token, expires_at, recoveries) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (room_id) DO UPDATE SET owner = excluded.owner, "
            "token = excluded.token, expires_at = excluded.expires_at, "
            "recoveries = excluded.recoveries",
            (room_id, owner, token, lease.expires_at, recoveries),
        )
        db.execute("UPDATE rooms SET lease_token = ? WHERE id = ?", (token, room_id))
        return lease

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        renewed = attrs.evolve(lease, expires_at=now + ttl_ms)
        with _driver_errors(), self._transaction() as db:
            cursor = db.execute(
                "UPDATE leases SET expires_at = ? WHERE room_id = ? AND token = ? AND owner = ?",
                (renewed.expires_at, lease.room_id, lease.token, lease.owner),
            )
            if cursor.rowcount == 0:
                raise StaleRoomError(lease.room_id, -1)
        return renewed

    def release_lease(self, lease: Lease) -> None:
        with _driver_errors(), self._transaction() as db:
            self._release(db, lease)

    @staticmethod
    def _release(db: sqlite3.Connection, lease: Lease) -> None:
        # the row stays, so the next token is still higher than every earlier one
        db.execute(
            "UPDATE leases SET owner = NULL, expires_at = 0, recoveries = 0 "
            "WHERE room_id = ? AND token = ?",
            (lease.room_id, lease.token),
        )

    def find_lease(self, room_id: RoomId) -> Lease | None:
        with _driver_errors(), self._lock:
            row = self._db.execute(
                # S608: the column list is ours; values are parameters
                f"SELECT {self._lease_columns} FROM leases WHERE room_id = ?",  # noqa: S608
                (room_id,),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        return Lease(room_id, row[0], row[1], row[2], row[3])

    def put_workflow(self, workflow: StoredWorkflow) -> bool:
        with _driver_errors(), self._transaction() as db:
            row = db.execute(
                "SELECT digest FROM workflows WHERE id = ? AND version = ?",
                (workflow.id, workflow.version),
            ).fetchone()
            if row is not None:
                if row[0] != workflow.digest:
                    raise WorkflowConflictError(workflow.id, workflow.version)
                return False
            db.execute(
                "INSERT INTO workflows (id, version, digest, body, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    workflow.id,
                    workflow.version,
                    workflow.digest,
                    _dumps(workflow.definition),
                    workflow.created_at,
                ),
            )
            return True

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        sql = "SELECT id, version, digest, body, created_at FROM workflows WHERE id = ?"
        params: tuple[Any, ...] = (workflow_id,)
        if version is not None:
            sql += " AND version = ?"
            params += (version,)
        sql += " ORDER BY version DESC LIMIT 1"
        with _driver_errors(), self._lock:
            row = self._db.execute(sql, params).fetchone()
        if row is None:
            raise WorkflowNotFoundError(workflow_id, version)
        return self._decode_workflow(row)

    def list_workflows(self) -> list[StoredWorkflow]:
        with _driver_errors(), self._lock:
            rows = self._db.execute(
                "SELECT w.id, w.version, w.digest, w.body, w.created_at FROM workflows w "
                "JOIN (SELECT id, MAX(version) AS v FROM workflows GROUP BY id) m "
                "ON w.id = m.id AND w.version = m.v ORDER BY w.id"
            ).fetchall()
        return [self._decode_workflow(r) for r in rows]

    def _decode_workflow(self, row: Sequence[Any]) -> StoredWorkflow:
        return _workflow_from_row(self.where, row)

    # EventLog

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        fenced = bool(events) and lease is not None
        if fenced:
            self._create_fences()
        with _driver_errors(), self._transaction() as db:
            if fenced:
                assert lease is not None
                self._fence(db, events[0].room_id, lease.token, events[0].seq - 1)
            self._insert_events(db, events)

    def fence(self, room_id: RoomId, token: int) -> None:
        self._create_fences()
        with _driver_errors(), self._transaction() as db:
            self._fence(db, room_id, token, -1)

    def _create_fences(self) -> None:
        """The log_fences table, in a file made before it existed (once per store)."""
        if not self._fences_ready:
            with _driver_errors(), self._transaction() as db:
                db.execute(_FENCES)
            self._fences_ready = True

    @staticmethod
    def _fence(db: sqlite3.Connection, room_id: RoomId, token: int, version: int) -> None:
        row = db.execute("SELECT token FROM log_fences WHERE room_id = ?", (room_id,)).fetchone()
        # where this file holds the room's lease too, its current token fences as well
        held = db.execute("SELECT lease_token FROM rooms WHERE id = ?", (room_id,)).fetchone()
        if (row is not None and row[0] > token) or (held is not None and held[0] > token):
            raise StaleRoomError(room_id, version)
        if row is None or row[0] != token:
            db.execute(
                "INSERT INTO log_fences (room_id, token) VALUES (?, ?) "
                "ON CONFLICT (room_id) DO UPDATE SET token = excluded.token",
                (room_id, token),
            )

    @staticmethod
    def _insert_events(db: sqlite3.Connection, events: Sequence[Event]) -> None:
        if not events:
            return
        room_id = events[0].room_id
        row = db.execute(
            "SELECT MAX(last_seq) FROM events WHERE room_id = ?", (room_id,)
        ).fetchone()
        if events[0].seq != (row[0] or 0) + 1:
            raise StaleRoomError(room_id, events[0].seq - 1)
        db.execute(_INSERT_EVENTS, _batch(events))

    def read(
        self,
        room_id: RoomId,
        *,
        after: int = 0,
        limit: int | None = None,
        min_level: Level | None = None,
        types: Sequence[EventType] | None = None,
    ) -> list[Event]:
        with _driver_errors(), self._lock:
            rows = self._db.execute(
                "SELECT first_seq, body FROM events "
                "WHERE room_id = ? AND last_seq > ? ORDER BY first_seq",
                (room_id, after),
            ).fetchall()
        decoded = (e for row in rows for e in self._decode_events(room_id, *row))
        return select_events(decoded, after=after, limit=limit, min_level=min_level, types=types)

    def _decode_events(self, room_id: RoomId, first_seq: int, body: Any) -> list[Event]:
        """An events row's batch, or CorruptRoomError naming the file and row."""
        where = f"{self.where}, table events, row room_id={room_id!r} first_seq={first_seq}"
        try:
            items = _json(body)
            if not isinstance(items, list):
                raise ValueError(f"the body is a JSON {type(items).__name__}, not an array")
            return [_event_from_row(room_id, item) for item in items]
        except ValueError as exc:
            raise CorruptRoomError(room_id, where, str(exc)) from None
        except CorruptRoomError as exc:
            raise CorruptRoomError(room_id, f"{where}, {exc.where}", exc.problem) from None

    def last_seq(self, room_id: RoomId) -> int:
        with _driver_errors(), self._lock:
            row = self._db.execute(
                "SELECT MAX(last_seq) FROM events WHERE room_id = ?", (room_id,)
            ).fetchone()
        return int(row[0] or 0)

    # AtomicStore

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        if expected_version is None:
            with _driver_errors(), self._transaction() as db:
                self._insert_room(db, state)
                self._insert_events(db, events)
            self._remember(state)
            return
        if self.read_only:
            raise self._refuse_write()
        # The hot path, one call per step: encode before taking the write lock, and no
        # generator context managers (they cost more than the UPDATE on a small row).
        batch = _batch(events) if events else None
        with self._lock:
            sql, params = self._update_sql(state, expected_version, lease)
            db = self._db  # under the lock: call_without_waiting swaps it
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if db.execute(sql, params).rowcount == 0:  # _update_room, inline
                        raise self._refusal(db, state, expected_version)
                    # state and log commit together here, so the version check above makes
                    # the next seq free; the primary key still refuses a duplicate
                    if batch is not None:
                        try:
                            db.execute(_INSERT_EVENTS, batch)
                        except sqlite3.IntegrityError:
                            raise StaleRoomError(state.room_id, expected_version) from None
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                self._remember(state)
            except sqlite3.OperationalError as exc:
                raise BackendUnavailableError("sqlite", str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                raise BackendUnavailableError("sqlite", f"{type(exc).__name__}: {exc}") from exc

    # LeasingStore

    def acquire_and_commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        owner: str,
        ttl_ms: int,
        now: int,
        force: bool = False,
        release: bool = False,
    ) -> Lease:
        return self._commit_leased(
            state, events, expected_version, None, (owner, ttl_ms, now, force), release
        )

    def commit_and_release(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        lease: Lease,
    ) -> None:
        self._commit_leased(state, events, expected_version, lease, None, True)

    def _commit_leased(
        self,
        state: RoomState,
        events: Sequence[Event],
        expected_version: int,
        lease: Lease | None,
        acquire: tuple[str, int, int, bool] | None,
        release: bool,
    ) -> Lease:
        """A commit, in the transaction that first acquires the lease (*acquire*: owner,
        ttl_ms, now, force) and/or releases it after (*release*); rolled back whole."""
        batch = _batch(events) if events else None
        with _driver_errors(), self._transaction() as db:
            if acquire is not None:
                lease = self._acquire(db, state.room_id, *acquire)
            assert lease is not None
            sql, params = self._update_sql(state, expected_version, lease)
            self._update_room(db, state, expected_version, sql, params)
            if batch is not None:
                try:
                    db.execute(_INSERT_EVENTS, batch)
                except sqlite3.IntegrityError:
                    raise StaleRoomError(state.room_id, expected_version) from None
            if release:
                self._release(db, lease)
        self._remember(state)
        return lease

    def check(self, *, split: bool = False) -> list[str]:
        """Every problem in the file: SQLite's integrity check, then a decode of every row.

        Each rooms row must decode to the room it is filed under, each events row to its
        batch of events numbered ``first_seq..last_seq`` without gaps between rows, and each
        workflows row to a JSON object; events of a room with no rooms row are reported too.

        Args:
            split: the file is only the state store or only the event log of a runtime
                (``state_url`` and ``log_url`` differ), so events of a room with no rooms
                row are expected.

        Returns:
            One line per problem (``where: what``); an empty list for a sound file.

        Raises:
            BackendUnavailableError: the file cannot be read at all.
        """
        try:
            with _driver_errors(), self._lock:
                rows = self._db.execute("PRAGMA integrity_check").fetchall()
            integrity = "\n".join(str(r[0]) for r in rows).splitlines()  # "ok" when sound
        except BackendUnavailableError as exc:  # a page too damaged for the check itself
            integrity = [f"the integrity check stopped: {exc.message}"]
        problems = [] if integrity == ["ok"] else [f"{self.where}: {p}" for p in integrity]
        with _driver_errors(), self._lock:
            self._db.execute("BEGIN")  # one snapshot for the whole pass
            try:
                problems += self._check_rows(split)
            except sqlite3.DatabaseError as exc:
                problems.append(f"{self.where}: cannot read every row: {exc}")
            finally:
                self._db.execute("ROLLBACK")
        return problems

    def _check_rows(self, split: bool) -> list[str]:
        problems = []
        room_ids = set()
        timed = self._room_columns == _ROOM_COLUMNS  # a reader of a version-2 file: no due_at
        due = "due_at" if timed else "NULL"
        select = f"SELECT {self._room_columns}, {due} FROM rooms ORDER BY id"  # noqa: S608
        for row in self._db.execute(select):
            room_id, stored_due = row[0], row[-1]
            room_ids.add(room_id)
            try:
                state = self._decode_state(room_id, row[1:-1])
            except CorruptRoomError as exc:
                problems.append(f"{exc.where}: {exc.problem}")
                continue
            if timed and stored_due != due_at(state):
                problems.append(
                    f"{self.where}, table rooms, row id={room_id!r}: due_at is {stored_due}, "
                    f"its state says {due_at(state)}; a worker would wake it at the wrong time"
                )
        expected: dict[str, int] = {}
        rows = self._db.execute(
            "SELECT room_id, first_seq, last_seq, body FROM events ORDER BY room_id, first_seq"
        )
        for room_id, first_seq, last_seq, body in rows:
            where = f"{self.where}, table events, row room_id={room_id!r} first_seq={first_seq}"
            if not split and room_id not in room_ids and room_id not in expected:
                problems.append(f"{where}: events of a room that has no rooms row")
            if first_seq != expected.get(room_id, 1):
                problems.append(f"{where}: expected first_seq {expected.get(room_id, 1)}")
            expected[room_id] = last_seq + 1
            try:
                events = self._decode_events(room_id, first_seq, body)
            except CorruptRoomError as exc:
                problems.append(f"{exc.where}: {exc.problem}")
                continue
            seqs = [e.seq for e in events]
            if seqs != list(range(first_seq, last_seq + 1)):
                problems.append(f"{where}: holds events {seqs}, not {first_seq}..{last_seq}")
        for row in self._db.execute(
            "SELECT id, version, digest, body, created_at FROM workflows ORDER BY id, version"
        ):
            try:
                self._decode_workflow(row)
            except CorruptDataError as exc:
                problems.append(f"{exc.where}: {exc.problem}")
        return problems

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._nowait is not None and self._nowait is not self._db:
                self._nowait.close()
