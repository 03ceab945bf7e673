"""The commit contract over single stores and split pairs (state in one store, log in another).

A runner's protocol, as :class:`~openrooms.runner.Runner` follows it: take the lease from
the state store, raise the log's fence to its token (split pairs only; one store checks
the token inside its commit), load the room (rolled forward over the log), then commit
each step with the lease. Whatever the pair, a step the log accepted is the room's, and a
stale writer's step never reaches the log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import attrs
import pytest

from openrooms import engine
from openrooms.backends import EventLog, Lease, StateStore
from openrooms.errors import RoomExistsError, RoomNotFoundError, StaleRoomError
from openrooms.events import Event
from openrooms.nodes import Outcome
from openrooms.room import RoomState, RoomStatus
from openrooms.runner import commit
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import Workflow, WorkflowBuilder
from tests.conftest import discard_store, make_store

WF = (
    WorkflowBuilder("fenced", variables={"i": 0})
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 3")
    .transition("inc", "done")
    .build()
)

PAIRS = [
    "memory",
    "sqlite",
    "postgres",
    "redis",
    "memory+sqlite",
    "sqlite+memory",
    "sqlite+sqlite",
    "sqlite+postgres",
    "postgres+memory",
    "postgres+postgres",
    "redis+sqlite",
    "sqlite+redis",
    "redis+postgres",
]
"""State store + event log: one store for both, or two ("state+log"), each opened by
tests.conftest.make_store; "redis+postgres" is the original design's split."""


@attrs.define
class Pair:
    """A state store and an event log, and the runner's protocol over them."""

    states: StateStore
    log: EventLog

    @property
    def split(self) -> bool:
        return cast(object, self.states) is not self.log

    def commit(
        self,
        state: RoomState,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        lease: Lease | None = None,
    ) -> None:
        commit(self.states, self.log, state, events, expected_version=expected_version, lease=lease)

    def take(self, owner: str, *, now: int, force: bool = False, room: str = "r1") -> Lease:
        """Acquire the lease, then fence the log (as Runner._take_lease does)."""
        lease = self.states.acquire_lease(RoomId(room), owner, ttl_ms=100, now=now, force=force)
        if self.split:
            self.log.fence(RoomId(room), lease.token)
        return lease

    def load(self, room: str = "r1") -> RoomState:
        return Runtime(self.states, self.log).load_room(room)


def open_pair(kinds: str, tmp_path: Path) -> Pair:
    """The stores *kinds* names: ``"sqlite"`` (one store for both) or ``"redis+sqlite"``."""
    names = kinds.split("+")
    states = make_store(names[0], tmp_path, "state")
    log = states if len(names) == 1 else make_store(names[1], tmp_path, "log")
    return Pair(states, log)


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    opened = open_pair(request.param, tmp_path)
    yield opened
    discard_store(opened.states)
    if opened.split:
        discard_store(opened.log)


def make_room(pair: Pair, room: str = "r1") -> RoomState:
    step = engine.create_room(WF, RoomId(room), now=1000, variables={"x": 1})
    pair.commit(step.state, step.events, expected_version=None)
    return step.state


def test_commit_appends_events_and_saves_state(pair: Pair) -> None:
    state = make_room(pair)
    lease = pair.take("w1", now=0)
    step = engine.start(WF, state, now=2000)
    pair.commit(step.state, step.events, expected_version=state.version, lease=lease)
    assert pair.states.get(state.room_id) == step.state
    assert engine.fold(pair.log.read(state.room_id)) == step.state
    assert pair.load() == step.state


def test_creating_an_existing_room_raises_and_writes_nothing(pair: Pair) -> None:
    state = make_room(pair)
    step = engine.create_room(WF, state.room_id, now=5000, variables={"x": 2})
    with pytest.raises(RoomExistsError):
        pair.commit(step.state, step.events, expected_version=None)
    assert pair.log.last_seq(state.room_id) == 1
    assert pair.load() == state


def test_a_commit_with_a_stale_version_writes_nothing(pair: Pair) -> None:
    state = make_room(pair)
    lease = pair.take("w1", now=0)
    step = engine.start(WF, state, now=2000)
    pair.commit(step.state, step.events, expected_version=state.version, lease=lease)
    again = engine.start(WF, state, now=3000)  # computed from the old state
    with pytest.raises(StaleRoomError):
        pair.commit(again.state, again.events, expected_version=state.version, lease=lease)
    assert pair.log.last_seq(state.room_id) == step.state.version
    assert pair.load() == step.state


