"""The worker: runs the rooms that need a runner with nobody asking.

A retry whose backoff has passed, a wait whose ``timeout_s`` has passed, a room queued for a
worker (:meth:`Runtime.enqueue <openrooms.runtime.Runtime.enqueue>`), a room whose runner
died (its lease expired unreleased: ``expired_rooms``) and the jobs of an in-process
:class:`~openrooms.backends.MemoryJobQueue`: a :class:`Worker` finds them
(``StateStore.due_rooms``) and runs each with the runtime's own runner, every step committed
under the room's lease. In between it sleeps until the store's next wake-up time
(``StateStore.next_wake_at``), looking again at least every *poll_s* seconds for rooms that
other processes created or queued. A long retry backoff is handed back to the store rather
than slept through (``hand_over``), so no worker holds a lease while a room only waits::

    rt = open_runtime()                  # sqlite:///./.openrooms/openrooms.db
    worker = Worker(rt, concurrency=4)
    asyncio.run(worker.run())            # until worker.stop(), e.g. from a signal handler

``openrooms worker`` is this over the runtime the command line describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from openrooms.backends.base import expired_rooms
from openrooms.errors import Problem, RoomLeasedError, SchemaValidationError
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.types import RoomId

if TYPE_CHECKING:
    from openrooms.backends.memory import MemoryJobQueue
    from openrooms.runtime import Runtime

__all__ = ["DEFAULT_POLL_S", "Worker"]

DEFAULT_POLL_S: Final = 1.0
"""How often a worker looks for rooms other processes created or queued, at the latest."""
HOLD_OFF_S: Final = 30.0
"""How long a worker leaves a room alone after running it failed (a missing workflow, a
corrupt row, an unavailable store), so one bad room does not keep it busy."""


class Worker:
    """Runs a runtime's due rooms (timers that passed, queued rooms, in-process jobs).

    Args:
        runtime: whose stores and runner to use.
        queue: an in-process queue whose jobs to run too (it tells the worker of each
            enqueue, so they start at once).
        concurrency: how many rooms run at the same time, at most.
        poll_s: the longest the worker sleeps without looking at the store.
        on_event: called with every event the worker's runs commit.
        on_start: called with a room's id when the worker starts running it.
        on_done: called with a room's state when its run returns (it finished, waits, or
            sleeps until a later retry).
        on_error: called with a room's id and the error that stopped its run; the worker
            leaves that room alone for :data:`HOLD_OFF_S` seconds. Another runner taking
            the room first is no error.

    Raises:
        SchemaValidationError: *concurrency* is below 1 or *poll_s* not above 0.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        queue: MemoryJobQueue | None = None,
        concurrency: int = 4,
        poll_s: float = DEFAULT_POLL_S,
        on_event: Callable[[Event], None] | None = None,
        on_start: Callable[[RoomId], None] | None = None,
        on_done: Callable[[RoomState], None] | None = None,
        on_error: Callable[[RoomId, Exception], None] | None = None,
    ) -> None:
        problems = []
        if not isinstance(concurrency, int) or concurrency < 1:
            problems.append(Problem("concurrency", f"expected at least 1, got {concurrency!r}"))
        if not isinstance(poll_s, int | float) or not poll_s > 0:
            problems.append(Problem("poll_s", f"expected a number above 0, got {poll_s!r}"))
        if problems:
            raise SchemaValidationError("worker settings", problems)
        self.rt = runtime
        self.queue = queue
        self.concurrency = concurrency
        self.poll_s = float(poll_s)
        self.on_event = on_event
        self.on_start = on_start
        self.on_done = on_done
        self.on_error = on_error
        self.rooms_run = 0
        """How many room runs returned (finished, waiting, or handed back to sleep)."""
        self._stopping = False
        self._tasks: dict[RoomId, asyncio.Task[None]] = {}
        self._held_off: dict[RoomId, float] = {}  # room -> monotonic time to try it again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ended_meanwhile: set[RoomId] | None = None  # runs that ended during a query

    @property
    def running(self) -> frozenset[RoomId]:
        """The rooms being run now."""
        return frozenset(self._tasks)

    def stop(self) -> None:
        """Stop: start no more rooms, and let the running ones stop at their next step
        boundary (every step so far is committed; the rooms stay resumable). :meth:`run`
        returns once they have. Safe from a signal handler or another thread."""
        self._stopping = True
        self.rt.request_stop()
        self._poke()

    def _poke(self) -> None:
        """Wake the loop to look again (thread-safe)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def run(self, *, idle_exit_s: float | None = None) -> int:
        """Run due rooms until :meth:`stop`, or until there has been nothing to do for
        *idle_exit_s* seconds (0: as soon as no room is due or running).

        Returns:
            How many room runs returned (:attr:`rooms_run`).
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.queue is not None:
            self.queue.listener = self._poke
        idle_since = time.monotonic()
        try:
            while not self._stopping:
                self._wake.clear()
                await self._start_due()
                if self._tasks:
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                    break
                timeout = await self._sleep_s()
                if idle_exit_s is not None and not self._tasks:
                    timeout = min(timeout, max(0.0, idle_since + idle_exit_s - time.monotonic()))
                if timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            if self._tasks:
                self.rt.request_stop()  # e.g. cancelled: the runs stop at a step boundary
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            if self.queue is not None:
                self.queue.listener = None
            await self._close_models()
        return self.rooms_run

    async def _start_due(self) -> None:
        """Start runs of queued jobs and due rooms, up to the free slots."""
        now = time.monotonic()
        for room_id, until in list(self._held_off.items()):
            if until <= now:
                del self._held_off[room_id]
        if self.queue is not None:
            while len(self._tasks) < self.concurrency:
                job = self.queue.pop_due()
                if job is None:
                    break
                if job not in self._tasks:  # a running room's run goes on anyway
                    self._start(job)
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return
        # through the runner's store IO: a network store's query must not stall the rooms.
        # A run that ends while the query is out may be in its answer as it was before the
        # run's last commit: such a room is left for the next look (the end wakes the loop).
        ended = self._ended_meanwhile = set()
        try:
            due = await self.rt.store_io.call(
                self.rt.states.due_rooms,
                self.rt.now(),
                limit=free + len(self._tasks) + len(self._held_off),
            )
            if len(due) < free:  # and rooms whose runner died (a lease expired unreleased)
                due += await self.rt.store_io.call(
                    expired_rooms, self.rt.states, self.rt.now(), limit=free + len(self._tasks)
                )
        finally:
            self._ended_meanwhile = None
        for room_id in due:
            if room_id in self._tasks or room_id in self._held_off or room_id in ended:
                continue
            self._start(room_id)
            if len(self._tasks) >= self.concurrency:
                return

    def _start(self, room_id: RoomId) -> None:
        assert self._loop is not None
        if self.on_start is not None:
            self.on_start(room_id)
        task = self._loop.create_task(self._run_room(room_id))
        self._tasks[room_id] = task
        task.add_done_callback(lambda _: self._finished(room_id))

    def _finished(self, room_id: RoomId) -> None:
        self._tasks.pop(room_id, None)
        if self._ended_meanwhile is not None:
            self._ended_meanwhile.add(room_id)
        if self._wake is not None:
            self._wake.set()  # a slot is free: look again

    async def _run_room(self, room_id: RoomId) -> None:
        try:
            state = await self.rt.arun(room_id, hand_over=True, on_event=self.on_event)
        except RoomLeasedError:
            return  # another runner took it first: it is theirs
        except Exception as exc:  # one room's failure never stops the worker
            self._held_off[room_id] = time.monotonic() + HOLD_OFF_S
            if self.on_error is not None:
                self.on_error(room_id, exc)
            return
        self.rooms_run += 1
        if self.on_done is not None:
            self.on_done(state)

    async def _sleep_s(self) -> float:
        """Seconds until something may be due: the store's next wake-up, the queue's next
        job, a held-off room's turn; *poll_s* at most, for rooms made elsewhere meanwhile."""
        timeout = self.poll_s
        wake_at = await self.rt.store_io.call(self.rt.states.next_wake_at)
        if wake_at is not None:
            ahead_ms = wake_at - self.rt.now()
            # one already due is being run, waits for a free slot (a finished run wakes the
            # loop) or is held off (below)
            if ahead_ms > 0:
                timeout = min(timeout, ahead_ms / 1000)
        if self.queue is not None:
            job_in = self.queue.next_due_in()
            if job_in is not None and (job_in > 0 or len(self._tasks) < self.concurrency):
                timeout = min(timeout, job_in)
        if self._held_off:
            timeout = min(timeout, max(0.0, min(self._held_off.values()) - time.monotonic()))
        return timeout

    async def _close_models(self) -> None:
        """Let model clients close what they opened on this event loop (as Runtime.run)."""
        rt = self.rt
        if rt.model_registry is not None or "openrooms.llm.registry" in sys.modules:
            await rt.models.aclose()
