"""State, leases, workflows and logs in PostgreSQL (psycopg 3, a psycopg_pool pool).

``postgresql://user@host:5432/db?schema=NAME`` (also ``postgres://``): every table lives in
the schema *NAME* (default ``public``), so one database can hold several deployments (or one
per test). Besides ``schema`` the URL takes ``pool_max`` (connections, default 4) and
``pool_timeout`` (seconds to wait for a free connection, default 10); every other query
parameter is libpq's (``sslmode``, ``connect_timeout``, ``application_name``...).

Schema versions. The tables, functions and triggers are made by numbered migrations
(:data:`MIGRATIONS`), applied by :func:`upgrade` (``openrooms db upgrade``) under a
transaction-scoped advisory lock, so two processes upgrading at once do it once. Opening a
store checks the version: a schema with no OpenRooms tables at all is set up on the spot (as
a new SQLite file is), but an existing schema that is behind is never migrated behind the
user's back: opening it raises :class:`~openrooms.errors.SchemaOutdatedError`, which names
``openrooms db upgrade``. A read-only opener writes nothing: it refuses a schema that is
missing (DatabaseNotFoundError) or behind.

One round trip per step. A commit is one SQL statement in autocommit mode: its ``UPDATE``
compares the version (and the lease token, mirrored in ``rooms.lease_token``) and the
``INSERT`` of the events, in a data-modifying CTE, reads the updated row, so a refused
update writes no event. Commits that take or let go of the lease call one server-side
function (``openrooms_leased``) installed by the migrations, which locks the room's row
first; the fenced append of a split runtime's log calls ``openrooms_append``.

Live tails. :meth:`PostgresStore.wait_for_events` listens (``LISTEN openrooms_events``) on
a connection of its own and holds the room's follower lock (an advisory lock, shared) while
it waits; an ``AFTER INSERT`` trigger on ``events`` (one row per commit) sends ``NOTIFY``,
with the md5 of ``schema/room_id`` as payload, when it cannot take that lock exclusively:
only commits to a followed room pay for a NOTIFY, and ``logs --follow`` wakes as soon as a
commit lands (see postgres_schema.py for why no wake-up is lost).

The log is append-only: a statement trigger refuses ``UPDATE``, ``DELETE`` and ``TRUNCATE``
on ``events`` unless the transaction set ``openrooms.retention`` to ``on`` (``SET LOCAL``),
the hook a retention job uses to delete old rooms' logs (there is none yet); an ``UPDATE`` is
refused even then.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from openrooms import serde
from openrooms.backends.base import Lease, LeasingStore, StoredWorkflow, due_at, zero_counts
from openrooms.backends.postgres_schema import (
    FOLLOW_LOCK_CLASS,
    MIGRATIONS,
    SCHEMA_VERSION,
    migrate,
    schema_version,
)
from openrooms.backends.selection import select_events
from openrooms.backends.sqlite import (
    _dumps,
    _event_from_row,
    _event_rows,
    _json,
    _workflow_from_row,
)
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
    SchemaOutdatedError,
    StaleRoomError,
    UnstorableValueError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from openrooms.events import Event, EventType, Level
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresStore", "upgrade"]

_BACKEND: Final = "postgres"
CHANNEL: Final = "openrooms_events"
"""The NOTIFY channel of new events; the payload is :func:`_room_key`."""
_URL_OPTIONS: Final = ("schema", "pool_max", "pool_timeout")


# the hot path: one statement, one round trip (see the module docstring); the events' INSERT
# reads the UPDATE's row, so a refused update inserts nothing
_UPDATE_ROOM: Final = """
UPDATE rooms SET status = %s, version = %s, body = %s, due_at = %s
WHERE id = %s AND version = %s{fence}
RETURNING id
"""
_WITH_EVENTS: Final = """
WITH u AS ({update}), e AS (
    INSERT INTO events (room_id, first_seq, last_seq, body) SELECT u.id, %s, %s, %s FROM u
)
SELECT count(*) FROM u
"""
_UPDATE: Final = _UPDATE_ROOM.format(fence="")
_UPDATE_FENCED: Final = _UPDATE_ROOM.format(fence=" AND lease_token = %s")
_COMMIT: Final = _WITH_EVENTS.format(update=_UPDATE)
_COMMIT_FENCED: Final = _WITH_EVENTS.format(update=_UPDATE_FENCED)
_CREATE: Final = """
WITH r AS (
    INSERT INTO rooms (id, workflow_id, status, version, created_at, due_at, body)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), e AS (
    INSERT INTO events (room_id, first_seq, last_seq, body)
    SELECT r.id, %s, %s, %s FROM r WHERE %s
)
SELECT count(*) FROM r
"""
_LEASED: Final = (
    "SELECT o_code, o_token, o_expires, o_recoveries, o_owner "
    "FROM openrooms_leased(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
# a room's log from seq *after* + 1: from the batch that holds it (or the first)
_READ: Final = (
    "SELECT first_seq, last_seq, body FROM events WHERE room_id = %s AND first_seq >= "
    "(SELECT coalesce(max(first_seq), 0) FROM events WHERE room_id = %s AND first_seq <= %s) "
    "ORDER BY first_seq"
)

_Query = str | bytes | sql.SQL | sql.Composed
"""A statement: our literal SQL, or composed with sql.Identifier; never user text."""


def _room_key(schema: str, room_id: str) -> str:
    """The NOTIFY payload of *room_id*'s new events: fixed-size, whatever the id's length."""
    return hashlib.md5(f"{schema}/{room_id}".encode(), usedforsecurity=False).hexdigest()


class _Target:
    """What a URL names: the libpq connection string, the schema and the pool settings."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _URL_OPTIONS}
        libpq = [(k, v) for k, v in query if k not in _URL_OPTIONS]
        given = {k for k, _ in libpq}
        if "connect_timeout" not in given:
            libpq.append(("connect_timeout", "10"))
        if "application_name" not in given:  # how pg_stat_activity names our connections
            libpq.append(("application_name", "openrooms"))
        try:
            host = parts.hostname or "localhost"
            port = parts.port or 5432
        except ValueError:
            raise BackendConfigError(_BACKEND, f"{redact(url)}: the port is not a number") from None
        self.host = f"{host}:{port}"
        self.password = parts.password
        dbname = parts.path.lstrip("/") or parts.username or "postgres"
        self.schema = ours.get("schema", "public")
        if not self.schema or "\x00" in self.schema or len(self.schema.encode()) > 63:
            raise BackendConfigError(
                _BACKEND,
                f"{redact(url)}: schema={self.schema!r} is not a schema name "
                "(1 to 63 bytes, no NUL)",
            )
        self.pool_max = _positive(url, ours, "pool_max", 4)
        self.pool_timeout = float(_positive(url, ours, "pool_timeout", 10))
        self.conninfo = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(libpq, quote_via=quote), "")
        )
        try:
            psycopg.conninfo.conninfo_to_dict(self.conninfo)  # libpq's own parse
        except psycopg.Error as exc:
            raise BackendConfigError(
                _BACKEND,
                f"{redact(url)}: {' '.join(str(exc).split())}; the URL takes schema, pool_max, "
                "pool_timeout and "
                "libpq's parameters",
            ) from None
        user = f"{parts.username}@" if parts.username else ""
        self.where = f"postgresql://{user}{self.host}/{dbname} (schema {self.schema})"
        """How messages name the database: never with the password."""


