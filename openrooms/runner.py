"""The runner: lease a room, execute its node, let the engine decide, commit, repeat.

One async loop per room. It stops when the room finishes, waits for input, or its
lease is lost. A short retry backoff (at most ``Runtime.max_leased_sleep_s``) is slept
through under the lease; for a longer one the runner lets the lease go, so a worker
(:mod:`openrooms.worker`) can wake the room when it is due, and then either returns
(``hand_over``, as workers run rooms) or sleeps and takes the room back (a foreground run).
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

from openrooms import deadline, engine
from openrooms.backends.base import EventLog, Lease, StateStore
from openrooms.errors import (
    RoomLeasedError,
    StaleRoomError,
    UnstorableValueError,
)
from openrooms.events import ErrorInfo, Event, EventType
from openrooms.journal import JOURNALED, Journal, RoomStoppedError
from openrooms.memory import Conversations
from openrooms.nodes import LogRecord, NodeContext, Outcome
from openrooms.room import RoomState, RoomStatus
from openrooms.scrub import Scrubber
from openrooms.storable import check_events
from openrooms.types import RoomId

if TYPE_CHECKING:
    from openrooms.runtime import Runtime
    from openrooms.workflow import Workflow

__all__ = [
    "DEFAULT_COMMIT_EVERY_MS",
    "DEFAULT_COMMIT_EVERY_STEPS",
    "DEFAULT_LEASE_TTL_MS",
    "DEFAULT_MAX_LEASED_SLEEP_S",
    "NO_INPUT",
    "Runner",
    "commit",
    "committer",
    "make_owner",
    "room_scope",
]

DEFAULT_LEASE_TTL_MS: Final = 30_000
DEFAULT_MAX_LEASED_SLEEP_S: Final = 1.0
"""The longest retry backoff a runner sleeps through holding the room's lease."""
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
    """Make *events* and *state* durable: in one transaction where one store holds both,
    else the log first (so the log is never behind the state) and then the state.

    Raises:
        StaleRoomError: the version or lease check failed; nothing was saved (atomic stores).
        RoomExistsError: creating (``expected_version=None``) a room that exists.
    """
    if cast(object, states) is log and hasattr(states, "commit"):
        states.commit(state, events, expected_version=expected_version, lease=lease)
        return
    log.append(events)
    if expected_version is None:
        states.create(state)
    else:
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
    ) -> None:
        self.rt = runtime
        self.lease_ttl_ms = lease_ttl_ms
        self.commit_every_steps = commit_every_steps
        """Pure node steps (``set``, ``decision``) run at most this many to a commit."""
        self.commit_every_ms = commit_every_ms
        """... and commit at least this often (ms), so ``logs --follow`` stays live."""
        self._save = committer(runtime.states, runtime.log)
        # room -> (last seq read, conversation threads before it): see _journal
        self._threads: dict[RoomId, tuple[int, Conversations | None]] = {}
        # room -> the wake_at a run has just slept until off the lease: see _sleep
        self._slept: dict[RoomId, int] = {}
        # the environment's secrets, read again at the start of every run (not every step:
        # reading os.environ costs more than a pure step)
        self._scrubber = Scrubber([])

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
            StaleRoomError: the lease was lost to another runner mid-run.
        """
        self._scrubber = Scrubber.from_environment()
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
                    return rt.states.get(room_id)
                try:
                    return await self._session(room_id, False, on_event, NO_INPUT, seen=seen)
                except RoomLeasedError:
                    seen = self._relay(room_id, seen, on_event)
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

    def _relay(self, room_id: RoomId, seen: int, on_event: EventCallback | None) -> int:
        """Pass the events another runner committed after *seen* to *on_event*; the last seq."""
        for e in self.rt.log.read(room_id, after=seen):
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
        states = rt.states
        now = rt.now()
        previous = states.find_lease(room_id)
        try:
            lease = states.acquire_lease(
                room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=force
            )
        except RoomLeasedError as exc:
            if not _owner_is_gone(exc.owner):
                raise
            lease = states.acquire_lease(
                room_id, rt.owner, ttl_ms=self.lease_ttl_ms, now=now, force=True
            )
        holder = _LeaseHolder(states, lease, self.lease_ttl_ms, rt.now)
        heartbeat = asyncio.create_task(holder.beat())
        try:
            state = rt.load_room(room_id)
            if seen is not None and state.version > seen:
                self._relay(room_id, seen, on_event)
            if engine.next_action(state) == "run" and state.steps > 0:
                # left mid-node by a runner that stopped: note it, then re-execute the attempt
                owner = previous.owner if previous is not None else None
                state = self._commit(
                    engine.resumed(state, now=rt.now(), previous_owner=owner),
                    state,
                    holder,
                    on_event,
                )
            wf = rt.workflow_for(state)
            if input is not NO_INPUT:
                state = self._commit(
                    engine.receive_input(wf, state, input, now=rt.now()), state, holder, on_event
                )
            return await self._loop(wf, state, holder, on_event)
        finally:
            self._threads.pop(room_id, None)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception):
                states.release_lease(holder.lease)

    async def _loop(
        self, wf: Workflow, state: RoomState, holder: _LeaseHolder, on_event: EventCallback | None
    ) -> RoomState:
        now = self.rt.now
        # Steps that do no IO (start, wake, chains of pure nodes) are batched: `pending` holds
        # their events, not yet committed, after the committed state `saved`. A batch commits
        # before any IO node runs, before the loop sleeps or returns, and at least every
        # `commit_every_steps` node steps or `commit_every_ms`. A crash loses only pure steps,
        # which the next run makes again: same state, same events.
        saved = state
        pending: list[Event] = []
        since = 0.0  # time.monotonic() of the first pending event
        while True:
            if self.rt.stop_requested:
                # e.g. Ctrl-C: every step so far is committed; resume goes on
                return self._flush(saved, state, pending, holder, on_event)
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
                    state = saved = self._flush(saved, state, pending, holder, on_event)
                    await asyncio.sleep(0)  # a long chain lets the heartbeat and other rooms in
                continue
            if action == "run":
                if pending:  # an IO node runs only once the way to it is committed
                    state = saved = self._flush(saved, state, pending, holder, on_event)
                started = time.perf_counter()
                state, outcome = await self._execute(wf, state, holder, on_event)
                if outcome is None:
                    return state  # stopped from outside (cancelled) while the node ran
                duration = (time.perf_counter() - started) * 1000
                step = engine.decide(wf, state, outcome, now=now(), duration_ms=duration)
                step = _storable(step, state, now, decided_in=(wf, duration))
                state = saved = self._commit(step, state, holder, on_event)
                continue
            if action == "start":
                step = engine.start(wf, state, now=now())
            elif action == "sleep":
                if pending:
                    state = saved = self._flush(saved, state, pending, holder, on_event)
                assert state.wake_at is not None
                if not await self._sleep(state):
                    return state  # a long backoff: not under the lease (see run)
                step = engine.wake(wf, state, now=max(now(), state.wake_at))
            elif action == "wait" and state.wake_at is not None and state.wake_at <= now():
                step = engine.wake(wf, state, now=now())
            else:
                return self._flush(saved, state, pending, holder, on_event)
            step = _storable(step, state, now)
            if not pending:
                since = time.monotonic()
            pending.extend(step.events)
            state = step.state

    def _flush(
        self,
        saved: RoomState,
        state: RoomState,
        pending: list[Event],
        holder: _LeaseHolder,
        on_event: EventCallback | None,
    ) -> RoomState:
        """Commit the *pending* events that lead from *saved* to *state*; the state stored."""
        if not pending:
            return state
        events = tuple(pending)
        pending.clear()
        return self._commit(engine.Step(state, events), saved, holder, on_event)

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

    def _commit(
        self,
        step: engine.Step,
        before: RoomState,
        holder: _LeaseHolder,
        on_event: EventCallback | None,
    ) -> RoomState:
        try:
            self._save(step.state, step.events, expected_version=before.version, lease=holder.lease)
        except StaleRoomError:
            current = self.rt.states.find(before.room_id)
            if current is not None and current.status.is_terminal:
                return current  # cancelled (or failed) by someone else meanwhile: stop quietly
            raise
        if on_event is not None:
            for e in step.events:
                on_event(e)
        return step.state

    def _journal(
        self,
        wf: Workflow,
        state: RoomState,
        holder: _LeaseHolder,
        on_event: EventCallback | None,
    ) -> Journal:
        """The attempt's journal: its recorded calls (if it ran before) and a committer."""
        log = self.rt.log
        room_id = state.room_id
        recorded: list[Event] = []
        if self.rt.recorded_calls is not None:  # a re-run: the original log answers
            recorded = list(self.rt.recorded_calls.get(state.idempotency_key, ()))
        elif state.version > state.node_seq:  # something was logged after NODE_STARTED
            recorded = [e for e in log.read(room_id, after=state.node_seq) if e.type in JOURNALED]
        node_seq = state.node_seq
        scrubber = self._scrubber

        def commit(records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
            current = journal.state
            records = [scrubber.record(r) for r in records]  # no known secret is stored
            # raises into the node, before the usage in them is added up: the node fails,
            # the room stays sound
            check_events(records, current.current_node)
            step = engine.record(wf, current, records, now=self.rt.now())
            saved = self._commit(step, current, holder, on_event)
            if saved is not step.state:  # cancelled or failed from outside meanwhile
                raise RoomStoppedError(room_id, saved.status.value)
            if saved.node_seq != current.node_seq or saved.status is not RoomStatus.RUNNING:
                raise RoomStoppedError(room_id, saved.status.value)  # e.g. a budget ran out
            return saved, step.events

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

        journal = Journal(state, recorded, commit, threads, echo=self.rt.recorded_calls is not None)
        return journal

    async def _execute(
        self,
        wf: Workflow,
        state: RoomState,
        holder: _LeaseHolder,
        on_event: EventCallback | None,
    ) -> tuple[RoomState, Outcome | None]:
        """Run one attempt of the current node; every failure becomes an ``error`` outcome.

        Returns the state after the calls the attempt recorded, and its outcome (None when
        the room was stopped from outside meanwhile), with every known secret value
        scrubbed from it (:mod:`openrooms.scrub`): this is where what a node did becomes
        what the room stores.
        """
        after, outcome = await self._attempt(wf, state, holder, on_event)
        if outcome is None:
            return after, None
        return after, self._scrubber.outcome(outcome)

    async def _attempt(
        self,
        wf: Workflow,
        state: RoomState,
        holder: _LeaseHolder,
        on_event: EventCallback | None,
    ) -> tuple[RoomState, Outcome | None]:
        assert state.current_node is not None
        np = wf.plan.nodes[state.current_node]
        ctx = NodeContext(
            state,
            np.node,
            np.prepared,
            self.rt.tools,
            room_scope(state),
            workflow=wf,
            models=self.rt.model_registry,
            runtime=self.rt,
            journal_factory=partial(self._journal, wf, state, holder, on_event),
        )
        timeout = np.node.timeout_s
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
            current = self.rt.states.find(state.room_id)
            return (current if current is not None else _after(ctx, state)), None
        except TimeoutError:
            return _after(ctx, state), Outcome.timed_out(timeout or 0.0)
        except Exception as exc:
            return _after(ctx, state), Outcome.from_exception(exc)
        if not isinstance(outcome, Outcome):
            return _after(ctx, state), Outcome.failed(
                TypeError(
                    f"node type {np.node.type!r} returned {type(outcome).__name__}, not an Outcome"
                ),
                retryable=False,
            )
        return _after(ctx, state), outcome


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


def _after(ctx: NodeContext, state: RoomState) -> RoomState:
    """The state after what the attempt recorded through its journal (if it made one)."""
    journal = ctx.journal_if_used
    return state if journal is None else journal.state


class _LeaseHolder:
    """Keeps a lease alive: renewed by a heartbeat task every third of its time to live."""

    def __init__(
        self, states: StateStore, lease: Lease, ttl_ms: int, now: Callable[[], int]
    ) -> None:
        self.states, self.lease, self.ttl_ms, self.now = states, lease, ttl_ms, now

    async def beat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            self.lease = self.states.renew_lease(self.lease, ttl_ms=self.ttl_ms, now=self.now())
