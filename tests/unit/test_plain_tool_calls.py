"""A plain ``tool`` node's attempt, made without a node context, is the general one's twin.

The runner makes an attempt of a ``tool`` node whose tool takes no ToolContext, with no
``timeout_s`` and no argument splicing values into text, the fast way
(:func:`~openrooms.nodes.builtin.plain_tool`). Each test runs the same rooms with that
way on and forced off (``Runner.plain_tool_calls``), on a memory and a SQLite store, under
the same clock, and compares the logs (all but the measured durations) and the states.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from openrooms import (
    BackendUnavailableError,
    EventType,
    LeaseLostError,
    RoomState,
    RoomStatus,
    Runtime,
    ToolContext,
    ToolRegistry,
    WorkflowBuilder,
    tool,
)
from openrooms.backends import Lease, MemoryStore, SQLiteStore
from openrooms.events import Event
from openrooms.nodes.builtin import plain_tool
from openrooms.types import RoomId
from openrooms.workflow import Workflow

SECRET = "sk-plain-tool-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def _a_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A credential-named variable: its value must be scrubbed from what the room stores."""
    monkeypatch.setenv("PLAIN_TOOL_TEST_API_KEY", SECRET)


class Tools:
    """The tools of these rooms, and how often each was called."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.registry = registry = ToolRegistry()

        def count(name: str) -> int:
            self.calls[name] = n = self.calls.get(name, 0) + 1
            return n

        @tool(name="next", registry=registry)
        def next_(n: int) -> int:
            """n + 1 (sync: run on a thread)."""
            count("next")
            return n + 1

        @tool(name="flaky", registry=registry)
        async def flaky() -> str:
            """Fails twice with ConnectionError, then returns text holding a secret."""
            if count("flaky") <= 2:
                raise ConnectionError("the line dropped")
            return f"connected with {SECRET}"

        @tool(name="broken", registry=registry)
        async def broken(why: int) -> None:
            """Always fails."""
            count("broken")
            raise ValueError(f"broken: {why}")

        @tool(name="nan", registry=registry)
        async def nan() -> float:
            """A value no store can hold."""
            count("nan")
            return float("nan")

        @tool(name="big", registry=registry)
        async def big() -> list[int]:
            """A result longer than the log keeps."""
            count("big")
            return list(range(30_000))

        @tool(name="echo", registry=registry)
        async def echo(value: Any) -> Any:
            """Its argument back."""
            count("echo")
            return value

        @tool(name="with_context", registry=registry)
        async def with_context(ctx: ToolContext) -> str:
            """Takes a ToolContext: never plain."""
            count("with_context")
            return ctx.idempotency_key


def everything(tools: Tools) -> Workflow:
    """A room through every way a tool step ends: a loop, retries, ``on: error`` routes,
    an unstorable result, a schema error, a failing template, a truncated result."""
    retry3 = {"max_attempts": 3, "backoff_s": 0.0}
    return (
        WorkflowBuilder("plain_tools", variables={"i": 0, "secret": None})
        .tool("count", "next", {"n": "{{ vars.i }}"}, output="i")
        .tool("flaky", "flaky", {}, output="secret", retry=retry3)
        .tool("broken", "broken", {"why": "{{ vars.i }}"}, retry={"max_attempts": 2})
        .tool("nan", "nan", {})
        .tool("bad_args", "next", {"n": "not a number"})
        .tool("bad_template", "echo", {"value": "{{ vars.missing.x }}"})
        .tool("big", "big", {}, output="big")
        .tool("context", "with_context", {}, output="key")
        .tool("echo", "echo", {"value": {"list": ["{{ vars.i }}", 1.5, None]}}, output="echo")
        .end("done")
        .transition("count", "count", when="vars.i < 3")
        .transition("count", "flaky")
        .transition("flaky", "broken")
        .transition("broken", "nan", on="error")
        .transition("nan", "bad_args", on="error")
        .transition("bad_args", "bad_template", on="error")
        .transition("bad_template", "big", on="error")
        .transition("big", "context")
        .transition("context", "echo")
        .transition("echo", "done")
        .build(tools=tools.registry)
    )


def runaway(tools: Tools, **settings: Any) -> Workflow:
    """A tool loop ``max_steps`` (or a ``budget``) stops."""
    wf = (
        WorkflowBuilder("runaway", variables={"i": 0}, max_steps=settings.get("max_steps", 100))
        .tool("count", "next", {"n": "{{ vars.i }}"}, output="i")
        .end("done")
        .transition("count", "count", when="vars.i < 1000")
        .transition("count", "done")
        .build(tools=tools.registry)
        .to_dict()
    )
    if "budget" in settings:
        wf["budget"] = settings["budget"]
    return Workflow.from_dict(wf, tools=tools.registry)


def open_store(kind: str, path: Path) -> MemoryStore | SQLiteStore:
    return MemoryStore() if kind == "memory" else SQLiteStore(path)


def clock() -> Iterator[int]:
    return itertools.count(1_700_000_000_000, 250)


def runtime(store: MemoryStore | SQLiteStore, tools: Tools, plain: bool) -> Runtime:
    ticks = clock()
    rt = Runtime(store, store, tools=tools.registry, clock=lambda: next(ticks))
    rt._runner.plain_tool_calls = plain
    return rt


def timeless(events: Sequence[Event]) -> list[Event]:
    """The events without their measured durations (the only values two runs may differ in)."""
    return [attrs.evolve(e, duration_ms=None) for e in events]


def run_both(
    kind: str, tmp_path: Path, make: Any, **create: Any
) -> tuple[tuple[list[Event], RoomState, dict[str, int]], ...]:
    """The same room run with the plain way on and off: its log, state and tool calls."""
    out = []
    for plain in (True, False):
        tools = Tools()
        store = open_store(kind, tmp_path / f"{plain}.db")
        rt = runtime(store, tools, plain)
        room = rt.create_room(make(tools), room_id="room-1", **create)
        state = rt.run(room.id)
        assert state == rt.get_room(room.id) == rt.replay(room.id)
        out.append((timeless(rt.events(room.id)), state, tools.calls))
        rt.close()
    return tuple(out)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_nodes_here_are_plain_but_the_one_whose_tool_takes_a_context() -> None:
    tools = Tools()
    rt = Runtime(MemoryStore(), MemoryStore(), tools=tools.registry)
    nodes = everything(tools).plan.nodes
    plain = {name for name, np in nodes.items() if plain_tool(np, rt.tools) is not None}
    assert plain == {
        "count",
        "flaky",
        "broken",
        "nan",
        "bad_args",
        "bad_template",
        "big",
        "echo",
    }
    rt.close()


def test_every_way_a_tool_step_ends_logs_and_stores_the_same_either_way(
    kind: str, tmp_path: Path
) -> None:
    fast, general = run_both(kind, tmp_path, everything)
    assert fast == general
    events, state, calls = fast
    assert state.status is RoomStatus.COMPLETED, state.reason
    # what the room went through, so the comparison above is of something
    assert calls == {
        "next": 3,  # and a call refused by its schema
        "flaky": 3,
        "broken": 2,
        "nan": 1,
        "big": 1,
        "with_context": 1,
        "echo": 1,
    }
    failed = [
        (e.node, e.error.type if e.error else None)
        for e in events
        if e.type is EventType.NODE_FAILED
    ]
    assert failed == [
        ("flaky", "ConnectionError"),
        ("flaky", "ConnectionError"),
        ("broken", "ValueError"),
        ("broken", "ValueError"),
        ("nan", "UnstorableValueError"),
        ("bad_args", "SchemaValidationError"),
        ("bad_template", "EvaluationError"),
    ]
    assert SECRET not in repr(events) and SECRET not in repr(state)
    assert state.variables["secret"] == "connected with [redacted]"
    (big,) = [e for e in events if e.type is EventType.TOOL_CALLED and e.node == "big"]
    assert big.data["truncated"] is True
    assert state.variables["echo"] == {"list": [3, 1.5, None]}
    keys = [e.data["idempotency_key"] for e in events if e.type is EventType.TOOL_CALLED]
    assert keys[:4] == [*(f"room-1:count:{visit}:1" for visit in (1, 2, 3)), "room-1:flaky:1:1"]


@pytest.mark.parametrize(
    "settings",
    [{"max_steps": 4}, {"budget": {"max_wall_s": 2.0}}],
    ids=["max_steps", "budget"],
)
def test_a_loop_of_tool_steps_stops_at_the_same_step_either_way(
    kind: str, tmp_path: Path, settings: dict[str, Any]
) -> None:
    fast, general = run_both(kind, tmp_path, lambda t: runaway(t, **settings))
    assert fast == general
    events, state, calls = fast
    assert state.status is RoomStatus.FAILED
    assert 1 <= calls["next"] < 10
    assert events[-1].type is EventType.ROOM_FAILED


class CrashingStore(SQLiteStore):
    """A SQLite store whose commits of a TOOL_CALLED event raise while ``crashing``: as if
    the process died after the call, before its commit (a test device over a real file)."""

    crashing = True

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        if self.crashing and any(e.type is EventType.TOOL_CALLED for e in events):
            raise BackendUnavailableError("sqlite", "the process died (on purpose)")
        super().commit(state, events, expected_version=expected_version, lease=lease)


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "general"])
def test_a_call_lost_before_its_commit_is_made_again_with_the_same_key(
    tmp_path: Path, plain: bool
) -> None:
    tools = Tools()
    store = CrashingStore(tmp_path / "rooms.db")
    rt = runtime(store, tools, plain)
    room = rt.create_room(runaway(tools, max_steps=3), room_id="room-1")
    with pytest.raises(BackendUnavailableError, match="on purpose"):
        rt.run(room.id)
    assert tools.calls == {"next": 1}
    assert not rt.events(room.id, types=[EventType.TOOL_CALLED])
    store.crashing = False
    done = rt.run(room.id)
    assert done.status is RoomStatus.FAILED  # at max_steps
    assert tools.calls == {"next": 4}  # the first call made twice
    keys = [e.data["idempotency_key"] for e in rt.events(room.id, types=[EventType.TOOL_CALLED])]
    assert keys == ["room-1:count:1:1", "room-1:count:2:1", "room-1:count:3:1"]
    assert done.variables["i"] == 3
    assert rt.replay(room.id) == done
    rt.close()


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "general"])
def test_a_lease_lost_mid_call_cancels_it_and_commits_nothing(tmp_path: Path, plain: bool) -> None:
    db = tmp_path / "rooms.db"
    entered, cancelled = threading.Event(), threading.Event()
    registry = ToolRegistry()

    @tool(name="hold", registry=registry)
    async def hold() -> int:
        """Waits (for at most 15 s) until cancelled."""
        entered.set()
        try:
            await asyncio.sleep(15)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 999

    wf = (
        WorkflowBuilder("held", variables={"x": 0})
        .tool("call", "hold", {}, output="x")
        .end("done")
        .transition("call", "done")
        .build(tools=registry)
    )
    a = Runtime(SQLiteStore(db), SQLiteStore(db), tools=registry, lease_ttl_ms=600)
    a._runner.plain_tool_calls = plain
    room = a.create_room(wf)
    errors: list[BaseException] = []

    def run_a() -> None:
        try:
            a.run(room.id)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_a)
    thread.start()
    assert entered.wait(10)
    b = Runtime(store := SQLiteStore(db), store, tools=registry)
    lease = store.acquire_lease(room.id, "someone-else", ttl_ms=60_000, now=b.now(), force=True)
    started = time.monotonic()
    thread.join(20)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], LeaseLostError), errors
    assert cancelled.is_set()
    assert time.monotonic() - started < 5
    assert not b.events(room.id, types=[EventType.TOOL_CALLED, EventType.NODE_COMPLETED])
    assert b.get_room(room.id).variables["x"] == 0
    store.release_lease(lease)
    a.close()
    b.close()


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "general"])
def test_a_step_whose_lease_was_taken_during_the_call_is_refused_whole(
    tmp_path: Path, plain: bool
) -> None:
    """Another runner forces the lease while the tool runs (before the keeper could
    notice): the step's commit is refused by the store's fence, ``run`` raises
    LeaseLostError naming the new owner, and nothing of the step is in the log."""
    db = tmp_path / "rooms.db"
    other = SQLiteStore(db)
    registry = ToolRegistry()
    taken: list[Lease] = []
    reached: list[int] = []

    @tool(name="usurped", registry=registry)
    async def usurped() -> int:
        """Returns 7, after another runner took the room's lease."""
        taken.append(
            other.acquire_lease(RoomId("room-1"), "usurper", ttl_ms=60_000, now=0, force=True)
        )
        return 7

    @tool(name="after", registry=registry)
    async def after() -> int:
        """Never reached: the runner stops at the refused commit."""
        reached.append(8)
        return 8

    wf = (  # the step is not the session's last: its commit is a plain one
        WorkflowBuilder("usurped", variables={"x": 0})
        .tool("call", "usurped", {}, output="x")
        .tool("next", "after", {}, output="x")
        .end("done")
        .transitions(("call", "next"), ("next", "done"))
        .build(tools=registry)
    )
    store = SQLiteStore(db)
    ticks = clock()
    rt = Runtime(store, store, tools=registry, clock=lambda: next(ticks))
    rt._runner.plain_tool_calls = plain
    rt.create_room(wf, room_id="room-1")
    shown: list[Event] = []
    with pytest.raises(LeaseLostError, match="usurper"):
        rt.run("room-1", on_event=shown.append)
    assert len(taken) == 1 and not reached  # the next node never ran
    assert [e.type for e in shown] == [EventType.ROOM_STARTED, EventType.NODE_STARTED]
    assert not rt.events("room-1", types=[EventType.TOOL_CALLED, EventType.NODE_COMPLETED])
    assert rt.get_room("room-1").variables["x"] == 0
    other.release_lease(taken[0])
    other.close()
    rt.close()