def test_a_stale_writer_s_step_never_reaches_the_log(pair: Pair) -> None:
    """The issue's case: the old holder's step is refused by the log itself, so no
    roll-forward can bring it back."""
    state = make_room(pair)
    old = pair.take("w1", now=0)
    pair.take("w2", now=10, force=True)
    stale = engine.start(WF, attrs.evolve(state, variables={"x": 999}), now=20)
    with pytest.raises(StaleRoomError):
        pair.commit(stale.state, stale.events, expected_version=state.version, lease=old)
    with pytest.raises(StaleRoomError):
        pair.log.append(stale.events, lease=old)  # the log alone refuses it too
    assert pair.log.last_seq(state.room_id) == 1
    loaded = pair.load()
    assert loaded == state
    assert loaded.variables["x"] == 1


def test_appends_accepted_before_the_fence_are_rolled_forward(pair: Pair) -> None:
    """A holder that crashed between its append and its state save: the next holder, having
    fenced the log, reads that append and rolls the state forward over it; the old holder's
    later appends are refused."""
    state = make_room(pair)
    old = pair.take("w1", now=0)
    step = engine.start(WF, state, now=2000)
    pair.log.append(step.events, lease=old)  # and then the process died
    new = pair.take("w2", now=5000)
    loaded = pair.load()
    assert loaded == step.state
    assert pair.states.get(state.room_id) == step.state  # the state store caught up
    ran = engine.decide(WF, loaded, Outcome.ok(), now=6000, duration_ms=1.0)
    with pytest.raises(StaleRoomError):
        pair.commit(ran.state, ran.events, expected_version=loaded.version, lease=old)
    pair.commit(ran.state, ran.events, expected_version=loaded.version, lease=new)
    assert pair.load() == ran.state
    assert engine.fold(pair.log.read(state.room_id)) == ran.state


def test_a_step_is_in_the_room_exactly_when_the_log_accepted_it(pair: Pair) -> None:
    """The old holder commits after the new one took the lease but before it fenced the log:
    one store refuses it (the token is checked in the transaction); a split pair's log
    accepts it, and then it is the room's: never reported as refused, and read by the new
    holder."""
    state = make_room(pair)
    old = pair.take("w1", now=0)
    new = pair.states.acquire_lease(state.room_id, "w2", ttl_ms=100, now=10, force=True)
    step = engine.start(WF, state, now=20)
    try:
        pair.commit(step.state, step.events, expected_version=state.version, lease=old)
        accepted = True
    except StaleRoomError:
        accepted = False
    assert accepted is pair.split
    if pair.split:
        pair.log.fence(state.room_id, new.token)
    loaded = pair.load()
    assert loaded == (step.state if accepted else state)
    assert engine.fold(pair.log.read(state.room_id)) == loaded
    if accepted:
        again = engine.decide(WF, loaded, Outcome.ok(), now=30, duration_ms=1.0)
    else:
        again = engine.start(WF, loaded, now=30)
    with pytest.raises(StaleRoomError):  # whatever happened, the old holder is done now
        pair.commit(again.state, again.events, expected_version=loaded.version, lease=old)


def test_the_fence_only_goes_up(pair: Pair) -> None:
    state = make_room(pair)
    room = state.room_id
    pair.log.fence(room, 5)
    pair.log.fence(room, 5)  # the same token again: nothing changes
    with pytest.raises(StaleRoomError):
        pair.log.fence(room, 4)
    step = engine.start(WF, state, now=2000)
    with pytest.raises(StaleRoomError):
        pair.log.append(step.events, lease=Lease(room, "w", 4, 10_000))
    pair.log.append(step.events, lease=Lease(room, "w", 6, 10_000))  # a newer token raises it
    ran = engine.decide(WF, step.state, Outcome.ok(), now=3000, duration_ms=1.0)
    with pytest.raises(StaleRoomError):
        pair.log.append(ran.events, lease=Lease(room, "w", 5, 10_000))
    with pytest.raises(StaleRoomError):
        pair.log.fence(room, 5)
    assert pair.log.last_seq(room) == step.state.version


