"""The storage and queue protocols the runner needs, and nothing more.

Our own implementations name the protocol as a base class so mypy checks their
signatures; third-party backends only have to match the shape.

Every store may be called from more than one thread (the runner's IO thread and its
lease keeper); each call must be safe to make concurrently with the others.

A store may say how the runner should call it with an optional class attribute
``may_block``: ``False`` when no call ever waits on IO or another process (the memory
store), so the runner calls it inline on its event loop; ``True`` (the default, also when
the attribute is missing) when a call may wait (a network store), so the runner makes
every call from a dedicated IO thread and its event loop never stalls. A store may also
offer ``call_without_waiting(fn, *args, **kwargs)``: it calls *fn*, and where a call to
the store inside it would have to wait (for a lock, say) raises
:class:`~openrooms.errors.WouldBlockError` at once, having done nothing; the runner then
makes its calls inline first and sends only those to the IO thread (SQLite: a commit
costs less than a thread hand-off, but another process may hold the write lock).

Two optional :class:`StateStore` methods serve workers on many machines (the sweeper and
the recovery cap, :mod:`openrooms.sweeper`); :func:`expired_rooms` and :func:`store_clock_ms`
call them where a store has them:

``expired_rooms(now: int, *, limit: int = 100) -> list[RoomId]``
    Rooms whose runner died: status ``running`` or ``queued``, holding a lease that was
    not released and whose ``expires_at <= now``; ordered by ``expires_at``, then id; at
    most *limit*. A released lease (its runner let go: the room waits, sleeps off its
    lease, or was stopped on purpose) never makes a room expired; neither does a live
    lease, nor the absence of one. :meth:`StateStore.due_rooms` already holds such rooms
    that have a timer or are queued: a room may be in both lists.

``clock_ms() -> int``
    The store's own clock, ms since the epoch (Postgres ``clock_timestamp()``, Redis
    ``TIME``, memory and SQLite ``time.time()``). Lease expiry is judged against it: a
    runtime keeps its offset from the local clock (:class:`~openrooms.runtime.Runtime`),
    and a sweeper passes it as *now*, so workers whose clocks drift still agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import attrs

from openrooms.errors import CorruptRoomError
from openrooms.events import Event, EventType, Level
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId

__all__ = [
    "AtomicStore",
    "EventLog",
    "JobQueue",
    "Lease",
    "LeasingStore",
    "StateStore",
    "StoredWorkflow",
    "due_at",
    "expired_rooms",
    "matches_query",
    "store_clock_ms",
    "zero_counts",
]


@attrs.frozen(slots=True)
class Lease:
    """The right to run one room, until ``expires_at`` (ms).

    ``token`` (the fencing token) grows with every acquisition, so a save carrying an
    older token — from a runner that lost its lease — is refused.

    ``recoveries`` counts how many times in a row the room was taken over from a runner
    that never let go: :meth:`StateStore.acquire_lease` (and
    :meth:`LeasingStore.acquire_and_commit`) give the new lease the previous lease's
    ``recoveries + 1`` when the room's lease was *not released* (it expired, or it is
    taken by force, while its holder never called :meth:`StateStore.release_lease`: a
    crashed or stalled runner), and ``0`` when there was no lease or it was released.
    :meth:`StateStore.renew_lease` keeps it; a released lease's count is gone (the next
    acquisition starts again from 0). A runner that takes a room whose count is above the
    runtime's ``max_recoveries`` fails the room ("max recovery attempts exceeded") instead
    of running the node that keeps killing its runners.
    """

    room_id: RoomId
    owner: str
    token: int
    expires_at: int
    recoveries: int = 0


@attrs.frozen(slots=True)
class StoredWorkflow:
    """A registered workflow definition as stored: its file-format dict and content digest."""

    id: str
    version: int
    digest: str
    definition: dict[str, Any]
    created_at: int


def due_at(state: RoomState) -> int | None:
    """When *state* next needs a runner with nobody asking (ms), or None.

    A running room's retry is due at its ``wake_at`` and a waiting room's timeout at its
    ``wake_at``; a room queued for a worker is due from when it was queued (``updated_at``).
    Stores index this to answer :meth:`StateStore.due_rooms`.
    """
    status = state.status
    if status is _RUNNING or status is _WAITING:
        return state.wake_at
    if status is _QUEUED:
        return state.updated_at
    return None


# module constants: a lookup on an Enum class is slow in Python 3.11 (see engine._RUNNING)
_RUNNING: Final = RoomStatus.RUNNING
_WAITING: Final = RoomStatus.WAITING
_QUEUED: Final = RoomStatus.QUEUED


def matches_query(state: RoomState, query: str | None) -> bool:
    """Whether *state* is one of the rooms :meth:`StateStore.list_rooms`'s *query* selects:
    its id or its workflow id starts with *query* (case-sensitive, literal; None and ``""``
    select every room)."""
    return query is None or state.room_id.startswith(query) or state.workflow_id.startswith(query)


def zero_counts() -> dict[str, int]:
    """Every :class:`RoomStatus` value with a count of 0, in declaration order: what
    :meth:`StateStore.status_counts` starts from."""
    return {status.value: 0 for status in RoomStatus}


def expired_rooms(store: object, now: int, *, limit: int = 100) -> list[RoomId]:
    """*store*'s ``expired_rooms(now, limit=limit)`` (see the module docstring), or ``[]``
    for a store without it (its crashed rooms are found by ``due_rooms`` only)."""
    method = getattr(store, "expired_rooms", None)
    if method is None:
        return []
    found: list[RoomId] = method(now, limit=limit)
    return found


def store_clock_ms(store: object) -> int | None:
    """*store*'s ``clock_ms()`` (see the module docstring), or None for a store without it."""
    method = getattr(store, "clock_ms", None)
    if method is None:
        return None
    return int(method())