def _positive(url: str, options: dict[str, str], name: str, default: int) -> int:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise BackendConfigError(
            _BACKEND, f"{redact(url)}: {name}={text!r}; expected a whole number above 0"
        )
    return value


def redact(url: str) -> str:
    """*url* with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the strings that start with *prefix*, literally: its ``\\``,
    ``%`` and ``_`` escaped (with the default escape character, a backslash)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _room_filters(
    status: RoomStatus | None, workflow_id: str | None, query: str | None
) -> tuple[list[sql.Composable], list[Any]]:
    """WHERE clauses (to AND) and their parameters for :meth:`PostgresStore.list_rooms` and
    :meth:`PostgresStore.status_counts`. LIKE is case-sensitive in Postgres; on ``id``
    (COLLATE "C") a prefix pattern can use the primary key."""
    where: list[sql.Composable] = []
    params: list[Any] = []
    if status is not None:
        where.append(sql.SQL("status = %s"))
        params.append(status.value)
    if workflow_id is not None:
        where.append(sql.SQL("workflow_id = %s"))
        params.append(workflow_id)
    if query:
        where.append(sql.SQL("(id LIKE %s ESCAPE '\\' OR workflow_id LIKE %s ESCAPE '\\')"))
        params += [_like_prefix(query)] * 2
    return where, params


def _where(clauses: list[sql.Composable]) -> sql.Composable:
    """``WHERE a AND b ...``, or nothing for no clause."""
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")


class PostgresStore(LeasingStore):
    """:class:`~openrooms.backends.base.LeasingStore` in a PostgreSQL schema.

    Args:
        url: ``postgresql://user[:password]@host[:port]/db[?schema=NAME&...]`` (see the
            module docstring for the options).
        read_only: open for reading only: nothing is created or migrated, every
            connection runs with ``default_transaction_read_only``, every write raises
            BackendError.

    Raises:
        BackendConfigError: a URL that cannot be used, or a schema of a newer version.
        SchemaOutdatedError: the schema is behind; ``openrooms db upgrade`` migrates it.
        BackendUnavailableError: the server cannot be reached (the message names the host,
            never the password).
        DatabaseNotFoundError: *read_only* and the schema holds no OpenRooms tables.
    """

    may_block = True
    """Every call is a network round trip: the runner makes them from its IO thread."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        self._target = target = _Target(url)
        self.read_only = read_only
        self.schema = target.schema
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        with self._errors(), self._connect() as conn:
            found = schema_version(conn)
            if found == 0 and not read_only:
                # a fresh schema is set up on the spot, like a new SQLite file; an existing
                # one is only ever migrated by `openrooms db upgrade`
                migrate(conn, target.schema, only_if_new=True)
                found = schema_version(conn)
        self._check_version(found)
        self._pool = ConnectionPool(
            target.conninfo,
            min_size=1,
            max_size=target.pool_max,
            timeout=target.pool_timeout,
            # psycopg_pool retries a lost connection with a backoff that doubles for up to
            # reconnect_timeout (default 5 min), so after an outage of T seconds the pool
            # could wait about T more before it tried again. Giving up after pool_timeout
            # instead, the next call that needs a connection asks for one at once.
            reconnect_timeout=target.pool_timeout,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=True,
            name=f"openrooms {target.where}",
        )

    @staticmethod
    def describe(url: str) -> str:
        """How messages name the database *url* points to (the password left out).

        Raises:
            BackendConfigError: *url* cannot be read.
        """
        return _Target(url).where

    @property
    def where(self) -> str:
        """The database as messages name it: ``postgresql://user@host:port/db (schema s)``."""
        return self._target.where

    def _check_version(self, found: int) -> None:
        if found == SCHEMA_VERSION:
            return
        if found == 0:
            raise DatabaseNotFoundError(
                self.where, "the schema holds no OpenRooms tables", _BACKEND
            )
        if found < SCHEMA_VERSION:
            raise SchemaOutdatedError(_BACKEND, self.where, found, SCHEMA_VERSION)
        raise _newer(self._target, found)

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection (autocommit, the schema first on the search path)."""
        conn = psycopg.connect(self._target.conninfo, autocommit=True)
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return _driver_errors(self._target)

    def _refuse_write(self) -> BackendError:
        return _read_only_error(self._target)

    def _rows(self, query: _Query, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read. A connection the server dropped (a restart, say) is replaced and the
        read made once more: reads can be repeated."""
        try:
            with self._errors(), self._pool.connection() as conn:
                return conn.execute(query, params).fetchall()
        except BackendUnavailableError as exc:
            if isinstance(exc.__cause__, PoolTimeout):
                raise  # no connection for pool_timeout: the server is down, not one link
            self._drop_broken()
        with self._errors(), self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def _write(
        self, query: _Query, params: Sequence[Any], room_id: str = "", version: int = -1
    ) -> list[tuple[Any, ...]]:
        """Run a write; an event whose (room, seq) is taken is StaleRoomError(room_id,
        version): another writer got there first. A write is not made again when the
        connection fails (it may have committed); the runner stops, and the room resumes."""
        if self.read_only:
            raise self._refuse_write()
        try:
            with self._errors(), self._pool.connection() as conn:
                return conn.execute(query, params).fetchall()
        except BackendUnavailableError:
            self._drop_broken()
            raise
        except BackendError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise StaleRoomError(room_id, version) from None
            raise

    def _drop_broken(self) -> None:
        """After a failed call: test the pool's idle connections, replacing those the server
        dropped, so that one failure (not one per pooled connection) follows a restart."""
        with contextlib.suppress(psycopg.Error):
            self._pool.check()

    def clock_ms(self) -> int:
        """The database server's clock (``clock_timestamp()``), ms since the epoch."""
        rows = self._rows("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
        return int(rows[0][0])

    # StateStore

    def create(self, state: RoomState) -> None:
        self._create(state, ())

    def _create(self, state: RoomState, events: Sequence[Event]) -> None:
        params = (
            state.room_id,
            state.workflow_id,
            state.status.value,
            state.version,
            state.created_at,
            due_at(state),
            _dumps(serde.state_to_dict(state)),
            *_batch(events),
            bool(events),
        )
        rows = self._write(_CREATE, params, state.room_id, 0)
        if rows[0][0] == 0:
            raise RoomExistsError(state.room_id)

    def get(self, room_id: RoomId) -> RoomState:
        state = self.find(room_id)
        if state is None:
            raise RoomNotFoundError(room_id, self.where)
        return state

    def find(self, room_id: RoomId) -> RoomState | None:
        rows = self._rows("SELECT body FROM rooms WHERE id = %s", (room_id,))
        return self._decode_state(room_id, rows[0][0]) if rows else None

    def _decode_state(self, room_id: str, body: Any) -> RoomState:
        where = f"{self.where}, table rooms, row id={room_id!r}"
        try:
            state = serde.state_from_dict(_json(body))
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
        self._update(state, (), expected_version, lease)

    def _update(
        self,
        state: RoomState,
        events: Sequence[Event],
        expected_version: int,
        lease: Lease | None,
    ) -> None:
        params: list[Any] = [
            state.status.value,
            state.version,
            _dumps(serde.state_to_dict(state)),
            due_at(state),
            state.room_id,
            expected_version,
        ]
        if lease is not None:
            params.append(lease.token)
        if events:
            params += _batch(events)
            query = _COMMIT if lease is None else _COMMIT_FENCED
        else:
            query = _UPDATE if lease is None else _UPDATE_FENCED
        rows = self._write(query, params, state.room_id, expected_version)
        if not events:
            rows = [(len(rows),)]
        if rows[0][0] == 0:
            if not self._rows("SELECT 1 FROM rooms WHERE id = %s", (state.room_id,)):
                raise RoomNotFoundError(state.room_id, self.where)
            raise StaleRoomError(state.room_id, expected_version)

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
            # a row comparison: an index ordered (created_at DESC, id DESC) is read from it
            where.append(sql.SQL("(created_at, id) < (%s, %s)"))
            params += [int(before[0]), str(before[1])]
        statement = sql.SQL(
            "SELECT id, body FROM rooms {} ORDER BY created_at DESC, id DESC LIMIT %s"
        )
        rows = self._rows(statement.format(_where(where)), (*params, int(limit)))
        out = []
        for room_id, body in rows:
            try:
                out.append(self._decode_state(room_id, body))
            except CorruptRoomError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
        return out

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        """One ``GROUP BY status``, which the index ``rooms_by_status`` (status, created_at,
        id) can serve alone (an index-only scan where the table is vacuumed)."""
        where, params = _room_filters(None, workflow_id, query)
        statement = sql.SQL("SELECT status, count(*) FROM rooms {} GROUP BY status")
        counts = zero_counts()
        for status, n in self._rows(statement.format(_where(where)), params):
            if status in counts:  # a row of no known status is `openrooms db check`'s
                counts[status] = int(n)
        return counts

    def count_rooms(self, prefix: str) -> int:
        if not prefix:
            return int(self._rows("SELECT count(*) FROM rooms")[0][0])
        if prefix[-1] < "\U0010ffff" and not "\ud7ff" <= prefix[-1] < "\ue000":
            # ids are COLLATE "C" (code-point order): a range on the primary key
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            rows = self._rows(
                "SELECT count(*) FROM rooms WHERE id >= %s AND id < %s", (prefix, upper)
            )
        else:
            rows = self._rows("SELECT count(*) FROM rooms WHERE starts_with(id, %s)", (prefix,))
        return int(rows[0][0])

    def due_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        rows = self._rows(
            "SELECT r.id FROM rooms r LEFT JOIN leases l ON l.room_id = r.id "
            "WHERE r.due_at IS NOT NULL AND r.due_at <= %s "
            "AND (l.owner IS NULL OR l.expires_at <= %s) "
            "ORDER BY r.due_at, r.id LIMIT %s",
            (now, now, int(limit)),
        )
        return [RoomId(r[0]) for r in rows]

    def expired_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        """Running or queued rooms whose lease expired unreleased (their runner died), the
        earliest expiry first, then by id: what a sweeper re-enqueues."""
        rows = self._rows(
            "SELECT l.room_id FROM leases l JOIN rooms r ON r.id = l.room_id "
            "WHERE l.owner IS NOT NULL AND l.expires_at <= %s "
            "AND r.status IN ('running', 'queued') "
            "ORDER BY l.expires_at, l.room_id LIMIT %s",
            (now, int(limit)),
        )
        return [RoomId(r[0]) for r in rows]

    def next_wake_at(self) -> int | None:
        # the earliest due room nobody holds bounds the answer; held rooms due before it
        # may wake earlier, at their lease's expiry
        rows = self._rows(
            "WITH free AS (SELECT min(r.due_at) AS at FROM rooms r "
            "  LEFT JOIN leases l ON l.room_id = r.id "
            "  WHERE r.due_at IS NOT NULL AND l.owner IS NULL), "
            "held AS (SELECT min(greatest(r.due_at, l.expires_at)) AS at FROM rooms r "
            "  JOIN leases l ON l.room_id = r.id "
            "  WHERE r.due_at IS NOT NULL AND l.owner IS NOT NULL) "
            "SELECT least((SELECT at FROM free), (SELECT at FROM held))"
        )
        at = rows[0][0]
        return None if at is None else int(at)

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        params = (room_id, owner, ttl_ms, now, force, None, None, None, None, None, None)
        return self._leased(room_id, params, (), release=False, expected_version=-1)

    def _leased(
        self,
        room_id: str,
        params: tuple[Any, ...],
        events: Sequence[Event],
        *,
        release: bool,
        expected_version: int,
    ) -> Lease:
        query_params = (*params, *_batch(events), release)
        rows = self._write(_LEASED, query_params, room_id, expected_version)
        code, token, expires_at, recoveries, owner = rows[0]
        if code == 1:
            raise RoomNotFoundError(room_id, self.where)
        if code == 2:
            raise StaleRoomError(room_id, expected_version)
        if code == 3:
            raise RoomLeasedError(room_id, owner, expires_at)
        return Lease(RoomId(room_id), owner, token, expires_at, recoveries)

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        renewed = Lease(lease.room_id, lease.owner, lease.token, now + ttl_ms, lease.recoveries)
        rows = self._write(
            "UPDATE leases SET expires_at = %s WHERE room_id = %s AND token = %s AND owner = %s "
            "RETURNING recoveries",
            (renewed.expires_at, lease.room_id, lease.token, lease.owner),
        )
        if not rows:
            raise StaleRoomError(lease.room_id, -1)
        return renewed

    def release_lease(self, lease: Lease) -> None:
        # the row stays, so the next token is still higher than every earlier one
        self._write(
            "UPDATE leases SET owner = NULL, expires_at = 0, recoveries = 0 "
            "WHERE room_id = %s AND token = %s RETURNING 1",
            (lease.room_id, lease.token),
        )

    def find_lease(self, room_id: RoomId) -> Lease | None:
        rows = self._rows(
            "SELECT owner, token, expires_at, recoveries FROM leases "
            "WHERE room_id = %s AND owner IS NOT NULL",
            (room_id,),
        )
        if not rows:
            return None
        owner, token, expires_at, recoveries = rows[0]
        return Lease(room_id, owner, token, expires_at, recoveries)

    def put_workflow(self, workflow: StoredWorkflow) -> bool:
        rows = self._write(
            "WITH i AS (INSERT INTO workflows (id, version, digest, body, created_at) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id, version) DO NOTHING RETURNING 1) "
            "SELECT (SELECT count(*) FROM i), "
            "(SELECT digest FROM workflows WHERE id = %s AND version = %s)",
            (
                workflow.id,
                workflow.version,
                workflow.digest,
                _dumps(workflow.definition),
                workflow.created_at,
                workflow.id,
                workflow.version,
            ),
        )
        inserted, digest = rows[0]
        if inserted:
            return True
        if digest is None:  # inserted by a transaction that committed after our snapshot
            digest = self._rows(
                "SELECT digest FROM workflows WHERE id = %s AND version = %s",
                (workflow.id, workflow.version),
            )[0][0]
        if digest != workflow.digest:
            raise WorkflowConflictError(workflow.id, workflow.version)
        return False

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        if version is None:
            rows = self._rows(
                "SELECT id, version, digest, body, created_at FROM workflows WHERE id = %s "
                "ORDER BY version DESC LIMIT 1",
                (workflow_id,),
            )
        else:
            rows = self._rows(
                "SELECT id, version, digest, body, created_at FROM workflows "
                "WHERE id = %s AND version = %s",
                (workflow_id, version),
            )
        if not rows:
            raise WorkflowNotFoundError(workflow_id, version)
        return self._decode_workflow(rows[0])

    def list_workflows(self) -> list[StoredWorkflow]:
        rows = self._rows(
            "SELECT DISTINCT ON (id) id, version, digest, body, created_at FROM workflows "
            "ORDER BY id, version DESC"
        )
        return [self._decode_workflow(r) for r in rows]

    def _decode_workflow(self, row: Sequence[Any]) -> StoredWorkflow:
        return _workflow_from_row(self.where, row)

    # EventLog

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        if not events:
            return
        room_id, first = events[0].room_id, events[0].seq
        token = None if lease is None else lease.token
        rows = self._write(
            "SELECT openrooms_append(%s, %s, %s, %s, %s)",
            (room_id, token, *_batch(events)),
            room_id,
            first - 1,
        )
        if rows[0][0] != 0:
            raise StaleRoomError(room_id, first - 1)

    def fence(self, room_id: RoomId, token: int) -> None:
        rows = self._write(
            "INSERT INTO log_fences AS f (room_id, token) SELECT %s, %s "
            "WHERE NOT EXISTS (SELECT 1 FROM rooms WHERE id = %s AND lease_token > %s) "
            "ON CONFLICT (room_id) DO UPDATE SET token = excluded.token "
            "WHERE f.token <= excluded.token RETURNING 1",
            (room_id, token, room_id, token),
            room_id,
        )
        if not rows:
            raise StaleRoomError(room_id, -1)

    def read(
        self,
        room_id: RoomId,
        *,
        after: int = 0,
        limit: int | None = None,
        min_level: Level | None = None,
        types: Sequence[EventType] | None = None,
    ) -> list[Event]:
        query = _READ
        if limit is not None and min_level is None and types is None:
            query += " LIMIT %s"  # every batch holds an event: *limit* batches are enough
            rows = self._rows(query, (room_id, room_id, after + 1, int(limit) + 1))
        else:
            rows = self._rows(query, (room_id, room_id, after + 1))
        decoded = (e for row in rows for e in self._decode_events(room_id, *row))
        return select_events(decoded, after=after, limit=limit, min_level=min_level, types=types)

    def _decode_events(self, room_id: RoomId, first: int, last: int, body: Any) -> list[Event]:
        """An events row's batch, or CorruptRoomError naming the schema and row."""
        where = f"{self.where}, table events, row room_id={room_id!r} first_seq={first}"
        try:
            items = _json(body)
            if not isinstance(items, list):
                raise ValueError(f"the body is a JSON {type(items).__name__}, not an array")
            events = [_event_from_row(room_id, item) for item in items]
        except ValueError as exc:
            raise CorruptRoomError(room_id, where, str(exc)) from None
        except CorruptRoomError as exc:
            raise CorruptRoomError(room_id, f"{where}, {exc.where}", exc.problem) from None
        if [e.seq for e in events] != list(range(first, last + 1)):
            raise CorruptRoomError(room_id, where, f"the body is not events {first}..{last}")
        return events

    def last_seq(self, room_id: RoomId) -> int:
        rows = self._rows(
            "SELECT last_seq FROM events WHERE room_id = %s ORDER BY first_seq DESC LIMIT 1",
            (room_id,),
        )
        return int(rows[0][0]) if rows else 0

    def wait_for_events(self, room_id: RoomId, after_seq: int, timeout_s: float) -> bool:
        """Block until the room's log holds an event past *after_seq*, or *timeout_s* passes.

        Listens (``LISTEN openrooms_events``) on a connection of its own and, while it waits,
        holds the room's follower lock (shared), which makes commits to the room notify; so
        a commit by any process wakes it at once. A notification of another room, or one that
        arrived before the call, leads to a check, not a return.

        Returns:
            True if the log grew past *after_seq*, False on timeout.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        key = _room_key(self.schema, room_id)
        lock = (FOLLOW_LOCK_CLASS, f"{self.schema}/{room_id}")
        with self._listen_lock, self._errors():
            conn = self._listening()
            try:
                # a commit holding the lock ends first; every commit after notifies
                conn.execute("SELECT pg_advisory_lock_shared(%s, hashtext(%s))", lock)
                try:
                    if self.last_seq(room_id) > after_seq:
                        return True
                    while (remaining := deadline - time.monotonic()) > 0:
                        for note in conn.notifies(timeout=remaining, stop_after=1):
                            if note.payload == key and self.last_seq(room_id) > after_seq:
                                return True
                    return False
                finally:
                    conn.execute("SELECT pg_advisory_unlock_shared(%s, hashtext(%s))", lock)
            except BaseException:
                self._close_listener()
                raise

    def _listening(self) -> psycopg.Connection[Any]:
        if self._listener is None:
            conn = psycopg.connect(self._target.conninfo, autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self._listener = conn
        return self._listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

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
            self._create(state, events)
        else:
            self._update(state, events, expected_version, lease)

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
        params = (
            state.room_id,
            owner,
            ttl_ms,
            now,
            force,
            None,
            *_state_params(state, expected_version),
        )
        return self._leased(
            state.room_id,
            params,
            events,
            release=release,
            expected_version=expected_version,
        )

    def commit_and_release(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        lease: Lease,
    ) -> None:
        params = (
            state.room_id,
            None,
            0,
            0,
            False,
            lease.token,
            *_state_params(state, expected_version),
        )
        self._leased(state.room_id, params, events, release=True, expected_version=expected_version)

    def check(self, *, split: bool = False) -> list[str]:
        """Every problem in the schema's rows (``openrooms db check``): each rooms row must
        decode to the room it is filed under, with ``due_at`` as its state says; each events
        row to its batch, numbered ``first_seq..last_seq`` without gaps between rows; each
        workflows row to a JSON object. Events of a room with no rooms row are reported too,
        unless *split* (this database is only the state store or only the log of a runtime).

        Returns:
            One line per problem (``where: what``); an empty list for a sound schema.

        Raises:
            BackendUnavailableError: the database cannot be read.
        """
        problems: list[str] = []
        # one snapshot for the whole pass
        with self._errors(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            room_ids = set()
            for room_id, body, stored_due in conn.execute(
                "SELECT id, body, due_at FROM rooms ORDER BY id"
            ):
                room_ids.add(room_id)
                try:
                    state = self._decode_state(room_id, body)
                except CorruptRoomError as exc:
                    problems.append(f"{exc.where}: {exc.problem}")
                    continue
                if stored_due != due_at(state):
                    problems.append(
                        f"{self.where}, table rooms, row id={room_id!r}: due_at is "
                        f"{stored_due}, its state says {due_at(state)}; a worker would wake "
                        "it at the wrong time"
                    )
            expected: dict[str, int] = {}
            for room_id, first, last, body in conn.execute(
                "SELECT room_id, first_seq, last_seq, body FROM events ORDER BY room_id, first_seq"
            ):
                where = f"{self.where}, table events, row room_id={room_id!r} first_seq={first}"
                if not split and room_id not in room_ids and room_id not in expected:
                    problems.append(f"{where}: events of a room that has no rooms row")
                if first != expected.get(room_id, 1):
                    problems.append(f"{where}: expected first_seq {expected.get(room_id, 1)}")
                expected[room_id] = last + 1
                try:
                    self._decode_events(room_id, first, last, body)
                except CorruptRoomError as exc:
                    problems.append(f"{exc.where}: {exc.problem}")
            for row in conn.execute(
                "SELECT id, version, digest, body, created_at FROM workflows ORDER BY id, version"
            ):
                try:
                    self._decode_workflow(row)
                except CorruptDataError as exc:
                    problems.append(f"{exc.where}: {exc.problem}")
        return problems

    def close(self) -> None:
        with self._listen_lock:
            self._close_listener()
        self._pool.close()


def _state_params(state: RoomState, expected_version: int) -> tuple[Any, ...]:
    """openrooms_leased's p_expected .. p_due for a commit of *state*."""
    return (
        expected_version,
        state.status.value,
        state.version,
        _dumps(serde.state_to_dict(state)),
        due_at(state),
    )


def _batch(events: Sequence[Event]) -> tuple[int | None, int | None, str | None]:
    """The events row of a commit: first_seq, last_seq and the JSON array of compact rows
    (all None without events)."""
    if not events:
        return None, None, None
    first, last = events[0].seq, events[-1].seq
    if last - first != len(events) - 1:
        raise StaleRoomError(events[0].room_id, first - 1)  # not one gapless run
    return first, last, _dumps(_event_rows(events))


def upgrade(url: str, *, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the schema *url* names to *target* (the latest version by default); create
    the schema and its tables if there are none. Idempotent, and safe when several
    processes run it at once (a transaction-scoped advisory lock serialises them).

    Returns:
        The schema version before and after.

    Raises:
        BackendConfigError: a bad URL, or a schema newer than this OpenRooms.
        BackendUnavailableError: the server cannot be reached.
    """
    where = _Target(url)
    with _driver_errors(where), psycopg.connect(where.conninfo, autocommit=True) as conn:
        before, after = migrate(conn, where.schema, target=target)
    if before > SCHEMA_VERSION:
        raise _newer(where, before)
    return before, after


def _newer(target: _Target, found: int) -> BackendConfigError:
    return BackendConfigError(
        _BACKEND,
        f"{target.where} has schema version {found}, newer than this OpenRooms knows "
        f"({SCHEMA_VERSION}); upgrade OpenRooms",
    )


@contextlib.contextmanager
def _driver_errors(target: _Target) -> Iterator[None]:
    """Re-raise driver failures as OpenRooms errors naming the host, never the password."""
    try:
        yield
    except psycopg.OperationalError as exc:  # psycopg_pool.PoolTimeout too
        raise BackendUnavailableError(
            _BACKEND, f"cannot use {target.where}: {_scrub(target, exc)}"
        ) from exc
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise _read_only_error(target) from exc
    except psycopg.Error as exc:
        raise BackendError(
            _BACKEND, f"{target.where}: {type(exc).__name__}: {_scrub(target, exc)}"
        ) from exc
    except UnicodeEncodeError as exc:  # a lone surrogate cannot be sent as UTF-8
        bad = exc.object[exc.start : exc.start + 1]
        raise UnstorableValueError(
            "a value for the database",
            "$",
            f"is a string with a lone surrogate ({bad!a}), which is not valid Unicode text",
        ) from None


def _scrub(target: _Target, exc: BaseException) -> str:
    """The driver's message on one line, without the password (libpq's never holds it,
    but a message is not the place to find out)."""
    text = " ".join(str(exc).split())
    return text.replace(target.password, "***") if target.password else text


def _read_only_error(target: _Target) -> BackendError:
    return BackendError(
        _BACKEND, f"{target.where} was opened read-only; open it without read_only to write"
    )
