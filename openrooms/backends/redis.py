"""State, leases, workflows and logs in Redis (redis-py): ``redis://`` and ``rediss://``.

Every write is one Lua script (:mod:`openrooms.backends.redis_scripts`; loaded once, then
called by SHA with ``EVALSHA``), so its checks and its writes happen atomically, with nothing
written when a check fails: a step's commit checks the room's version, its lease token and
the log's next sequence number, then saves the state, moves the room in the due index and
appends the events, in one round trip.

Keys, all under one prefix (``?prefix=``, default ``openrooms:``):

==========================  ====================================================================
``<p>room:<id>``            hash: the state, split as SQLite splits it (``b``: the scalar fields
                            as JSON; ``variables``, ``memory``, ``usage``, ``visits``: JSON,
                            rewritten only when a step changed them) and ``v`` (version), ``s``
                            (status), ``w`` (workflow id) for checks and filters
``<p>lease:<id>``           hash: ``tok`` (the fencing token, only ever growing), ``own``
                            (absent once released), ``exp`` (ms), ``rec`` (recoveries)
``<p>log:<id>``             stream: event *seq* is entry ``0-<seq>``, field ``e`` its JSON row
``<p>fence:<id>``           the log's fence (:meth:`EventLog.fence`), where this is a split log
``<p>rooms``                sorted set: room ids by ``created_at`` (listing, newest first)
``<p>ids``                  sorted set: room ids, all scored 0 (prefix counts by lex range)
``<p>due``                  sorted set: room id -> :func:`~openrooms.backends.base.due_at`;
                            equal scores sort by id, as SQLite's ``(due_at, id)`` index
``<p>wf:<id>``              hash: ``d:<version>`` digest, ``b:<version>`` the definition
``<p>workflows``            sorted set: workflow ids, all scored 0
==========================  ====================================================================

The log is a stream rather than a list: an entry's id is its sequence number, so a read
after a cursor is an ``XRANGE`` from ``0-<after + 1>`` (a list needs the index arithmetic and
cannot refuse an out-of-order append itself: ``XADD`` refuses an id at or below the last),
and a live tail can later block on ``XREAD``. One entry per event (not per commit, as in
SQLite): ``COUNT`` then cuts a read at an event.

The due index and the lease checks of :meth:`due_rooms`, and the filtered listings and counts
(:meth:`list_rooms`, :meth:`status_counts`), read keys a script is not given in ``KEYS`` (a
room's lease hash, its state hash): fine on one Redis server or a replicated one, not on Redis
Cluster, which this store does not support.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.exceptions

from openrooms import serde
from openrooms.backends import redis_scripts as scripts
from openrooms.backends.base import Lease, LeasingStore, StoredWorkflow, due_at, zero_counts
from openrooms.backends.selection import select_events

# the stored formats are SQLite's: the same JSON for a state's body and containers, for an
# event's row and for a workflow's definition, so the two stores' data read the same
from openrooms.backends.sqlite import (
    _dumps,
    _event_from_row,
    _event_row,
    _json,
    _scalars_json,
)
from openrooms.errors import (
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    CorruptDataError,
    CorruptRoomError,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    StaleRoomError,
    UnstorableValueError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from openrooms.events import Event, EventType, Level
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId
from openrooms.urls import display_url

__all__ = ["DEFAULT_PREFIX", "RedisStore", "open_redis"]

DEFAULT_PREFIX: Final = "openrooms:"

PREFIX: Final = re.compile(r"[A-Za-z0-9_.:/{}-]{1,64}")
"""What a key prefix may be: no spaces and no glob characters (``*?[]\\``), so that the
keys of one deployment are exactly those ``SCAN MATCH <prefix>*`` finds."""

_OPTIONS: Final = {
    "prefix": str,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": int,
    "client_name": str,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
}
"""The URL's query options: ours (``prefix``) and those passed to redis-py."""

_CONTAINERS: Final = ("variables", "memory", "usage", "visits")
_STATE_FIELDS: Final = ("b", *_CONTAINERS)
_KEEP: Final = 4096
"""Rooms whose last written containers a store remembers (to skip unchanged ones)."""
_PAGE: Final = 256
"""Log entries read per round trip."""
_SCAN_PAGE: Final = 1000
"""Rooms a listing's filter or a count reads in one script call: a script holds the server,
and 1,000 rooms took it about 2 ms (bench/dashboard.py, 10,000 rooms)."""


