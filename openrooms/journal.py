"""The journal: what one attempt of a node has done so far, made durable call by call.

A node that calls models or tools records each call as an event the moment it
returns (``LLM_CALLED``, ``TOOL_CALLED``, ``BRANCH_COMPLETED``, ...), committed with
the room's state under the runner's lease. When the attempt is executed again —
after a crash (same attempt, same idempotency key) or when a finished room is
replayed — the executor asks the journal first and reuses the recorded result
instead of calling again::

    recorded = ctx.journal.take(EventType.LLM_CALLED)
    if recorded is not None:
        reply = recorded.data["response"]          # what the model said last time
    else:
        reply = await call_the_model()
        ctx.journal.commit(LogRecord(EventType.LLM_CALLED, {"response": reply}))

Calls are matched in order within a *scope*: the node itself (``""``), or one branch
of a ``parallel`` / ``map`` node (``"web"``, ``"items[3]"``), so concurrent branches
never take each other's results.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from openrooms.errors import RoomStoppedError
from openrooms.events import Event, EventType
from openrooms.llm.base import Message
from openrooms.memory import Conversations, RoomMemory
from openrooms.nodes.base import LogRecord
from openrooms.room import RoomState

__all__ = ["JOURNALED", "Journal", "RecordedCalls", "RoomStoppedError", "logged_since_start"]

JOURNALED: frozenset[EventType] = frozenset(
    {
        EventType.LLM_CALLED,
        EventType.TOOL_CALLED,
        EventType.BRANCH_COMPLETED,
        EventType.MESSAGES_ADDED,
        EventType.MEMORY_SET,
    }
)
"""Event types an attempt records while it runs; a re-execution reuses them."""


def logged_since_start(state: RoomState) -> bool:
    """Whether the running attempt logged anything after its NODE_STARTED (it ran before a
    crash and recorded calls): only then is there a journal to read back from the log."""
    return state.version > state.node_seq


class RecordedCalls(Protocol):
    """Where a re-run finds each attempt's calls: idempotency key -> recorded events."""

    def get(self, key: str, default: Sequence[Event] = ()) -> Sequence[Event]: ...


Committer = Callable[[Sequence[LogRecord]], tuple[RoomState, Sequence[Event]]]
AsyncCommitter = Callable[[Sequence[LogRecord]], Awaitable[tuple[RoomState, Sequence[Event]]]]
ThreadReader = Callable[[], Conversations]


