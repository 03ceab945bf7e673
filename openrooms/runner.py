"""The runner: lease a room, execute its node, let the engine decide, commit, repeat.

One async loop per room. It stops when the room finishes, waits for input, or its
lease is lost. A short retry backoff (at most ``Runtime.max_leased_sleep_s``) is slept
through under the lease; for a longer one the runner lets the lease go, so a worker
(:mod:`openrooms.worker`) can wake the room when it is due, and then either returns
(``hand_over``, as workers run rooms) or sleeps and takes the room back (a foreground run).
Chains of pure nodes advance in one engine call and commit in batches.

Its store calls go through :class:`~openrooms.storeio.StoreIO` (off the event loop where a
store may block) and its leases are renewed by a :class:`~openrooms.lease.LeaseKeeper`
thread; a lost lease cancels the running node and ``run`` raises
:class:`~openrooms.errors.LeaseLostError`. Where state and log are different stores, the
log is the fencing authority: see :func:`commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import attrs

from openrooms import deadline, engine
from openrooms.backends.base import EventLog, Lease, StateStore
from openrooms.errors import (
    InfrastructureError,
    LeaseLostError,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    StaleRoomError,
    UnstorableValueError,
    WouldBlockError,
)
from openrooms.events import ErrorInfo, Event, EventBatch, EventType
from openrooms.journal import JOURNALED, Journal, RoomStoppedError, logged_since_start
from openrooms.lease import HeldLease, LeaseKeeper
from openrooms.memory import Conversations
from openrooms.nodes import LogRecord, NodeContext, Outcome
from openrooms.nodes.builtin import call_plain_tool, plain_tool
from openrooms.plan import NodePlan
from openrooms.room import RoomState, RoomStatus
from openrooms.scrub import Scrubber, environment_scrubber
from openrooms.storable import check_events
from openrooms.storeio import StoreIO
from openrooms.types import RoomId

if TYPE_CHECKING:
    from openrooms.runtime import Runtime
    from openrooms.workflow import Workflow

__all__ = [
    "DEFAULT_COMMIT_EVERY_MS",
    "DEFAULT_COMMIT_EVERY_STEPS",
    "DEFAULT_LEASE_TTL_MS",
    "DEFAULT_MAX_LEASED_SLEEP_S",
    "DEFAULT_MAX_RECOVERIES",
    "MAX_RECOVERIES_REASON",
    "NO_INPUT",
    "Runner",
    "commit",
    "committer",
    "make_owner",
    "room_scope",
]

DEFAULT_LEASE_TTL_MS: Final = 30_000
DEFAULT_MAX_RECOVERIES: Final = 3
"""Takeovers in a row of a room whose runner never let go, before the room fails."""
MAX_RECOVERIES_REASON: Final = "max recovery attempts exceeded"
"""The reason of a room failed for its runners' crashes (see :class:`Runner`)."""
DEFAULT_MAX_LEASED_SLEEP_S: Final = 1.0
"""The longest retry backoff a runner sleeps through holding the room's lease."""
_TOKEN_CATCH_UP: Final = 10_000
"""At most how many leases a runner takes in a row to pass the log's fence with a state store
that lost the room's lease tokens (see Runner._fence_log)."""
_FOLLOW_POLL_S: Final = 0.1  # how often a foreground run looks whether another runner is done
DEFAULT_COMMIT_EVERY_STEPS: Final = 256
"""Pure steps batched into one commit at most (see :class:`Runner`)."""
DEFAULT_COMMIT_EVERY_MS: Final = 50.0
"""The longest a batch of pure steps waits for its commit (ms)."""
_CHAIN_CHUNK: Final = 64
"""Pure nodes per ``engine.advance`` call: the runner checks its clock between calls."""

EventCallback = Callable[[Event], None]
NO_INPUT: Final[Any] = object()


def make_owner() -> str:
    """A lease owner id for this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _owner_is_gone(owner: str) -> bool:
    """Whether a lease owner is a process on this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


_NO_SCOPE: Final[dict[str, Any]] = {}


def room_scope(state: RoomState) -> dict[str, Any]:
    """The expression scope a node's templates see: ``vars``, ``memory`` and ``room``."""
    return {"vars": state.variables, "memory": state.memory, "room": engine.RoomView(state)}


