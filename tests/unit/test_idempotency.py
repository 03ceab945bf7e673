"""The idempotency key a tool sees: the same when an interrupted attempt runs again, new per retry.

A tool is interrupted mid-call by a BaseException (KeyboardInterrupt, or a custom one), so the
runner stops without committing an outcome; a new runtime on the same SQLite file then resumes
the room and the attempt runs again. The keys the tool saw are recorded and compared.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from openrooms import (
    EventType,
    RoomState,
    RoomStatus,
    Runtime,
    ToolContext,
    WorkflowBuilder,
    open_runtime,
    replay,
    tool,
)
from openrooms.registries import Registries, validating_with, validation_registries


class Interrupted(BaseException):
    """Not an Exception: the runner must let it through, as it would a real interruption."""


@attrs.define
class Call:
    key: str
    attempt: int
    room_id: str
    node: str


class Script:
    """What the scripted tool does on each call, and what it saw."""

    def __init__(self) -> None:
        self.plan: Iterator[BaseException | None] = iter(())
        self.calls: list[Call] = []

    def play(self, *steps: BaseException | None) -> None:
        """Raise each given exception on the next calls in turn; None means succeed."""
        self.plan = iter(steps)

    def __call__(self, ctx: ToolContext) -> int:
        self.calls.append(Call(ctx.idempotency_key, ctx.attempt, ctx.room_id, ctx.node))
        step = next(self.plan, None)
        if step is not None:
            raise step
        return len(self.calls)

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.calls]


_names = itertools.count()


@pytest.fixture(params=["sync", "async"])
def scripted(request: pytest.FixtureRequest) -> Iterator[tuple[str, Script]]:
    """A tool, sync (run on a thread) or async, doing what its script says; and its name.
    It lives in this test's registries, which every runtime :func:`fresh` opens uses."""
    script = Script()
    name = f"scripted_{request.param}_{next(_names)}"
    regs = Registries()
    if request.param == "sync":

        def call_sync(n: int, ctx: ToolContext) -> int:
            return script(ctx)

        tool(name=name, registry=regs.tools)(call_sync)
    else:

        async def call_async(n: int, ctx: ToolContext) -> int:
            return script(ctx)

        tool(name=name, registry=regs.tools)(call_async)
    with validating_with(regs):
        yield name, script


def workflow(tool_name: str, *, attempts: int = 1, loops: int = 1) -> WorkflowBuilder:
    """prepare -> call (the tool, retried up to *attempts*) -> again? -> done; *loops* visits."""
    retry = {"max_attempts": attempts, "backoff_s": 0.0} if attempts > 1 else None
    return (
        WorkflowBuilder("idem", variables={"visits": 0, "loops": loops})
        .set("prepare", {"visits": "{{ vars.visits + 1 }}"})
        .tool("call", tool_name, {"n": "{{ vars.visits }}"}, output="result", retry=retry)
        .decision("again")
        .end("done")
        .end("gave_up", status="failed", reason="the tool kept failing")
        .transition("prepare", "call")
        .transition("call", "again")
        .transition("call", "gave_up", on="error")
        .transition("again", "prepare", when="vars.visits < vars.loops")
        .transition("again", "done")
    )


def fresh(url: str) -> Runtime:
    """A new runtime on the file, as a restarted process would open it (with the test's
    registries, as that process would load the same plugin)."""
    return open_runtime(url, registries=validation_registries())


def check_log(rt: Runtime, room_id: str) -> RoomState:
    state = rt.get_room(room_id)
    log = rt.events(room_id)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert replay(log) == state
    return state


def tool_calls_logged(rt: Runtime, room_id: str) -> list[str]:
    return [e.data["idempotency_key"] for e in rt.events(room_id, types=[EventType.TOOL_CALLED])]