class Journal:
    """The calls one attempt has recorded, and the way to record more.

    Args:
        state: the room's state as the attempt runs (updated by every commit).
        recorded: events the attempt recorded before (a resumed or replayed attempt).
        committer: makes records durable; returns the new state and the events.
        threads: reads the conversation threads as they were before this attempt.
        scope: the branch this journal is for; ``""`` for the node itself.
        echo: commit each reused event again (a re-run writes a new log from the old one).
        acommitter: makes records durable without stalling the event loop (for
            :meth:`acommit`); *committer* is used when there is none.
    """

    def __init__(
        self,
        state: RoomState,
        recorded: Sequence[Event],
        committer: Committer,
        threads: ThreadReader,
        scope: str = "",
        _shared: _Shared | None = None,
        *,
        echo: bool = False,
        acommitter: AsyncCommitter | None = None,
    ) -> None:
        self._shared = _shared or _Shared(
            state, list(recorded), committer, threads, echo, acommitter
        )
        self.scope = scope

    @property
    def state(self) -> RoomState:
        """The room's state including everything committed so far."""
        return self._shared.state

    @property
    def echo(self) -> bool:
        """Whether this is a re-run (reused events are written to a new log as they are taken)."""
        return self._shared.echo

    def scoped(self, name: str) -> Journal:
        """The journal of branch *name* inside this one."""
        scope = f"{self.scope}/{name}" if self.scope else name
        return Journal(
            self.state, (), self._shared.committer, self._shared.threads, scope, self._shared
        )

    def take(self, type: EventType, match: Callable[[Event], bool] | None = None) -> Event | None:
        """The first not yet reused event of *type* in this scope (and passing *match*)."""
        shared = self._shared
        for i, e in enumerate(shared.recorded):
            if shared.used[i] or e.type is not type or _scope_of(e) != self.scope:
                continue
            if match is not None and not match(e):
                continue
            shared.used[i] = True
            if shared.echo:
                record = LogRecord(e.type, e.data, e.level, e.duration_ms, e.error)
                shared.state, _ = shared.committer([record])
            return e
        return None

    def commit(self, *records: LogRecord) -> list[Event]:
        """Make *records* durable now, tagged with this journal's scope.

        Raises:
            RoomStoppedError: the room finished (was cancelled, say) meanwhile.
        """
        state, events = self._shared.committer(self._scoped(records))
        self._shared.state = state
        return list(events)

    async def acommit(self, *records: LogRecord) -> list[Event]:
        """:meth:`commit`, awaited: on a store whose calls may block, the commit is made off
        the event loop, so other rooms and branches run meanwhile. One attempt's commits are
        made one at a time, in the order they were asked for (concurrent branches take
        turns); do not mix with :meth:`commit` while one is in flight.

        Raises:
            RoomStoppedError: the room finished (was cancelled, say) meanwhile.
        """
        shared = self._shared
        if shared.acommitter is None:
            return self.commit(*records)
        if shared.lock is None:
            shared.lock = asyncio.Lock()
        async with shared.lock:
            commit = asyncio.ensure_future(shared.acommitter(self._scoped(records)))
            try:
                state, events = await asyncio.shield(commit)
            except asyncio.CancelledError:
                # Cancelled (a deadline, a sibling branch that failed) while the commit is
                # made off the loop: it may land all the same, so wait for it and keep the
                # attempt's state the log's, then stop as asked.
                with contextlib.suppress(Exception):
                    shared.state = (await commit)[0]
                raise
        shared.state = state
        return list(events)

    def _scoped(self, records: Sequence[LogRecord]) -> Sequence[LogRecord]:
        if not self.scope:
            return records
        return tuple(
            LogRecord(r.type, {**r.data, "scope": self.scope}, r.level, r.duration_ms, r.error)
            for r in records
        )

    def threads(self) -> dict[str, list[dict[str, Any]]]:
        """Every conversation thread as earlier nodes left it."""
        return self._conversations().as_dicts()

    def messages(self, name: str) -> tuple[Message, ...]:
        """Thread *name* as messages, parsed once per room run (the agent node's view)."""
        return self._conversations().messages(name)

    def _conversations(self) -> Conversations:
        shared = self._shared
        if shared.thread_cache is None:
            shared.thread_cache = shared.threads()  # read once per attempt
        return shared.thread_cache

    def memory(self) -> RoomMemory:
        """The room's memory as this attempt sees it (for tools such as ``memory_query``)."""
        return RoomMemory(self.state.memory, self.threads)


class _Shared:
    __slots__ = (
        "acommitter",
        "committer",
        "echo",
        "lock",
        "recorded",
        "state",
        "thread_cache",
        "threads",
        "used",
    )

    def __init__(
        self,
        state: RoomState,
        recorded: list[Event],
        committer: Committer,
        threads: ThreadReader,
        echo: bool,
        acommitter: AsyncCommitter | None = None,
    ) -> None:
        self.acommitter = acommitter
        self.lock: asyncio.Lock | None = None
        self.echo = echo
        self.state = state
        self.recorded = recorded
        self.used = [False] * len(recorded)
        self.committer = committer
        self.threads = threads
        self.thread_cache: Conversations | None = None


def _scope_of(e: Event) -> str:
    scope = e.data.get("scope", "")
    return scope if isinstance(scope, str) else ""
