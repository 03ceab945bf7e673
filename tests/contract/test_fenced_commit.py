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
from openrooms.errors import RoomExistsError, StaleRoomError
from openrooms.events import Event
from openrooms.nodes import Outcome
from openrooms.room import RoomState
from openrooms.runner import commit
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import WorkflowBuilder
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
    "memory+sqlite",
    "sqlite+memory",
    "sqlite+sqlite",
    "sqlite+postgres",
    "postgres+memory",
    "postgres+postgres",
]
"""State store + event log: one store for both, or two ("state+log")."""


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


@pytest.fixture(params=PAIRS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Pair]:
    kinds = request.param.split("+")
    states = make_store(kinds[0], tmp_path, "state")  # postgres: a schema of its own
    log = states if len(kinds) == 1 else make_store(kinds[1], tmp_path, "log")
    yield Pair(states, log)
    discard_store(states)
    if log is not states:
        discard_store(log)


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