class StateStore(Protocol):
    """Latest state of every room, leases, and registered workflow definitions.

    Writes are compare-and-set on ``RoomState.version``.
    """

    def create(self, state: RoomState) -> None:
        """Store a new room. Raises RoomExistsError if the id is taken."""

    def get(self, room_id: RoomId) -> RoomState:
        """Return the room's state.

        Raises:
            RoomNotFoundError: there is none.
            CorruptRoomError: the stored state does not decode.
        """

    def find(self, room_id: RoomId) -> RoomState | None:
        """Return the room's state, or None. Raises CorruptRoomError as :meth:`get`."""

    def replace(
        self, state: RoomState, *, expected_version: int, lease: Lease | None = None
    ) -> None:
        """Store *state* if the stored version is *expected_version* and, when *lease* is given,
        the room's current lease token is still ``lease.token``; else raise StaleRoomError."""

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
        """Rooms, most recently created first (by ``created_at``, then id, both descending;
        ids compare in code-point order), optionally filtered.

        Args:
            status: only rooms with this status.
            workflow_id: only rooms of this workflow id (exactly).
            query: only rooms whose id *or* workflow id starts with it: a case-sensitive
                prefix, matched literally (``%``, ``_`` and ``*`` are no wildcards); see
                :func:`matches_query`.
            before: a keyset cursor ``(created_at, room_id)``: only rooms strictly older,
                that is whose ``(created_at, room_id)`` is below it; the last room of a page
                is the cursor of the next, so a listing walks every room exactly once while
                rooms are added.
            limit: at most this many rooms.
            on_corrupt: see Raises.

        Raises:
            CorruptRoomError: a stored room does not decode, and *on_corrupt* is None; when
                it is given, each such room is passed to it and left out of the list.
        """

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        """How many rooms have each status, exactly: every :class:`RoomStatus` value is a
        key (0 when no room has it). *query* and *workflow_id* filter as in
        :meth:`list_rooms`. A room whose stored state does not decode is counted by the
        status its row says."""

    def count_rooms(self, prefix: str) -> int:
        """How many rooms have an id that starts with *prefix* (a room's sub-workflow
        rooms, at every depth, have ids that start with its own id and a ``.``)."""

    def due_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        """Rooms a worker should run at *now*, the earliest due first (by :func:`due_at`,
        then id): a retry whose backoff has passed, a wait whose timeout has passed, a room
        queued for a worker. Rooms whose lease is held and unexpired at *now* are left out.
        """

    def next_wake_at(self) -> int | None:
        """The earliest time (ms) :meth:`due_rooms` will return a room, or None if no room
        has a timer or is queued: a room's :func:`due_at`, or, while its lease is held, the
        later of that and the lease's expiry. A worker sleeps until then."""

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        """Take the room's lease with a new fencing token, expiring at ``now + ttl_ms``, its
        ``recoveries`` counted as :class:`Lease` says (previous + 1 over a lease that was
        not released, else 0).

        Raises:
            RoomNotFoundError: there is no such room.
            RoomLeasedError: another owner holds an unexpired lease (and *force* is false).
        """

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        """Extend *lease*. Raises StaleRoomError if it was lost (expired and taken)."""

    def release_lease(self, lease: Lease) -> None:
        """Give up *lease*; does nothing if it was already lost. The store remembers that it
        was released (not merely expired): the next lease's ``recoveries`` is 0, and the
        room is not among its ``expired_rooms``."""

    def find_lease(self, room_id: RoomId) -> Lease | None:
        """The room's current lease, expired or not (with its ``recoveries``), or None once
        released."""

    def put_workflow(self, workflow: StoredWorkflow) -> bool:
        """Register a definition; True if new, False if identical content was there.

        Raises:
            WorkflowConflictError: different content is registered under the same id + version.
        """

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        """A definition (the latest version when *version* is None).

        Raises:
            WorkflowNotFoundError: none is registered.
        """

    def list_workflows(self) -> list[StoredWorkflow]:
        """The latest version of every registered workflow, by id."""

    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""


