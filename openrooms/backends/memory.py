"""In-memory backends: the reference implementation, for tests, docs and benchmarks."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from openrooms.backends.base import (
    JobQueue,
    Lease,
    LeasingStore,
    StoredWorkflow,
    due_at,
    matches_query,
    zero_counts,
)
from openrooms.backends.selection import select_events
from openrooms.errors import (
    CorruptRoomError,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    StaleRoomError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from openrooms.events import Event, EventBatch, EventType, Level
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId

__all__ = ["MemoryJobQueue", "MemoryStore"]


class MemoryStore(LeasingStore):
    """State, leases, workflows and logs in dicts, guarded by one lock."""

    may_block = False
    """No call waits on IO: the runner calls it inline on its event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[RoomId, RoomState] = {}
        self._logs: dict[RoomId, _Log] = {}
        self._leases: dict[RoomId, Lease] = {}
        self._tokens: dict[RoomId, int] = {}
        self._fences: dict[RoomId, int] = {}  # the log's fence (EventLog.fence)
        self._workflows: dict[tuple[str, int], StoredWorkflow] = {}

    # StateStore

    def create(self, state: RoomState) -> None:
        with self._lock:
            self._create(state)

    def _create(self, state: RoomState) -> None:
        if state.room_id in self._states:
            raise RoomExistsError(state.room_id)
        self._states[state.room_id] = state

    def get(self, room_id: RoomId) -> RoomState:
        state = self._states.get(room_id)
        if state is None:
            raise RoomNotFoundError(room_id)
        return state

    def find(self, room_id: RoomId) -> RoomState | None:
        return self._states.get(room_id)

    def replace(
        self, state: RoomState, *, expected_version: int, lease: Lease | None = None
    ) -> None:
        with self._lock:
            self._replace(state, expected_version, lease)

    def _replace(self, state: RoomState, expected_version: int, lease: Lease | None) -> None:
        current = self._states.get(state.room_id)
        if current is None:
            raise RoomNotFoundError(state.room_id)
        if current.version != expected_version or (
            lease is not None and self._tokens.get(state.room_id) != lease.token
        ):
            raise StaleRoomError(state.room_id, expected_version)
        self._states[state.room_id] = state

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
        # states are kept as objects, never encoded, so none is ever corrupt
        with self._lock:
            states = list(self._states.values())
        rooms = [
            s
            for s in states
            if (status is None or s.status is status)
            and (workflow_id is None or s.workflow_id == workflow_id)
            and (before is None or (s.created_at, s.room_id) < before)
            and matches_query(s, query)
        ]
        return heapq.nlargest(max(int(limit), 0), rooms, key=lambda s: (s.created_at, s.room_id))

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        counts = zero_counts()
        with self._lock:
            for s in self._states.values():
                if (workflow_id is None or s.workflow_id == workflow_id) and matches_query(
                    s, query
                ):
                    counts[s.status.value] += 1
        return counts

    def count_rooms(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for room_id in self._states if room_id.startswith(prefix))

    def due_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        with self._lock:
            due = []
            for room_id, state in self._states.items():
                at = due_at(state)
                if at is None or at > now:
                    continue
                held = self._leases.get(room_id)
                if held is None or held.expires_at <= now:
                    due.append((at, room_id))
        due.sort()
        return [room_id for _, room_id in due[:limit]]

    def expired_rooms(self, now: int, *, limit: int = 100) -> list[RoomId]:
        """Running or queued rooms whose lease expired unreleased (see
        :mod:`openrooms.backends.base`); a released lease is deleted here, so any lease
        left is one its holder never let go."""
        with self._lock:
            found = [
                (lease.expires_at, room_id)
                for room_id, lease in self._leases.items()
                if lease.expires_at <= now
                and self._states[room_id].status in (RoomStatus.RUNNING, RoomStatus.QUEUED)
            ]
        found.sort()
        return [room_id for _, room_id in found[:limit]]

    def clock_ms(self) -> int:
        """The store's clock: this process's (ms since the epoch)."""
        return time.time_ns() // 1_000_000

    def next_wake_at(self) -> int | None:
        with self._lock:
            times = []
            for room_id, state in self._states.items():
                at = due_at(state)
                if at is not None:
                    held = self._leases.get(room_id)
                    times.append(at if held is None else max(at, held.expires_at))
        return min(times, default=None)

    def acquire_lease(
        self, room_id: RoomId, owner: str, *, ttl_ms: int, now: int, force: bool = False
    ) -> Lease:
        with self._lock:
            if room_id not in self._states:
                raise RoomNotFoundError(room_id)
            held = self._leases.get(room_id)
            if held is not None and held.owner != owner and held.expires_at > now and not force:
                raise RoomLeasedError(room_id, held.owner, held.expires_at)
            return self._take_lease(room_id, owner, ttl_ms, now)

    def _take_lease(self, room_id: RoomId, owner: str, ttl_ms: int, now: int) -> Lease:
        token = self._tokens.get(room_id, 0) + 1
        self._tokens[room_id] = token
        held = self._leases.get(room_id)  # released leases are deleted: this one never was
        recoveries = 0 if held is None else held.recoveries + 1
        lease = Lease(room_id, owner, token, now + ttl_ms, recoveries)
        self._leases[room_id] = lease
        return lease

    def renew_lease(self, lease: Lease, *, ttl_ms: int, now: int) -> Lease:
        with self._lock:
            held = self._leases.get(lease.room_id)
            if held is None or held.token != lease.token:
                raise StaleRoomError(lease.room_id, -1)
            renewed = attrs.evolve(held, expires_at=now + ttl_ms)
            self._leases[lease.room_id] = renewed
            return renewed

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            held = self._leases.get(lease.room_id)
            if held is not None and held.token == lease.token:
                del self._leases[lease.room_id]

    def find_lease(self, room_id: RoomId) -> Lease | None:
        return self._leases.get(room_id)

    def put_workflow(self, workflow: StoredWorkflow) -> bool:
        with self._lock:
            key = (workflow.id, workflow.version)
            existing = self._workflows.get(key)
            if existing is not None:
                if existing.digest != workflow.digest:
                    raise WorkflowConflictError(workflow.id, workflow.version)
                return False
            self._workflows[key] = workflow
            return True

    def get_workflow(self, workflow_id: str, version: int | None = None) -> StoredWorkflow:
        if version is not None:
            found = self._workflows.get((workflow_id, version))
        else:
            versions = [w for (i, _), w in self._workflows.items() if i == workflow_id]
            found = max(versions, key=lambda w: w.version) if versions else None
        if found is None:
            raise WorkflowNotFoundError(workflow_id, version)
        return found

    def list_workflows(self) -> list[StoredWorkflow]:
        latest: dict[str, StoredWorkflow] = {}
        for w in self._workflows.values():
            if w.id not in latest or w.version > latest[w.id].version:
                latest[w.id] = w
        return [latest[k] for k in sorted(latest)]

    # EventLog

    def append(self, events: Sequence[Event], *, lease: Lease | None = None) -> None:
        with self._lock:
            if events and lease is not None:
                room_id, first = _first(events)
                self._fence(room_id, lease.token, first - 1)
            self._append(events)

    def _append(self, events: Sequence[Event]) -> None:
        if not events:
            return
        room_id, first = _first(events)
        log = self._logs.get(room_id)
        if log is None:
            log = self._logs[room_id] = _Log()
        if first != log.last + 1:
            raise StaleRoomError(room_id, first - 1)
        log.add(events)

    def _last_seq(self, room_id: RoomId) -> int:
        log = self._logs.get(room_id)
        return 0 if log is None else log.last

    def fence(self, room_id: RoomId, token: int) -> None:
        with self._lock:
            self._fence(room_id, token, self._last_seq(room_id))

    def _fence(self, room_id: RoomId, token: int, version: int) -> None:
        # where this store holds the leases too, the current lease's token fences as well
        if max(self._fences.get(room_id, 0), self._tokens.get(room_id, 0)) > token:
            raise StaleRoomError(room_id, version)
        self._fences[room_id] = token

    def read(
        self,
        room_id: RoomId,
        *,
        after: int = 0,
        limit: int | None = None,
        min_level: Level | None = None,
        types: Sequence[EventType] | None = None,
    ) -> list[Event]:
        log = self._logs.get(room_id)
        if log is None:
            return []
        with self._lock:
            events = log.events()[after:]  # event seq N is at index N - 1
        return select_events(events, limit=limit, min_level=min_level, types=types)

    def last_seq(self, room_id: RoomId) -> int:
        return self._last_seq(room_id)

    # AtomicStore

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        with self._lock:
            if expected_version is None and state.room_id in self._states:
                raise RoomExistsError(state.room_id)
            if events:
                room_id, first = _first(events)
                if first != self._last_seq(room_id) + 1:
                    raise StaleRoomError(room_id, first - 1)
            if expected_version is None:
                self._create(state)
            else:
                self._replace(state, expected_version, lease)
            self._append(events)

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
        room_id = state.room_id
        with self._lock:
            # every check before anything changes: a refusal leaves no trace
            current = self._states.get(room_id)
            if current is None:
                raise RoomNotFoundError(room_id)
            held = self._leases.get(room_id)
            if held is not None and held.owner != owner and held.expires_at > now and not force:
                raise RoomLeasedError(room_id, held.owner, held.expires_at)
            self._check_commit(state, events, expected_version)
            lease = self._take_lease(room_id, owner, ttl_ms, now)
            self._replace(state, expected_version, lease)
            self._append(events)
            if release:
                del self._leases[room_id]
            return lease

    def commit_and_release(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int,
        lease: Lease,
    ) -> None:
        with self._lock:
            self._check_commit(state, events, expected_version)
            self._replace(state, expected_version, lease)
            self._append(events)
            held = self._leases.get(lease.room_id)
            if held is not None and held.token == lease.token:
                del self._leases[lease.room_id]

    def _check_commit(
        self, state: RoomState, events: Sequence[Event], expected_version: int
    ) -> None:
        if events:
            first = _first(events)[1]
            if first != self._last_seq(state.room_id) + 1:
                raise StaleRoomError(state.room_id, first - 1)
        current = self._states.get(state.room_id)
        if current is None:
            raise RoomNotFoundError(state.room_id)
        if current.version != expected_version:
            raise StaleRoomError(state.room_id, expected_version)

    def close(self) -> None:
        pass