def open_redis(url: str, *, read_only: bool = False) -> RedisStore:
    """Open ``redis://[user:password@]host[:port][/db][?prefix=...]`` (``rediss://`` for TLS).

    Options: ``prefix`` (every key's, default ``openrooms:``), and redis-py's
    ``socket_timeout``, ``socket_connect_timeout`` (seconds), ``health_check_interval``,
    ``client_name``, ``ssl_cert_reqs``, ``ssl_ca_certs``.

    Raises:
        BackendConfigError: a malformed URL, an unknown option or a bad value (the message
            names it; a password in the URL is never shown).
        BackendUnavailableError: the server cannot be reached (or refused the login).
    """
    shown = display_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BackendConfigError(shown, f"not a valid Redis URL: {exc}") from None
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise BackendConfigError(shown, "expected redis://host:port/db or rediss://...")
    if not parts.hostname:
        raise BackendConfigError(shown, "no host; e.g. redis://127.0.0.1:6379/0")
    db = 0
    path = parts.path.strip("/")
    if path:
        if not path.isdigit():
            raise BackendConfigError(
                shown, f"the path must be a database number (e.g. /0), not {path!r}"
            )
        db = int(path)
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = _OPTIONS.get(name)
        if kind is None:
            raise BackendConfigError(
                shown, f"unknown option {name!r}; known: {', '.join(sorted(_OPTIONS))}"
            )
        try:
            options[name] = kind(value)
        except ValueError:
            raise BackendConfigError(
                shown, f"option {name}={value!r} must be a {kind.__name__}"
            ) from None
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    return RedisStore(
        host=parts.hostname,
        port=port or 6379,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme.lower() == "rediss",
        prefix=prefix,
        read_only=read_only,
        options=options,
    )