class EventLog(Protocol):
    """Append-only per-room logs with gapless sequence numbers.

    The log is the truth, so where state and log are different stores it is also the
    fencing authority: each room has a *fence*, the highest lease token the log has seen,
    and an append carrying a lease with a lower token is refused. A runner raises the fence
    to its token (:meth:`fence`) right after it takes the lease and before it reads the log;
    every append accepted before that is part of what it reads, and every later one from a
    runner with an older lease is refused.
    """

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        """Append events, all at once or none, checked atomically with the append: the first
        event's ``seq`` must follow the room's last one and, when *lease* is given, its token
        must not be lower than the room's fence (a higher token raises the fence to it).

        Raises:
            StaleRoomError: a sequence number is taken (another writer got there first), or
                *lease* is older than the room's fence (its holder lost it).
        """

    def fence(self, room_id: RoomId, token: int) -> None:
        """Raise the room's fence to *token*: from now on appends carrying a lower token are
        refused. Atomic with appends; *token* equal to the fence does nothing.

        Raises:
            StaleRoomError: the fence is already higher (a newer lease holder fenced it).
        """

    def read(
        self,
        room_id: RoomId,
        *,
        after: int = 0,
        limit: int | None = None,
        min_level: Level | None = None,
        types: Sequence[EventType] | None = None,
    ) -> list[Event]:
        """Events with ``seq > after``, in order, optionally filtered.

        Raises:
            CorruptRoomError: a stored event of the room does not decode.
        """

    def last_seq(self, room_id: RoomId) -> int:
        """The highest sequence number of the room's log (0 if empty)."""

    def close(self) -> None:
        """Release connections."""


class AtomicStore(StateStore, EventLog, Protocol):
    """A store that keeps state and log in one database and commits both in one transaction."""

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        """Append *events* and save *state* atomically.

        ``expected_version=None`` creates the room (RoomExistsError if it exists); otherwise
        the save is compare-and-set as in :meth:`StateStore.replace`.
        """


class LeasingStore(AtomicStore, Protocol):
    """An :class:`AtomicStore` that also takes and lets go of a room's lease in the
    transaction of a commit: a short room's run (start, a chain of pure nodes, end) is then
    one transaction, not three (acquire, commit, release). Optional: the runner uses these
    methods where a store that holds both state and log has both, and otherwise makes the
    separate calls."""

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
        """:meth:`~StateStore.acquire_lease` then :meth:`~AtomicStore.commit` under the new
        lease, in one transaction; with *release*, :meth:`~StateStore.release_lease` too.
        Returns the lease (no longer held, with *release*).

        Raises:
            RoomLeasedError: another live owner holds the lease (and not *force*).
            StaleRoomError: the room is not at *expected_version*.
            RoomNotFoundError: no such room.
            In each case nothing was saved and no lease was taken.
        """
        ...

    def commit_and_release(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        lease: Lease,
    ) -> None:
        """:meth:`~AtomicStore.commit` under *lease*, then release it, in one transaction.

        Raises:
            StaleRoomError: the version or lease check failed; nothing was saved and the
                lease was not released.
        """
        ...


class JobQueue(Protocol):
    """Where runs of rooms are queued for workers.

    A job names only the room; whoever runs it takes the room's lease first, so a room
    queued twice never has two runners (the second job finds it leased, or done).
    """

    def enqueue(self, room_id: RoomId, *, delay_s: float = 0.0) -> bool:
        """Queue a run of *room_id*, after *delay_s* seconds.

        Returns:
            True if a job was queued; False if the room already has one that starts no
            later (queueing a room again while its job waits adds nothing).

        Raises:
            BackendUnavailableError: the queue cannot be reached.
        """

    def close(self) -> None:
        """Stop accepting jobs and release resources."""