def test_fences_are_per_room(pair: Pair) -> None:
    a = make_room(pair, "a")
    b = make_room(pair, "b")
    pair.log.fence(a.room_id, 9)
    step = engine.start(WF, b, now=2000)
    pair.log.append(step.events, lease=Lease(b.room_id, "w", 1, 10_000))
    assert pair.log.last_seq(b.room_id) == step.state.version


def test_a_roll_forward_never_moves_the_state_back(pair: Pair) -> None:
    """Loading after a newer state was saved (a roll-forward raced by another reader) keeps
    the newer one; two loads of a lagging state store agree."""
    state = make_room(pair)
    lease = pair.take("w1", now=0)
    step = engine.start(WF, state, now=2000)
    pair.log.append(step.events, lease=lease)  # the state store is behind
    ran = engine.decide(WF, step.state, Outcome.ok(), now=3000, duration_ms=1.0)
    pair.log.append(ran.events, lease=lease)
    first, second = pair.load(), pair.load()
    assert first == second == ran.state
    assert pair.states.get(state.room_id) == ran.state


WAITS = Workflow.from_yaml(
    """
id: waits
variables: {n: 0}
nodes:
  ask: {type: wait, prompt: "go on?"}
  count: {type: set, assign: {n: "{{ vars.n + 1 }}"}}
  done: {type: end}
transitions:
  - {from: ask, to: count}
  - {from: count, to: ask, when: "vars.n < 3"}
  - {from: count, to: done}
"""
)


def _lose_the_state_store(pair: Pair, kinds: str, tmp_path: Path) -> Pair:
    """*pair* with its state store replaced by an empty one of the same kind: everything it
    held (states, lease tokens, indexes) is gone; the log is kept."""
    pair.states.close()
    return Pair(make_store(kinds.split("+")[0], tmp_path, "state-after-loss"), pair.log)


@pytest.mark.parametrize("kinds", [p for p in PAIRS if "+" in p])
def test_a_state_store_that_lost_everything_is_rebuilt_from_the_log_and_runs_on(
    kinds: str, tmp_path: Path
) -> None:
    """The log is the truth: a room whose state store was emptied (a Redis that restarted
    without its data) loads from the log and runs on, its runner taking leases until one
    passes the fence the log kept from before."""
    pair = open_pair(kinds, tmp_path)
    rt = Runtime(pair.states, pair.log)
    room = rt.create_room(WAITS)
    rt.run(room.id)
    before = rt.send_input(room.id, {"go": 1})  # a second session: the log's fence is 2
    assert before.status is RoomStatus.WAITING and before.variables["n"] == 1
    lost = _lose_the_state_store(pair, kinds, tmp_path)
    assert lost.states.find(room.id) is None
    after = Runtime(lost.states, lost.log)
    after.register_workflow(WAITS)  # definitions live in the state store: a deployment's again
    try:
        assert after.get_room(room.id) == before  # read from the log, nothing written
        assert lost.states.find(room.id) is None
        assert after.load_room(room.id) == before
        assert lost.states.get(room.id) == before
        state = after.send_input(room.id, {"go": 2})
        state = after.send_input(room.id, {"go": 3})
        assert state.status is RoomStatus.COMPLETED and state.variables["n"] == 3
        assert engine.fold(lost.log.read(room.id)) == state
        assert [e.seq for e in lost.log.read(room.id)] == list(range(1, state.version + 1))
    finally:
        after.close()
        lost.log.close()


@pytest.mark.parametrize("kinds", [p for p in PAIRS if "+" in p])
def test_a_room_the_state_store_never_had_is_run_from_the_log(kinds: str, tmp_path: Path) -> None:
    """Lost before its first lease: the runner rebuilds it when the lease finds no room."""
    pair = open_pair(kinds, tmp_path)
    room = Runtime(pair.states, pair.log).create_room(WAITS)
    lost = _lose_the_state_store(pair, kinds, tmp_path)
    rt = Runtime(lost.states, lost.log)
    rt.register_workflow(WAITS)
    try:
        state = rt.run(room.id)
        assert state.status is RoomStatus.WAITING and state.current_node == "ask"
        assert lost.states.get(room.id) == state
    finally:
        rt.close()
        lost.log.close()


def test_a_room_in_neither_store_is_not_found(pair: Pair) -> None:
    with pytest.raises(RoomNotFoundError):
        pair.load("nowhere")
    with pytest.raises(RoomNotFoundError):
        Runtime(pair.states, pair.log).get_room("nowhere")