def _first(events: Sequence[Event]) -> tuple[RoomId, int]:
    """The room and first ``seq`` of *events* (not empty), without reading a batch."""
    if type(events) is EventBatch:
        return events.room_id, events.first_seq
    return events[0].room_id, events[0].seq


class _Log:
    """One room's log: its events, and the batches appended since anyone read it, kept as
    they came (an :class:`~openrooms.events.EventBatch` makes its events when read)."""

    __slots__ = ("_events", "_unread", "last")

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._unread: list[Sequence[Event]] = []
        self.last = 0

    def add(self, events: Sequence[Event]) -> None:
        if type(events) is EventBatch:
            self.last = events.last_seq
            self._unread.append(events)
        else:
            self.last = events[-1].seq
            if self._unread:
                self._unread.append(events)
            else:
                self._events.extend(events)

    def events(self) -> list[Event]:
        """Every event, in order (call under the store's lock)."""
        if self._unread:
            for batch in self._unread:
                self._events.extend(batch)
            self._unread.clear()
        return self._events


class MemoryJobQueue(JobQueue):
    """An in-process queue of room runs, each due after its delay; a
    :class:`~openrooms.worker.Worker` given it runs them.

    Args:
        clock: seconds, monotonic (default :func:`time.monotonic`).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._jobs: list[tuple[float, int, RoomId]] = []  # a heap: (due, order, room)
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._clock = clock
        self.listener: Callable[[], None] | None = None
        """Called (from the enqueuing thread) after every enqueue: how a worker hears of it."""

    def enqueue(self, room_id: RoomId, *, delay_s: float = 0.0) -> bool:
        with self._lock:
            due = self._clock() + max(0.0, delay_s)
            heapq.heappush(self._jobs, (due, next(self._order), room_id))
        listener = self.listener
        if listener is not None:
            listener()
        return True

    def pop_due(self) -> RoomId | None:
        """The earliest queued job whose delay has passed (first queued first), or None."""
        with self._lock:
            if self._jobs and self._jobs[0][0] <= self._clock():
                return heapq.heappop(self._jobs)[2]
            return None

    def next_due_in(self) -> float | None:
        """Seconds until the earliest job is due (0 if one is), or None if there is none."""
        with self._lock:
            if not self._jobs:
                return None
            return max(0.0, self._jobs[0][0] - self._clock())

    def __len__(self) -> int:
        return len(self._jobs)

    def close(self) -> None:
        with self._lock:
            self._jobs.clear()
