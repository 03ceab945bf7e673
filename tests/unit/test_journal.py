"""The journal's awaited commits: made one at a time, and never lost to a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from openrooms import engine
from openrooms.events import Event, EventType, Level
from openrooms.journal import Journal
from openrooms.memory import Conversations
from openrooms.nodes import LogRecord
from openrooms.room import RoomState
from openrooms.types import RoomId
from openrooms.workflow import WorkflowBuilder

WF = (
    WorkflowBuilder("j")
    .tool("t", "calculator", args={"expression": "1"})
    .end("done")
    .transition("t", "done")
    .build()
)


def started() -> RoomState:
    created = engine.create_room(WF, RoomId("r"), now=1)
    return engine.start(WF, created.state, now=2).state


def call(n: int) -> LogRecord:
    return LogRecord(EventType.TOOL_CALLED, {"tool": "calculator", "n": n}, Level.INFO, 1.0)


class SlowLog:
    """An acommitter whose commits land only when the test lets them (as a store's commit
    made on the IO thread goes on whatever happens to the coroutine that asked for it)."""

    def __init__(self, state: RoomState) -> None:
        self.state = state
        self.gate = asyncio.Event()
        self.begun = asyncio.Event()
        self.landed: list[int] = []

    async def commit(self, records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
        # the work goes on when the caller is cancelled, as a call on the IO thread does
        self.work = asyncio.ensure_future(self._land(records))
        return await asyncio.shield(self.work)

    async def _land(self, records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
        self.begun.set()
        await self.gate.wait()
        step = engine.record(WF, self.state, records, now=3)
        self.state = step.state
        self.landed.append(step.state.version)
        return step.state, step.events

    def sync(self, records: Sequence[LogRecord]) -> tuple[RoomState, Sequence[Event]]:
        raise AssertionError("the awaited path only")


def test_a_commit_cancelled_while_it_is_made_still_moves_the_journal_s_state() -> None:
    """A branch cancelled (a deadline passed, a sibling failed) while its commit is being
    made: the commit lands, so the attempt's state must include it, or the node's own
    commit after it would be refused as stale and the room left running."""

    async def scenario() -> tuple[Journal, SlowLog, bool]:
        log = SlowLog(started())
        journal = Journal(log.state, (), log.sync, Conversations, acommitter=log.commit).scoped(
            "branch"
        )
        task = asyncio.ensure_future(journal.acommit(call(1)))
        await log.begun.wait()
        task.cancel()
        log.gate.set()  # the commit lands after the cancellation
        try:
            await task
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        await log.work  # landed, whatever the caller did
        return journal, log, cancelled

    journal, log, cancelled = asyncio.run(scenario())
    assert cancelled  # the caller still learns it was cancelled
    assert log.landed == [journal.state.version]  # and the journal knows what landed
    assert journal.state == log.state


def test_awaited_commits_are_made_one_at_a_time_in_the_order_asked() -> None:
    async def scenario() -> list[int]:
        log = SlowLog(started())
        journal = Journal(log.state, (), log.sync, Conversations, acommitter=log.commit)
        first = asyncio.ensure_future(journal.scoped("a").acommit(call(1)))
        second = asyncio.ensure_future(journal.scoped("b").acommit(call(2)))
        await log.begun.wait()
        log.gate.set()
        await asyncio.gather(first, second)
        return [*log.landed, journal.state.version]

    landed = asyncio.run(scenario())
    assert landed[0] < landed[1] == landed[2]