class _Save(Protocol):
    def __call__(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None: ...


def committer(states: StateStore, log: EventLog) -> _Save:
    """The function that makes a step durable for this pair of stores (chosen once)."""
    if cast(object, states) is log and hasattr(states, "commit"):
        save: _Save = states.commit
        return save
    return partial(commit, states, log)


def commit(
    states: StateStore,
    log: EventLog,
    state: RoomState,
    events: Sequence[Event],
    *,
    expected_version: int | None,
    lease: Lease | None = None,
) -> None:
    """Make *events* and *state* durable: in one transaction where one store holds both
    (the lease checked inside it), else the log first, then the state.

    With two stores the log is the truth and the fencing authority: the append is refused,
    atomically, when its first ``seq`` does not follow the log's last one or *lease* is
    older than the room's fence in the log (:meth:`EventLog.fence`, raised by every new
    lease holder before it reads the log). Once the log has taken the events the step is
    committed, whatever happens to the state save that follows: that save only moves the
    state store forward (compare-and-set on the version, so it never goes back), and where
    it is refused (a newer runner or a roll-forward got there first) the state store is
    brought up to the log by the next :meth:`~openrooms.runtime.Runtime.load_room`.

    Raises:
        StaleRoomError: the version, sequence or lease check failed; nothing was saved.
        RoomExistsError: creating (``expected_version=None``) a room that exists.
    """
    if cast(object, states) is log and hasattr(states, "commit"):
        states.commit(state, events, expected_version=expected_version, lease=lease)
        return
    if expected_version is None:
        try:
            log.append(events, lease=lease)
        except StaleRoomError:
            if events and events[0].seq == 1 and log.last_seq(events[0].room_id) > 0:
                raise RoomExistsError(state.room_id) from None
            raise
        # the log took the room: if a reader rebuilt its state from the log meanwhile
        # (Runtime.load_room), the state store holds this state already
        with contextlib.suppress(RoomExistsError):
            states.create(state)
        return
    log.append(events, lease=lease)
    with contextlib.suppress(StaleRoomError):  # committed: the log has it (see above)
        states.replace(state, expected_version=expected_version, lease=lease)


class Runner:
    """Runs rooms of one :class:`~openrooms.runtime.Runtime`."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        lease_ttl_ms: int = DEFAULT_LEASE_TTL_MS,
        commit_every_steps: int = DEFAULT_COMMIT_EVERY_STEPS,
        commit_every_ms: float = DEFAULT_COMMIT_EVERY_MS,
        renew_every_ms: int | None = None,
        max_recoveries: int = DEFAULT_MAX_RECOVERIES,
    ) -> None:
        self.rt = runtime
        self.lease_ttl_ms = lease_ttl_ms
        self.renew_every_ms = renew_every_ms
        """How often a held lease is renewed (None: a third of :attr:`lease_ttl_ms`)."""
        self.max_recoveries = max_recoveries
        """A room taken over from runners that never let go more often than this in a row
        fails instead of running (see :class:`~openrooms.backends.base.Lease`)."""
        self.commit_every_steps = commit_every_steps
        """Pure node steps (``set``, ``decision``) run at most this many to a commit."""
        self.commit_every_ms = commit_every_ms
        """... and commit at least this often (ms), so ``logs --follow`` stays live."""
        self._save = committer(runtime.states, runtime.log)
        self._split = cast(object, runtime.states) is not runtime.log
        # a store holding both that takes and lets go of leases in its commits: a short room
        # is then one write (see _begin_unleased), and a session's last commit releases
        self._acquiring: Callable[..., Lease] | None = None
        self._releasing: Callable[..., None] | None = None
        if not self._split:
            self._acquiring = _leasing(
                runtime.states, "acquire_and_commit", "commit", "acquire_lease", "release_lease"
            )
            self._releasing = _leasing(
                runtime.states, "commit_and_release", "commit", "release_lease"
            )
        self.io = StoreIO(runtime.states, runtime.log)
        """How the store calls are made without stalling the event loop."""
        self._keeper = LeaseKeeper(runtime.states, runtime.now)
        # room -> (last seq read, conversation threads before it): see _journal
        self._threads: dict[RoomId, tuple[int, Conversations | None]] = {}
        # room -> infrastructure errors its journal met in the running attempt
        self._failures: dict[RoomId, list[InfrastructureError]] = {}
        # room -> the wake_at a run has just slept until off the lease: see _sleep
        self._slept: dict[RoomId, int] = {}
        # the environment's secrets, looked at again at the start of every run (not every
        # step: even the check that it is unchanged costs more than a pure step)
        self._scrubber = Scrubber([])
        self.plain_tool_calls = True
        """Whether an attempt of a plain ``tool`` node (see
        :func:`~openrooms.nodes.builtin.plain_tool`) is made without a node context, the
        fast way; off, it is made the general way (the same events and state: tests compare)."""

    def close(self) -> None:
        """Stop the IO and lease-keeper threads (started again if the runner is used)."""
        self.io.close()
        self._keeper.close()

    async def run(
        self,
        room_id: RoomId,
        *,
        force: bool = False,
        on_event: EventCallback | None = None,
        input: Any = NO_INPUT,
        hand_over: bool = False,
    ) -> RoomState:
        """Run *room_id* until it finishes or waits.

        A retry backoff longer than ``Runtime.max_leased_sleep_s`` is never slept under the
        lease: with *hand_over* the run returns the room as it is (``running``, due at its
        ``wake_at``) for a worker to wake; without, it releases the lease, sleeps, and takes
        the room back, following (through *on_event*) any runner that took it meanwhile.

        Args:
            force: take the lease even if another live owner holds it.
            on_event: called with every event as it is committed (progress output).
            input: input for a waiting room, delivered under the lease before running on.
            hand_over: return at a long backoff instead of sleeping through it.

        Raises:
            RoomNotFoundError: no such room.
            RoomLeasedError: another live runner holds the room.
            RoomStatusError: *input* was given but the room is not waiting.
            SchemaValidationError: *input* breaks the wait node's schema (nothing is recorded).
            LeaseLostError: the lease expired or was taken over mid-run; the running node was
                cancelled and nothing more was committed.
            InfrastructureError: a store failed (BackendUnavailableError, ...), also inside a
                node; the room stays as last committed, to be resumed.
        """
        self._scrubber = environment_scrubber()
        state = await self._session(room_id, force, on_event, input)
        while not hand_over and engine.next_action(state) == "sleep":
            if self.rt.stop_requested:
                return state
            state = await self._sleep_off_lease(state, on_event)
        return state

    async def _sleep_off_lease(self, state: RoomState, on_event: EventCallback | None) -> RoomState:
        """Sleep until the room's retry is due with no lease held, then run it on: in a new
        session, or, while another runner (a worker) holds it, by relaying that runner's
        events to *on_event* until the lease is free again."""
        rt = self.rt
        room_id = state.room_id
        assert state.wake_at is not None
        delay_ms = state.wake_at - rt.now()
        if delay_ms > 0:
            await self._sleep_unless_stopped(delay_ms / 1000)
        seen = state.version
        self._slept[room_id] = state.wake_at
        try:
            while True:
                if rt.stop_requested:
                    return await self.io.call(rt.states.get, room_id)
                try:
                    return await self._session(room_id, False, on_event, NO_INPUT, seen=seen)
                except RoomLeasedError:
                    seen = await self._relay(room_id, seen, on_event)
                await asyncio.sleep(_FOLLOW_POLL_S)
        finally:
            self._slept.pop(room_id, None)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        """``rt.sleep(seconds)``, cut short by :meth:`Runtime.request_stop` (no lease is held:
        a first Ctrl-C need not wait out an hour's backoff)."""
        sleeping = asyncio.ensure_future(self.rt.sleep(seconds))
        watching = asyncio.ensure_future(self._stop_requested())
        try:
            await asyncio.wait({sleeping, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, watching):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _stop_requested(self) -> None:
        while not self.rt.stop_requested:
            await asyncio.sleep(_FOLLOW_POLL_S)

    async def _relay(self, room_id: RoomId, seen: int, on_event: EventCallback | None) -> int:
        """Pass the events another runner committed after *seen* to *on_event*; the last seq."""
        for e in await self.io.call(self.rt.log.read, room_id, after=seen):
            if on_event is not None:
                on_event(e)
            seen = e.seq
        return seen

    async def _session(
        self,
        room_id: RoomId,
        force: bool,
        on_event: EventCallback | None,
        input: Any,
        *,
        seen: int | None = None,
    ) -> RoomState:
        """Run the room under one lease (see :meth:`run`); *seen*: the last event this run
        has shown, when it takes the room back (the others are relayed to *on_event*)."""
        rt = self.rt
        io = self.io
        previous = await io.call(rt.states.find_lease, room_id)
        begun = None
        if self._acquiring is not None and seen is None:
            begun = await self._begin_unleased(room_id, force, on_event, input, previous)
            if begun is not None and begun[2] is None:
                return begun[0]  # done in one commit (or nothing to do): no lease held
        if begun is None:
            now, lease = await io.call(self._take_lease, room_id, force)
        else:
            assert begun[2] is not None
            now, lease = 0, begun[2]
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        running = True

        def cancel_if_running() -> None:
            if running and task is not None:
                task.cancel()

        def cancel_the_run() -> None:  # from the keeper's thread: the lease is lost
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                loop.call_soon_threadsafe(cancel_if_running)

        holder = self._keeper.hold(
            lease, self.lease_ttl_ms, cancel_the_run, renew_every_ms=self.renew_every_ms
        )
        try:
            try:
                if lease.recoveries > self.max_recoveries:
                    saved = begun[0] if begun is not None else None
                    return await self._give_up(room_id, saved, holder, on_event)
                if begun is not None:  # its first commit took the lease
                    return await self._loop(begun[1], begun[0], holder, on_event)
                state = await io.call(rt.load_room, room_id)
                if seen is not None and state.version > seen:
                    await self._relay(room_id, seen, on_event)
                if engine.next_action(state) == "run" and state.steps > 0:
                    # left mid-node by a runner that stopped: note it, then re-execute it
                    owner = previous.owner if previous is not None else None
                    step = engine.resumed(state, now=rt.now(), previous_owner=owner)
                    if previous is not None and previous.owner != rt.owner:
                        # what became of the lease before: it ran out, --force took it, or
                        # its process was gone (taken over at once on the same host)
                        why = "expired" if previous.expires_at <= now else "taken over"
                        if why == "taken over" and not force:
                            why = "its process had exited"
                        step = _noting(step, previous_lease=why)
                    state = await self._commit(step, state, holder, on_event)
                wf = await io.call(rt.workflow_for, state)
                if input is not NO_INPUT:
                    step = engine.receive_input(wf, state, input, now=rt.now())
                    state = await self._commit(step, state, holder, on_event)
                return await self._loop(wf, state, holder, on_event)
            except asyncio.CancelledError:
                if holder.lost is None or task is None:
                    raise
                task.uncancel()
                raise LeaseLostError(room_id, rt.owner, holder.lost) from None
        finally:
            running = False
            self._threads.pop(room_id, None)
            self._failures.pop(room_id, None)
            self._keeper.drop(holder)
            if holder.lost is None and not holder.released:
                with contextlib.suppress(Exception):
                    await io.call(rt.states.release_lease, holder.lease)

    async def _give_up(
        self,
        room_id: RoomId,
        saved: RoomState | None,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState:
        """Fail a room whose runners kept dying (its lease's recoveries are above the cap):
        a node that crashes its process every time must not take every worker down with
        it, again and again. The ROOM_FAILED event says so and counts the takeovers."""
        rt = self.rt
        state = saved if saved is not None else await self.io.call(rt.load_room, room_id)
        if state.status.is_terminal:
            return state
        recoveries = holder.lease.recoveries
        step = engine.fail(state, now=rt.now(), reason=MAX_RECOVERIES_REASON)
        step = _noting(step, recoveries=recoveries, max_recoveries=self.max_recoveries)
        failed = EventBatch(room_id, step.events)
        return await self._finish(state, step.state, failed, holder, on_event)

    async def _begin_unleased(
        self,
        room_id: RoomId,
        force: bool,
        on_event: EventCallback | None,
        input: Any,
        previous: Lease | None,
    ) -> tuple[RoomState, Workflow, Lease | None] | None:
        """Begin a session whose lease is taken by its first commit (a store that holds both
        state and log, and offers :meth:`~openrooms.backends.base.LeasingStore.acquire_and_commit`).

        The room is read without the lease, and the steps that do no IO (its start, input, a
        due wake-up, a chain of pure nodes) are made in memory; they are then committed in
        the transaction that acquires the lease, compare-and-set on the version read, so the
        result is the same as acquiring first: a runner that got there meanwhile makes the
        commit fail, and nothing is saved. A room that ends or waits after them releases the
        lease in that same transaction too: a short room's run is one write.

        Returns the state, its workflow and the lease (None once released, or when there
        was nothing to do), or None where the run must take the lease first: the room was
        left mid-node, must sleep before anything else, or another runner got there first
        (taking the lease then says who).
        """
        rt = self.rt
        now = rt.now
        if previous is not None and previous.owner != rt.owner and previous.expires_at > now():
            if not force and not _owner_is_gone(previous.owner):
                raise RoomLeasedError(room_id, previous.owner, previous.expires_at)
            force = True
        saved = state = await self.io.call(rt.load_room, room_id)
        if engine.next_action(state) == "run" and state.steps > 0:
            return None  # left mid-node: the taking over is noted under the lease
        wf = await self.io.call(rt.workflow_for, state)
        pending = EventBatch(room_id)
        if input is not NO_INPUT:
            step = engine.receive_input(wf, state, input, now=now())
            pending.extend(step.events)
            state = step.state
        since = time.monotonic()
        while True:  # the part of Runner._loop before its first commit
            if rt.stop_requested:
                final = True
                break
            action = engine.next_action(state)
            if action == "run" and engine.can_advance(wf, state):
                done = state.steps - saved.steps
                if (
                    done >= self.commit_every_steps
                    or (time.monotonic() - since) * 1000 >= self.commit_every_ms
                ):
                    final = False
                    break
                step = engine.advance(
                    wf,
                    state,
                    now=now(),
                    limit=min(_CHAIN_CHUNK, self.commit_every_steps - done),
                    timer=time.perf_counter,
                    scrub=self._scrubber.outcome if self._scrubber else None,
                )
            elif action == "start":
                step = _storable(engine.start(wf, state, now=now()), state, now)
            elif action == "wait" and state.wake_at is not None and state.wake_at <= now():
                step = _storable(engine.wake(wf, state, now=now()), state, now)
            else:
                final = action not in ("run", "sleep")  # an IO node or a backoff: leased
                break
            pending.extend(step.events)
            state = step.state
        if not pending:
            return (state, wf, None) if final else None
        events = pending.take()
        assert self._acquiring is not None
        try:
            lease = await self.io.call(
                self._acquiring,
                state,
                events,
                expected_version=saved.version,
                owner=rt.owner,
                ttl_ms=self.lease_ttl_ms,
                now=now(),
                force=force,
                release=final,
            )
        except (RoomLeasedError, StaleRoomError):
            return None  # another runner got there first
        self._committed(engine.Step(state, events), on_event)
        return state, wf, None if final else lease

    async def _finish(
        self,
        saved: RoomState,
        state: RoomState,
        pending: EventBatch,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState:
        """The session's last commit (see :meth:`_flush`), releasing the lease in the same
        transaction where the store can (:meth:`~openrooms.backends.base.LeasingStore.\
commit_and_release`)."""
        release = self._releasing
        if not pending or release is None:
            return await self._flush(saved, state, pending, holder, on_event)
        _check_held(holder, state.room_id, self.rt.owner)
        # renewed no more: a renewal after the release would report the lease lost
        self._keeper.drop(holder)
        events = pending.take()
        try:
            await self.io.call(
                release, state, events, expected_version=saved.version, lease=holder.lease
            )
        except StaleRoomError:
            return await self.io.call(self._refused, saved, holder)
        holder.released = True
        return self._committed(engine.Step(state, events), on_event)

    def _take_lease(self, room_id: RoomId, force: bool) -> tuple[int, Lease]:
        """Acquire the room's lease and, with two stores, raise the log's fence to it before
        anything is read: appends of earlier holders made before this are read; later ones
        are refused. Returns the time it was asked for, and the lease."""
        rt = self.rt
        states = rt.states
        now = rt.now()  # here, on the thread that asks: the lease runs from now
        try:
            try:
                lease = states.acquire_lease(
                    room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=force
                )
            except RoomNotFoundError:
                if not self._split:
                    raise
                rt.load_room(room_id)  # a state store that lost the room: rebuilt from the log
                lease = states.acquire_lease(
                    room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=force
                )
        except RoomLeasedError as exc:
            if not _owner_is_gone(exc.owner):
                raise
            lease = states.acquire_lease(
                room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=True
            )
        if self._split:
            lease = self._fence_log(lease, now)
        return now, lease

    def _fence_log(self, lease: Lease, now: int) -> Lease:
        """Raise the log's fence to *lease*'s token; the lease it holds the room with.

        Refused while the state store still has this lease as the room's latest, the log's
        fence is above every token the state store remembers giving: it lost the room's
        lease (a Redis that restarted empty; the room was rebuilt from the log). The lease is
        then taken again, each time with the next token, until one passes the fence.

        Raises:
            LeaseLostError: a runner with a newer lease fenced the log first.
        """
        rt = self.rt
        room_id = lease.room_id
        for _ in range(_TOKEN_CATCH_UP):
            try:
                rt.log.fence(room_id, lease.token)
                return lease
            except StaleRoomError:
                held = rt.states.find_lease(room_id)
                if held is None or held.token != lease.token or held.owner != rt.owner:
                    break
            lease = rt.states.acquire_lease(
                room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=True
            )
        raise LeaseLostError(room_id, rt.owner, "a runner with a newer lease fenced the log first")

    async def _loop(
        self, wf: Workflow, state: RoomState, holder: HeldLease, on_event: EventCallback | None
    ) -> RoomState:
        now = self.rt.now
        # Steps that do no IO (start, wake, chains of pure nodes) are batched: `pending` holds
        # their events, not yet committed, after the committed state `saved`. A batch commits
        # before any IO node runs, before the loop sleeps or returns, and at least every
        # `commit_every_steps` node steps or `commit_every_ms`. A crash loses only pure steps,
        # which the next run makes again: same state, same events.
        saved = state
        pending = EventBatch(state.room_id)
        since = 0.0  # time.monotonic() of the first pending event
        while True:
            if self.rt.stop_requested:
                # e.g. Ctrl-C: every step so far is committed; resume goes on
                return await self._finish(saved, state, pending, holder, on_event)
            action = engine.next_action(state)
            if action == "run" and engine.can_advance(wf, state):
                if not pending:
                    since = time.monotonic()
                step = engine.advance(
                    wf,
                    state,
                    now=now(),
                    limit=min(_CHAIN_CHUNK, self.commit_every_steps - (state.steps - saved.steps)),
                    timer=time.perf_counter,
                    scrub=self._scrubber.outcome if self._scrubber else None,
                )
                pending.extend(step.events)
                state = step.state
                if (
                    state.steps - saved.steps >= self.commit_every_steps
                    or (time.monotonic() - since) * 1000 >= self.commit_every_ms
                ):
                    state = saved = await self._flush(saved, state, pending, holder, on_event)
                    await asyncio.sleep(0)  # a long chain lets the heartbeat and other rooms in
                continue
            if action == "run":
                if pending:  # an IO node runs only once the way to it is committed
                    state = saved = await self._flush(saved, state, pending, holder, on_event)
                started = time.perf_counter()
                state, outcome = await self._execute(wf, state, holder, on_event)
                if outcome is None:
                    return state  # stopped from outside (cancelled) while the node ran
                duration = (time.perf_counter() - started) * 1000
                step = engine.decide(wf, state, outcome, now=now(), duration_ms=duration)
                step = _storable(step, state, now, decided_in=(wf, duration))
                if self._releasing is not None and _stays(step.state, now):
                    # the room ends or waits: this is the session's last commit
                    last = EventBatch(state.room_id, step.events)
                    return await self._finish(state, step.state, last, holder, on_event)
                done = self._commit_at_once(step, state, holder, on_event)
                state = saved = done or await self._commit(step, state, holder, on_event)
                continue
            if action == "start":
                step = engine.start(wf, state, now=now())
            elif action == "sleep":
                if pending:
                    state = saved = await self._flush(saved, state, pending, holder, on_event)
                assert state.wake_at is not None
                if not await self._sleep(state):
                    return state  # a long backoff: not under the lease (see run)
                step = engine.wake(wf, state, now=max(now(), state.wake_at))
            elif action == "wait" and state.wake_at is not None and state.wake_at <= now():
                step = engine.wake(wf, state, now=now())
            else:
                return await self._finish(saved, state, pending, holder, on_event)
            step = _storable(step, state, now)
            if not pending:
                since = time.monotonic()
            pending.extend(step.events)
            state = step.state

    async def _flush(
        self,
        saved: RoomState,
        state: RoomState,
        pending: EventBatch,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState:
        """Commit the *pending* events that lead from *saved* to *state*; the state stored."""
        if not pending:
            return state
        events = pending.take()
        return await self._commit(engine.Step(state, events), saved, holder, on_event)

    async def _sleep(self, state: RoomState) -> bool:
        """Wait out a retry's backoff under the lease if it is short; True once the retry is
        due, False (at once) for a backoff longer than ``rt.max_leased_sleep_s``."""
        assert state.wake_at is not None
        if self._slept.pop(state.room_id, None) == state.wake_at:
            return True  # slept off the lease (on the runtime's sleep, which may be simulated)
        delay_ms = state.wake_at - self.rt.now()
        if delay_ms > self.rt.max_leased_sleep_s * 1000:
            return False
        if delay_ms > 0:
            await self.rt.sleep(delay_ms / 1000)
        return True

    async def _commit(
        self,
        step: engine.Step,
        before: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState:
        """Commit *step* through the IO path; the state after it (see :meth:`_committed`)."""
        io = self.io
        if io.inline:  # the hot path of memory stores: no coroutine in between
            return self._commit_now(step, before, holder, on_event)
        _check_held(holder, before.room_id, self.rt.owner)
        args = (step.state, step.events)
        try:
            if io.try_now is not None:  # SQLite's hot path: inline unless it would wait
                try:
                    io.try_now(
                        self._save, *args, expected_version=before.version, lease=holder.lease
                    )
                except WouldBlockError:
                    await io.off_loop(
                        self._save, *args, expected_version=before.version, lease=holder.lease
                    )
            else:
                await io.call(
                    self._save, *args, expected_version=before.version, lease=holder.lease
                )
        except StaleRoomError:
            return await io.call(self._refused, before, holder)
        return self._committed(step, on_event)

    def _commit_at_once(
        self,
        step: engine.Step,
        before: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState | None:
        """:meth:`_commit` without a coroutine where it can be made at once (a memory
        store; SQLite when nothing holds its lock), the hot path of a tool step: the state
        after it, or None when nothing was written and ``_commit`` must be awaited (the
        store would have waited, or refused it: ``_commit`` meets the refusal again, sure
        to, as versions only grow, and finds out why off the event loop)."""
        io = self.io
        if io.inline:
            return self._commit_now(step, before, holder, on_event)
        if io.try_now is None or holder.lost is not None:  # lost: _commit raises, saying so
            return None
        try:
            io.try_now(
                self._save,
                step.state,
                step.events,
                expected_version=before.version,
                lease=holder.lease,
            )
        except (WouldBlockError, StaleRoomError):
            return None
        return step.state if on_event is None else self._committed(step, on_event)

    def _commit_now(
        self,
        step: engine.Step,
        before: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> RoomState:
        """:meth:`_commit` made at once, on the calling thread (a node's journal commits)."""
        _check_held(holder, before.room_id, self.rt.owner)
        try:
            self._save(step.state, step.events, expected_version=before.version, lease=holder.lease)
        except StaleRoomError:
            return self._refused(before, holder)
        return self._committed(step, on_event)

    def _committed(self, step: engine.Step, on_event: EventCallback | None) -> RoomState:
        if on_event is not None:
            for e in step.events:
                on_event(e)
        return step.state

    def _refused(self, before: RoomState, holder: HeldLease) -> RoomState:
        """After a refused commit: LeaseLostError if the lease is someone else's now; else the
        room as someone else left it if it finished (cancelled, say: the runner stops
        quietly); else the StaleRoomError again."""
        room_id = before.room_id
        held = self.rt.states.find_lease(room_id)
        if held is None or held.token != holder.lease.token:
            why = (
                f"another runner took it over: {held.owner}"
                if held is not None
                else "another runner took it over, and has released it since"
            )
            holder.lost = holder.lost or why
            raise LeaseLostError(room_id, self.rt.owner, holder.lost)
        current = self.rt.load_room(room_id)  # the log's truth, rolled forward
        if current.status.is_terminal:
            return current
        raise StaleRoomError(room_id, before.version)

    def _journal(
        self,
        wf: Workflow,
        state: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> Journal:
        """The attempt's journal: its recorded calls (if it ran before) and a committer."""
        log = self.rt.log
        room_id = state.room_id
        recorded: list[Event] = []
        if self.rt.recorded_calls is not None:  # a re-run: the original log answers
            recorded = list(self.rt.recorded_calls.get(state.idempotency_key, ()))
        elif logged_since_start(state):
            recorded = [e for e in log.read(room_id, after=state.node_seq) if e.type in JOURNALED]
        node_seq = state.node_seq
        scrubber = self._scrubber
        failures: list[InfrastructureError] = []  # this attempt's (see _execute)
        self._failures[room_id] = failures

        def prepare(records: Sequence[LogRecord]) -> tuple[RoomState, engine.Step]:
            current = journal.state
            records = [scrubber.record(r) for r in records]  # no known secret is stored
            # raises into the node, before the usage in them is added up: the node fails,
            # the room stays sound
            check_events(records, current.current_node)
            return current, engine.record(wf, current, records, now=self.rt.now())

        def check(
            current: RoomState, step: engine.Step, saved: RoomState
        ) -> tuple[RoomState, Sequence[Event]]:
            if saved is not step.state:  # cancelled or failed from outside meanwhile
                raise RoomStoppedError(room_id, saved.status.value)
            if saved.node_seq != current.node_seq or saved.status is not RoomStatus.RUNNING:
                raise RoomStoppedError(room_id, saved.status.value)  # e.g. a budget ran out
            return saved, step.events

        def commit(records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
            current, step = prepare(records)
            try:
                saved = self._commit_now(step, current, holder, on_event)
            except InfrastructureError as exc:
                failures.append(exc)  # raised by the runner even if the node swallows it
                raise
            return check(current, step, saved)

        async def acommit(records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
            current, step = prepare(records)
            try:
                saved = await self._commit(step, current, holder, on_event)
            except InfrastructureError as exc:
                failures.append(exc)
                raise
            return check(current, step, saved)

        def threads() -> Conversations:
            # read incrementally: a long room with many agent turns must not re-read its log
            upto, found = self._threads.get(room_id, (0, None))
            if found is None:
                found = Conversations()
            if upto < node_seq - 1:
                for e in log.read(room_id, after=upto, types=[EventType.MESSAGES_ADDED]):
                    if e.seq >= node_seq:
                        break
                    found.extend(str(e.data.get("thread")), e.data.get("messages") or ())
                upto = node_seq - 1
            self._threads[room_id] = (upto, found)
            return found

        journal = Journal(
            state,
            recorded,
            commit,
            threads,
            echo=self.rt.recorded_calls is not None,
            acommitter=None if self.io.inline else acommit,
        )
        return journal

    async def _execute(
        self,
        wf: Workflow,
        state: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
    ) -> tuple[RoomState, Outcome | None]:
        """Run one attempt of the current node; every failure becomes an ``error`` outcome.

        Returns the state after the calls the attempt recorded, and its outcome (None when
        the room was stopped from outside meanwhile), with every known secret value
        scrubbed from it (:mod:`openrooms.scrub`): this is where what a node did becomes
        what the room stores.
        """
        assert state.current_node is not None
        np = wf.plan.nodes[state.current_node]
        rt = self.rt
        # a plain tool node (see plain_tool) that recorded no call yet runs without a context,
        # a journal or the coroutine of _attempt: the hot path of a durable step
        if self.plain_tool_calls and rt.recorded_calls is None and not logged_since_start(state):
            plain = plain_tool(np, rt.tools)
            if plain is not None:
                prepared, tool = plain
                # constant arguments (the compiled value says so) are rendered in no scope
                scope = _NO_SCOPE if prepared.args.is_constant else room_scope(state)
                limit = rt.config.max_logged_bytes
                try:
                    outcome = await call_plain_tool(prepared, tool, state, scope, limit)
                except InfrastructureError:
                    raise
                except Exception as exc:
                    outcome = _failure(exc, None)
                return state, self._scrubber.outcome(outcome)
        after, found = await self._attempt(wf, state, holder, on_event, np)
        # an InfrastructureError (a store failed, the lease was lost) that the attempt's
        # journal met is raised on, even if the node caught it: it is not the node's failure
        failures = self._failures.pop(state.room_id, None)
        if failures:
            raise failures[0]
        if found is None:
            return after, None
        return after, self._scrubber.outcome(found)

    async def _attempt(
        self,
        wf: Workflow,
        state: RoomState,
        holder: HeldLease,
        on_event: EventCallback | None,
        np: NodePlan,
    ) -> tuple[RoomState, Outcome | None]:
        rt = self.rt
        timeout = np.node.timeout_s
        ctx = NodeContext(
            state,
            np.node,
            np.prepared,
            rt.tools,
            room_scope(state),
            workflow=wf,
            models=rt.model_registry,
            runtime=rt,
            journal_factory=partial(self._journal, wf, state, holder, on_event),
        )
        warm_up = getattr(np.executor, "warm_up", None)
        if timeout is not None and warm_up is not None:
            # outside the deadline: loading a model client (litellm's import) is not the node's
            # slowness; a failure here is left for the attempt itself to meet and report
            with contextlib.suppress(Exception):
                await warm_up(ctx)
        try:
            if timeout is None:
                outcome = await np.executor.execute(ctx)
            else:
                # a sync tool that ignores cancellation keeps its thread, but its result is dropped
                with deadline.within(timeout):
                    outcome = await asyncio.wait_for(np.executor.execute(ctx), timeout)
        except RoomStoppedError:
            current = await self.io.call(rt.states.find, state.room_id)
            return (current if current is not None else _after(ctx, state)), None
        except InfrastructureError:
            raise
        except Exception as exc:
            return _after(ctx, state), _failure(exc, timeout)
        if not isinstance(outcome, Outcome):
            return _after(ctx, state), Outcome.failed(
                TypeError(
                    f"node type {np.node.type!r} returned {type(outcome).__name__}, not an Outcome"
                ),
                retryable=False,
            )
        return _after(ctx, state), outcome


def _stays(state: RoomState, now: Callable[[], int]) -> bool:
    """Whether a run's loop would stop at *state* (it ended, or waits for input or a time
    not yet come): then the commit that leads to it is the session's last."""
    action = engine.next_action(state)
    if action in ("run", "start", "sleep"):
        return False
    return not (action == "wait" and state.wake_at is not None and state.wake_at <= now())


def _leasing(store: object, name: str, *plain: str) -> Callable[..., Any] | None:
    """*store*'s method *name* (a :class:`~openrooms.backends.base.LeasingStore`'s), unless
    its class changed one of the *plain* methods whose work it does in one transaction (a
    subclass that counts or fails commits, or a wrapper that delays them) and not *name*:
    such a store is asked the separate way, so its own methods are the ones called."""
    method = getattr(store, name, None)
    if method is None:
        return None
    mro = type(store).__mro__

    def defined_at(attr: str) -> int:
        return next((i for i, cls in enumerate(mro) if attr in vars(cls)), len(mro))

    at = defined_at(name)
    if any(defined_at(p) < at for p in plain):
        return None
    return cast("Callable[..., Any]", method)


def _storable(
    step: engine.Step,
    before: RoomState,
    now: Callable[[], int],
    decided_in: tuple[Workflow, float] | None = None,
) -> engine.Step:
    """*step*, or, when a value in it cannot be stored, the node failing with
    :class:`UnstorableValueError` instead (routed by ``on: error``, never retried), or,
    when that cannot be stored either, the room failing: a step never crashes the runner.

    *decided_in* is the workflow and duration of a step :func:`engine.decide` made from a
    node's outcome, so it can be decided again with the failure."""
    try:
        check_events(step.events)
        return step
    except UnstorableValueError as exc:
        error = exc
    info = ErrorInfo.from_exception(error, with_traceback=False)
    if decided_in is not None:
        wf, duration = decided_in
        failed = Outcome.failed(info, retryable=False)
        step = engine.decide(wf, before, failed, now=now(), duration_ms=duration)
        try:
            check_events(step.events)
            return step
        except UnstorableValueError as exc:
            info = ErrorInfo.from_exception(exc, with_traceback=False)
    return engine.fail(before, now=now(), reason=info.message, error=info)


def _failure(exc: Exception, timeout: float | None) -> Outcome:
    """The outcome of an attempt that raised *exc* (a node's failure, not the runner's)."""
    if isinstance(exc, TimeoutError):
        return Outcome.timed_out(timeout or 0.0)
    return Outcome.from_exception(exc)


def _after(ctx: NodeContext, state: RoomState) -> RoomState:
    """The state after what the attempt recorded through its journal (if it made one)."""
    journal = ctx.journal_if_used
    return state if journal is None else journal.state


def _check_held(holder: HeldLease, room_id: RoomId, owner: str) -> None:
    """Nothing more is committed once the lease is lost."""
    if holder.lost is not None:
        raise LeaseLostError(room_id, owner, holder.lost)


def _noting(step: engine.Step, **data: Any) -> engine.Step:
    """*step* with *data* added to its last event (why a runner took a room over)."""
    *rest, last = step.events
    return attrs.evolve(step, events=(*rest, attrs.evolve(last, data={**last.data, **data})))