@pytest.mark.parametrize(
    "interruption",
    [KeyboardInterrupt, Interrupted],
    ids=["KeyboardInterrupt", "custom BaseException"],
)
def test_an_interrupted_attempt_runs_again_with_the_same_key(
    scripted: tuple[str, Script], interruption: Callable[[], BaseException], tmp_path: Path
) -> None:
    name, script = scripted
    url = f"sqlite:///{tmp_path / 'rooms.db'}"
    script.play(interruption())
    with fresh(url) as rt:
        room = rt.create_room(workflow(name))
        with pytest.raises(type(interruption())):
            rt.run(room.id)
        left = rt.get_room(room.id)
    # nothing about the interrupted call was committed: the room is mid-node
    assert left.status is RoomStatus.RUNNING and left.current_node == "call"
    assert len(script.calls) == 1

    with fresh(url) as rt:
        done = rt.resume(room.id)
        assert done.status is RoomStatus.COMPLETED, done.reason
        check_log(rt, room.id)
        resumed = rt.events(room.id, types=[EventType.ROOM_RESUMED])
        logged = tool_calls_logged(rt, room.id)

    first, second = script.calls
    assert first.key == second.key
    assert first.attempt == second.attempt == 1
    assert (first.room_id, first.node) == (second.room_id, second.node) == (room.id, "call")
    # the log names the key of the attempt it resumed, and records only the call that finished
    assert [e.data["idempotency_key"] for e in resumed] == [first.key]
    assert logged == [first.key]
    assert done.variables["result"] == len(script.calls)  # the second call's own result


def test_each_retry_gets_a_new_key_with_the_next_attempt_number(
    scripted: tuple[str, Script], tmp_path: Path
) -> None:
    name, script = scripted
    script.play(RuntimeError("flaky"), ConnectionError("flaky again"))
    with fresh(f"sqlite:///{tmp_path / 'rooms.db'}") as rt:
        room = rt.create_room(workflow(name, attempts=3))
        done = rt.run(room.id)
        assert done.status is RoomStatus.COMPLETED, done.reason
        check_log(rt, room.id)
        logged = tool_calls_logged(rt, room.id)

    assert [c.attempt for c in script.calls] == [1, 2, 3]
    assert len(set(script.keys)) == 3
    prefixes = {k.rsplit(":", 1)[0] for k in script.keys}
    assert len(prefixes) == 1  # only the attempt part differs
    assert [k.rsplit(":", 1)[1] for k in script.keys] == ["1", "2", "3"]
    assert logged == script.keys  # failed attempts' calls are logged too


def test_a_retry_interrupted_mid_call_resumes_with_that_retrys_key(
    scripted: tuple[str, Script], tmp_path: Path
) -> None:
    name, script = scripted
    url = f"sqlite:///{tmp_path / 'rooms.db'}"
    script.play(RuntimeError("flaky"), KeyboardInterrupt())
    with fresh(url) as rt:
        room = rt.create_room(workflow(name, attempts=3))
        with pytest.raises(KeyboardInterrupt):
            rt.run(room.id)
    with fresh(url) as rt:
        done = rt.resume(room.id)
        assert done.status is RoomStatus.COMPLETED, done.reason
        check_log(rt, room.id)

    first, interrupted, again = script.calls
    assert [c.attempt for c in script.calls] == [1, 2, 2]
    assert interrupted.key == again.key
    assert first.key != interrupted.key


def test_a_new_visit_of_the_node_gets_a_new_key(
    scripted: tuple[str, Script], tmp_path: Path
) -> None:
    name, script = scripted
    with fresh(f"sqlite:///{tmp_path / 'rooms.db'}") as rt:
        room = rt.create_room(workflow(name, loops=3))
        done = rt.run(room.id)
        assert done.status is RoomStatus.COMPLETED, done.reason
        assert done.visits["call"] == 3
    assert len(set(script.keys)) == 3
    assert all(c.attempt == 1 for c in script.calls)
    assert {k.rsplit(":", 1)[1] for k in script.keys} == {"1"}  # same attempt, other visits


def test_keys_are_distinct_across_rooms(scripted: tuple[str, Script], tmp_path: Path) -> None:
    name, script = scripted
    with fresh(f"sqlite:///{tmp_path / 'rooms.db'}") as rt:
        rooms = [rt.create_room(workflow(name)) for _ in range(3)]
        for room in rooms:
            rt.run(room.id)
    assert len(set(script.keys)) == 3
    assert [c.room_id for c in script.calls] == [r.id for r in rooms]
    for key, room in zip(script.keys, rooms, strict=True):
        assert room.id in key