class RedisStore(LeasingStore):
    """:class:`~openrooms.backends.base.LeasingStore` in Redis; see the module docstring.

    Args:
        host, port, db: the server and database number.
        username, password: the login (ACL user / ``requirepass``), if any.
        ssl: connect with TLS (``rediss://``).
        prefix: every key's prefix (see :data:`PREFIX` for what it may be).
        read_only: every write raises BackendError.
        options: more keyword arguments for :class:`redis.Redis` (timeouts, TLS files).

    Raises:
        BackendConfigError: a bad prefix or option.
        BackendUnavailableError: the server cannot be reached.
    """

    may_block = True
    """Every call is a network round trip: the runner makes them from its IO thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        prefix: str = DEFAULT_PREFIX,
        read_only: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(prefix, str) or not PREFIX.fullmatch(prefix):
            raise BackendConfigError(
                "redis",
                f"prefix {prefix!r} is not a key prefix: use 1 to 64 letters, digits and "
                "_ . : / { } - (e.g. openrooms: or acme-prod:)",
            )
        self.prefix = prefix
        self.read_only = read_only
        self.address = f"{host}:{port}"
        self.db = db
        self._pid = os.getpid()
        self._client: Any = None
        self.where = f"redis {host}:{port}/{db} (prefix {prefix!r})"
        """The server, database and prefix, as error messages name them (no password)."""
        # one connection, behind redis-py's lock: a runtime's calls come one at a time from
        # its IO thread anyway (and the lease keeper's), and a connection per call from the
        # pool costs a fifth of a round trip; pipelines (listing) take one from the pool
        settings: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            "socket_timeout": 30.0,
            "single_connection_client": True,
        }
        settings.update(options or {})
        try:
            with self._errors():  # the one connection is made here
                try:
                    # Any: redis-py's annotations are a union of its sync and async replies
                    self._client = redis.Redis(
                        host=host,
                        port=port,
                        db=db,
                        username=username,
                        password=password,
                        ssl=ssl,
                        **settings,
                    )
                except (TypeError, ValueError) as exc:
                    raise BackendConfigError(
                        "redis", f"bad option for {self.where}: {exc}"
                    ) from None
                self._client.ping()
        except (BackendUnavailableError, BackendConfigError):
            raise
        except BackendError as exc:  # the server refused a setting (a db out of range)
            raise BackendConfigError("redis", exc.message) from exc.__cause__
        self._lock = threading.Lock()
        # room -> (version, variables, memory, usage, visits) as last written by this store
        self._written: dict[RoomId, tuple[Any, ...]] = {}
        register = self._client.register_script
        self._commit_script = register(scripts.COMMIT)
        self._acquire_script = register(scripts.ACQUIRE)
        self._renew_script = register(scripts.RENEW)
        self._release_script = register(scripts.RELEASE)
        self._append_script = register(scripts.APPEND)
        self._fence_script = register(scripts.FENCE)
        self._due_script = register(scripts.DUE)
        self._expired_script = register(scripts.EXPIRED)
        self._next_wake_script = register(scripts.NEXT_WAKE)
        self._scan_script = register(scripts.ROOMS_SCAN)
        self._count_script = register(scripts.ROOMS_COUNT)
        self._put_workflow_script = register(scripts.PUT_WORKFLOW)
        self._rooms = prefix + "rooms"
        self._ids = prefix + "ids"
        self._due = prefix + "due"
        self._held = prefix + "held"  # unreleased leases by expiry (expired_rooms)
        self._workflows = prefix + "workflows"
        self._lease_prefix = prefix + "lease:"

    # keys: one function per kind

    def _room_key(self, room_id: str) -> str:
        return f"{self.prefix}room:{room_id}"

    def _lease_key(self, room_id: str) -> str:
        return f"{self.prefix}lease:{room_id}"

    def _log_key(self, room_id: str) -> str:
        return f"{self.prefix}log:{room_id}"

    def _fence_key(self, room_id: str) -> str:
        return f"{self.prefix}fence:{room_id}"

    def _workflow_key(self, workflow_id: str) -> str:
        return f"{self.prefix}wf:{workflow_id}"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Re-raise redis-py failures as OpenRooms errors, naming the server (never the
        password: redis-py's messages hold none, and the URL is not quoted)."""
        if os.getpid() != self._pid:
            self._after_fork()
        try:
            yield
        except redis.exceptions.AuthenticationError as exc:
            raise BackendConfigError(
                "redis", f"{self.address} (db {self.db}) refused the login: {exc}"
            ) from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise BackendUnavailableError(
                "redis", f"cannot reach {self.address} (db {self.db}): {exc}"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise BackendError("redis", f"{self.where}: {type(exc).__name__}: {exc}") from exc
        except UnicodeEncodeError as exc:  # redis-py sends UTF-8: a lone surrogate cannot go
            bad = exc.object[exc.start : exc.start + 1]
            raise UnstorableValueError(
                "a value for the database",
                "$",
                f"is a string with a lone surrogate ({bad!a}), which is not valid Unicode text",
            ) from None

    def _after_fork(self) -> None:
        """In a forked child (an RQ work horse, say): let go of the parent's connection (its
        socket is closed here, not shut down, so the parent's stays sound) and make our own on
        the next call; the pool's connections redis-py replaces itself."""
        client = self._client
        if client is not None:
            with client.single_connection_lock:
                if client.connection is not None:
                    client.connection.disconnect()
        self._pid = os.getpid()

    def _writing(self) -> None:
        if self.read_only:
            raise BackendError(
                "redis", f"{self.where} was opened read-only; open it without read_only to write"
            )

    def clock_ms(self) -> int:
        """The server's clock (``TIME``), in ms since the epoch.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        with self._errors():
            seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # StateStore

    def create(self, state: RoomState) -> None:
        self._commit(state, (), None, None, None, False)

    def get(self, room_id: RoomId) -> RoomState:
        state = self.find(room_id)
        if state is None:
            raise RoomNotFoundError(room_id, self.where)
        return state

    def find(self, room_id: RoomId) -> RoomState | None:
        with self._errors():
            row = self._client.hmget(self._room_key(room_id), _STATE_FIELDS)
        if row[0] is None:
            return None
        state = self._decode_state(room_id, row)
        if not self.read_only:
            self._remember(state)
        return state

    def _decode_state(self, room_id: str, row: Sequence[Any]) -> RoomState:
        """A room hash's (body, variables, memory, usage, visits) as a state, or
        CorruptRoomError naming the key and field."""
        where = f"{self.where}, key {self._room_key(room_id)!r}"
        try:
            fields = _json(row[0])
            if isinstance(fields, dict):
                for name, text in zip(_CONTAINERS, row[1:], strict=True):
                    if text is None:
                        raise ValueError(f"field {name} is missing")
                    try:
                        fields[name] = _json(text)
                    except ValueError as exc:
                        raise ValueError(f"field {name}: {exc}") from None
            state = serde.state_from_dict(fields)
        except ValueError as exc:
            raise CorruptRoomError(room_id, where, str(exc)) from None
        except CorruptRoomError as exc:
            raise CorruptRoomError(room_id, where, exc.problem) from None
        if state.room_id != room_id:
            raise CorruptRoomError(room_id, where, f"the body is room {state.room_id!r}")
        return state

    def _remember(self, state: RoomState) -> None:
        """Note the containers just written (or read) for *state*'s room."""
        with self._lock:
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
            )

    def replace(
        self, state: RoomState, *, expected_version: int, lease: Lease | None = None
    ) -> None:
        self._commit(state, (), expected_version, lease, None, False)

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
        """Reads ``<p>rooms`` newest first from *before* (ties on ``created_at`` in reverse
        id order, as the SQL stores), two round trips a page: a script
        (:data:`~openrooms.backends.redis_scripts.ROOMS_SCAN`) picks the ids, then their
        states are fetched. Redis has no index on status, workflow or prefix: a filtered
        listing reads the ``s`` and ``w`` fields of up to 1,000 rooms per round trip, inside
        the script, until its page is full, so a filter few rooms pass scans every room older
        than *before* (10,000 rooms: see bench/dashboard.py)."""
        limit = int(limit)
        if limit <= 0:
            return []
        args = _filter_args(self.prefix, status, workflow_id, query)
        # unfiltered, a read holds the page (and a few rooms tied with the cursor, dropped)
        count = limit + 8 if args[1:] == ["", "0", "", ""] else max(limit, _SCAN_PAGE)
        created, below = (None, b"") if before is None else (int(before[0]), before[1].encode())
        high = "+inf" if created is None else str(created)
        chosen: list[bytes] = []
        seen: set[bytes] = set()  # a room created meanwhile moves the ranks down by one
        offset = 0
        while len(chosen) < limit:
            wanted = limit - len(chosen)
            with self._errors():
                reply = self._scan_script(
                    keys=[self._rooms], args=[*args, high, offset, count, wanted]
                )
            read = int(reply[0])
            for i in range(1, len(reply), 2):
                raw = reply[i]
                if created is not None and int(float(reply[i + 1])) == created and raw >= below:
                    continue  # created in the cursor's ms, not below it in id
                if raw not in seen:
                    seen.add(raw)
                    chosen.append(raw)
            if len(reply) // 2 < wanted and read < count:
                break  # the script read to the end of the index
            offset += read
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for raw in chosen[:limit]:
                pipe.hmget(self._room_key(raw.decode()), _STATE_FIELDS)
            rows = pipe.execute()
        out: list[RoomState] = []
        for raw, row in zip(chosen, rows, strict=False):
            if row[0] is None:  # deleted since the scan
                continue
            try:
                out.append(self._decode_state(raw.decode(), row))
            except CorruptRoomError as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(exc)
        return out

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        """An exact count by a scan: a script
        (:data:`~openrooms.backends.redis_scripts.ROOMS_COUNT`) counts 1,000 rooms of
        ``<p>rooms`` a round trip (each call holds the server about 2 ms): 10 round trips
        for 10,000 rooms (bench/dashboard.py times it). Counters kept by the commit
        scripts would answer an unfiltered count at once, but every status change would
        write one more key, a filtered count would still need this scan, and counters would
        need rebuilding for data written before them."""
        args = _filter_args(self.prefix, None, workflow_id, query)
        counts = zero_counts()
        start = 0
        while True:
            with self._errors():
                reply = self._count_script(
                    keys=[self._rooms], args=[*args, start, start + _SCAN_PAGE - 1]
                )
            for i in range(1, len(reply), 2):
                name = reply[i].decode()
                if name in counts:  # a room of no known status is `openrooms db check`'s
                    counts[name] += int(reply[i + 1])
            if int(reply[0]) < _SCAN_PAGE:
                return counts
            start += _SCAN_PAGE

    def count_rooms(self, prefix: str) -> int:
        with self._errors():
            if not prefix:
                return int(self._client.zcard(self._ids))
            low = prefix.encode()
            return int(self._client.zlexcount(self._ids, b"[" + low, _lex_after(low)))

    def due_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        if limit <= 0:
            return []
        with self._errors():
            ids = self._due_script(keys=[self._due], args=[self._lease_prefix, now, int(limit)])
        return [RoomId(i.decode()) for i in ids]

    def expired_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        """Running or queued rooms whose lease expired unreleased, the earliest expiry first
        (then by id): the sweeper's rooms (see :mod:`openrooms.backends.base`)."""
        if limit <= 0:
            return []
        with self._errors():
            ids = self._expired_script(
                keys=[self._held], args=[f"{self.prefix}room:", now, int(limit)]
            )
        return [RoomId(i.decode()) for i in ids]

    def next_wake_at(self) -> int | None:
        with self._errors():
            found = self._next_wake_script(keys=[self._due], args=[self._lease_prefix])
        return None if found is None else int(found)

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        self._writing()
        expires = now + ttl_ms
        with self._errors():
            reply = self._acquire_script(
                keys=[self._room_key(room_id), self._lease_key(room_id), self._held],
                args=[owner, now, expires, "1" if force else "", room_id],
            )
        self._refusal(room_id, reply, -1)
        return Lease(room_id, owner, int(reply[1]), expires, int(reply[2]))

    def _refusal(self, room_id: RoomId, reply: Sequence[Any], expected_version: int) -> None:
        """Raise what a script's refusal (``[b'stale']``, ...) says; nothing for ``ok``."""
        what = reply[0]
        if what == b"ok":
            return
        if what == b"stale":
            raise StaleRoomError(room_id, expected_version)
        if what == b"notfound":
            raise RoomNotFoundError(room_id, self.where)
        if what == b"exists":
            raise RoomExistsError(room_id)
        if what == b"leased":
            raise RoomLeasedError(room_id, reply[1].decode(), int(reply[2]))
        raise BackendError("redis", f"{self.where}: unexpected script reply {reply!r}")

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        self._writing()
        expires = now + ttl_ms
        with self._errors():
            renewed, recoveries = self._renew_script(
                keys=[self._lease_key(lease.room_id), self._held],
                args=[lease.token, lease.owner, expires, lease.room_id],
            )
        if not renewed:
            raise StaleRoomError(lease.room_id, -1)
        return Lease(lease.room_id, lease.owner, lease.token, expires, int(recoveries))

    def release_lease(self, lease: Lease) -> None:
        self._writing()
        with self._errors():
            self._release_script(
                keys=[self._lease_key(lease.room_id), self._held],
                args=[lease.token, lease.room_id],
            )

    def find_lease(self, room_id: RoomId) -> Lease | None:
        with self._errors():
            tok, owner, expires, recoveries = self._client.hmget(
                self._lease_key(room_id), ["tok", "own", "exp", "rec"]
            )
        if owner is None or tok is None:
            return None
        return Lease(room_id, owner.decode(), int(tok), int(expires), int(recoveries or 0))

    def put_workflow(self, workflow: StoredWorkflow) -> bool:
        self._writing()
        body = _dumps({"created_at": workflow.created_at, "definition": workflow.definition})
        with self._errors():
            result = self._put_workflow_script(
                keys=[self._workflow_key(workflow.id), self._workflows],
                args=[workflow.id, workflow.version, workflow.digest, body],
            )
        if result < 0:
            raise WorkflowConflictError(workflow.id, workflow.version)
        return bool(result)

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        key = self._workflow_key(workflow_id)
        with self._errors():
            if version is None:
                versions = [int(f[2:]) for f in self._client.hkeys(key) if f.startswith(b"d:")]
                if not versions:
                    raise WorkflowNotFoundError(workflow_id, version)
                version = max(versions)
            digest, body = self._client.hmget(key, [f"d:{version}", f"b:{version}"])
        if digest is None or body is None:
            raise WorkflowNotFoundError(workflow_id, version)
        return self._decode_workflow(workflow_id, version, digest, body)

    def _decode_workflow(
        self, workflow_id: str, version: int, digest: bytes, body: bytes | None
    ) -> StoredWorkflow:
        try:
            fields = _json(body)
            if not isinstance(fields, dict) or not isinstance(fields.get("definition"), dict):
                raise ValueError("the body is not an object with a 'definition' object")
            created_at = fields.get("created_at")
            if type(created_at) is not int:
                raise ValueError(f"created_at is {created_at!r}, not a whole number")
            return StoredWorkflow(
                workflow_id, version, digest.decode(), fields["definition"], created_at
            )
        except (ValueError, UnicodeDecodeError) as exc:
            where = f"{self.where}, key {self._workflow_key(workflow_id)!r}, field b:{version}"
            raise CorruptDataError(where, str(exc)) from None

    def list_workflows(self) -> list[StoredWorkflow]:
        with self._errors():
            ids = [raw.decode() for raw in self._client.zrange(self._workflows, 0, -1)]
        return [self.get_workflow(workflow_id) for workflow_id in ids]

    # EventLog

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        if not events:
            return
        self._writing()
        room_id = events[0].room_id
        rows = [_dumps(_event_row(e)) for e in events]
        with self._errors():
            reply = self._append_script(
                keys=[self._log_key(room_id), self._fence_key(room_id), self._lease_key(room_id)],
                args=["" if lease is None else lease.token, events[0].seq, *rows],
            )
        if reply != b"ok":
            raise StaleRoomError(room_id, events[0].seq - 1)

    def fence(self, room_id: RoomId, token: int) -> None:
        self._writing()
        with self._errors():
            reply = self._fence_script(
                keys=[self._fence_key(room_id), self._lease_key(room_id)], args=[token]
            )
        if reply != b"ok":
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
        if limit is not None and limit <= 0:
            return []
        if min_level is None and types is None:  # the limit cuts the range itself
            with self._errors():
                entries = self._client.xrange(
                    self._log_key(room_id), f"0-{max(after, 0) + 1}", "+", count=limit
                )
            return [self._decode_event(room_id, entry) for entry in entries]
        decoded = (self._decode_event(room_id, e) for e in self._entries(room_id, after))
        return select_events(decoded, after=after, limit=limit, min_level=min_level, types=types)

    def _entries(self, room_id: RoomId, after: int) -> Iterator[tuple[bytes, Any]]:
        """The log's entries after *after*, fetched a page at a time as they are consumed:
        a filtered read with a limit stops fetching once it has chosen enough."""
        key, start = self._log_key(room_id), max(after, 0) + 1
        while True:
            with self._errors():
                page = self._client.xrange(key, f"0-{start}", "+", count=_PAGE)
            yield from page
            if len(page) < _PAGE:
                return
            start = int(page[-1][0].split(b"-", 1)[1]) + 1

    def _decode_event(self, room_id: RoomId, entry: tuple[bytes, dict[bytes, bytes]]) -> Event:
        entry_id, fields = entry
        where = f"{self.where}, key {self._log_key(room_id)!r}, entry {entry_id.decode()}"
        try:
            event = _event_from_row(room_id, _json(fields.get(b"e")))
        except ValueError as exc:
            raise CorruptRoomError(room_id, where, str(exc)) from None
        except CorruptRoomError as exc:
            raise CorruptRoomError(room_id, f"{where}, {exc.where}", exc.problem) from None
        if entry_id != b"0-%d" % event.seq:
            raise CorruptRoomError(room_id, where, f"holds event {event.seq}")
        return event

    def last_seq(self, room_id: RoomId) -> int:
        with self._errors():
            last = self._client.xrevrange(self._log_key(room_id), "+", "-", count=1)
        if not last:
            return 0
        return int(last[0][0].split(b"-", 1)[1])

    # AtomicStore

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        self._commit(state, events, expected_version, lease, None, False)

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
        taken = self._commit(
            state, events, expected_version, None, (owner, ttl_ms, now, force), release
        )
        assert taken is not None
        return taken

    def commit_and_release(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        lease: Lease,
    ) -> None:
        self._commit(state, events, expected_version, lease, None, True)

    def _commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        expected_version: int | None,
        lease: Lease | None,
        acquire: tuple[str, int, int, bool] | None,
        release: bool,
    ) -> Lease | None:
        """The one write of a room: create (*expected_version* None) or compare-and-set,
        under *lease* or a lease taken first (*acquire*: owner, ttl_ms, now, force), then
        the lease let go (*release*); all of it or nothing, in one script."""
        self._writing()
        room_id = state.room_id
        containers = (state.variables, state.memory, state.usage, state.visits)
        before = None if expected_version is None else self._written.get(room_id)
        if before is not None and before[0] != expected_version:
            before = None
        due = due_at(state)
        owner, now, expires, force = "", 0, 0, False
        if acquire is not None:
            owner, ttl_ms, now, force = acquire
            expires = now + ttl_ms
        args: list[Any] = [
            "" if expected_version is None else expected_version,
            "" if lease is None else lease.token,
            owner,
            now,
            expires,
            "1" if force else "",
            "1" if release else "",
            room_id,
            state.version,
            state.status.value,
            state.workflow_id,
            state.created_at,
            "" if due is None else due,
            _scalars_json(state),
        ]
        for i, value in enumerate(containers, 1):
            args.append("" if before is not None and before[i] is value else _dumps(value))
        if events:
            args.append(events[0].seq)
            args += [_dumps(_event_row(e)) for e in events]
        else:
            args.append("")
        keys = [
            self._room_key(room_id),
            self._log_key(room_id),
            self._lease_key(room_id),
            self._fence_key(room_id),
            self._rooms,
            self._ids,
            self._due,
            self._held,
        ]
        with self._errors():
            reply = self._commit_script(keys=keys, args=args)
        self._refusal(room_id, reply, -1 if expected_version is None else expected_version)
        self._remember(state)
        if acquire is None:
            return None
        return Lease(room_id, owner, int(reply[1]), expires, int(reply[2]))

    def check(self, *, split: bool = False) -> list[str]:
        """Every problem under the prefix (what ``openrooms db check`` prints): each room
        hash must decode to the room it is filed under and be in the due index at its
        :func:`~openrooms.backends.base.due_at` and in the listing; each log must decode,
        numbered 1, 2, ... without gaps; each workflow definition must decode. Logs of a room
        with no room hash are reported too, unless *split* (this is only the log or only the
        state of a runtime).

        Returns:
            One line per problem (``where: what``); an empty list when all is sound.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        problems: list[str] = []
        client = self._client
        rooms: set[str] = set()
        with self._errors():
            listed = {m.decode() for m in client.zrange(self._rooms, 0, -1)}
            due = {m.decode(): int(s) for m, s in client.zrange(self._due, 0, -1, withscores=True)}
            room_keys = sorted(k.decode() for k in client.scan_iter(match=f"{self.prefix}room:*"))
            log_keys = sorted(k.decode() for k in client.scan_iter(match=f"{self.prefix}log:*"))
        for key in room_keys:
            room_id = RoomId(key[len(self._room_key("")) :])
            rooms.add(room_id)
            try:
                with self._errors():
                    row = client.hmget(key, _STATE_FIELDS)
                state = self._decode_state(room_id, row)
            except CorruptRoomError as exc:
                problems.append(f"{exc.where}: {exc.problem}")
                continue
            where = f"{self.where}, key {key!r}"
            if due.get(room_id) != due_at(state):
                problems.append(
                    f"{where}: the due index says {due.get(room_id)}, its state says "
                    f"{due_at(state)}; a worker would wake it at the wrong time"
                )
            if room_id not in listed:
                problems.append(f"{where}: missing from {self._rooms!r} (`rooms` omits it)")
        for key in log_keys:
            room_id = RoomId(key[len(self._log_key("")) :])
            where = f"{self.where}, key {key!r}"
            if not split and room_id not in rooms:
                problems.append(f"{where}: events of a room that has no room key")
            try:
                seqs = [e.seq for e in self.read(room_id)]
            except CorruptRoomError as exc:
                problems.append(f"{exc.where}: {exc.problem}")
                continue
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"{where}: holds events {seqs[:5]}..., not 1..{len(seqs)}")
        with self._errors():
            workflows = [m.decode() for m in client.zrange(self._workflows, 0, -1)]
        for workflow_id in workflows:
            with self._errors():
                fields = client.hgetall(self._workflow_key(workflow_id))
            for name, digest in sorted(fields.items()):
                if not name.startswith(b"d:"):
                    continue
                version = int(name[2:])
                try:
                    self._decode_workflow(
                        workflow_id, version, digest, fields.get(b"b:%d" % version)
                    )
                except CorruptDataError as exc:
                    problems.append(f"{exc.where}: {exc.problem}")
        return problems

    def close(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError):
            self._client.close()


def _filter_args(
    prefix: str, status: RoomStatus | None, workflow_id: str | None, query: str | None
) -> list[str]:
    """ARGV 1-5 of the scripts' ``matches()``: room key prefix, status, whether to match the
    workflow id, the workflow id, the id-or-workflow prefix ('' for none)."""
    return [
        f"{prefix}room:",
        "" if status is None else status.value,
        "0" if workflow_id is None else "1",
        workflow_id or "",
        query or "",
    ]


def _lex_after(prefix: bytes) -> bytes:
    """The exclusive upper bound of a ``ZLEXCOUNT`` over the members starting with *prefix*:
    the prefix with its last byte below 0xff raised by one (UTF-8 sorts as code points)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"+"
    return b"(" + stripped[:-1] + bytes([stripped[-1] + 1])
