"""One contract for every backend: state store, event log, leases, workflows, atomic commit."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from openrooms import engine
from openrooms.backends import AtomicStore, LeasingStore, StoredWorkflow, open_backend
from openrooms.errors import (
    CorruptRoomError,
    RoomExistsError,
    RoomLeasedError,
    RoomNotFoundError,
    StaleRoomError,
    WorkflowConflictError,
    WorkflowNotFoundError,
)
from openrooms.events import EventType, Level
from openrooms.nodes import Outcome
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId
from openrooms.workflow import WorkflowBuilder
from tests.conftest import BACKENDS, drop_postgres_schema, open_service, postgres_url, redis_url

WF = (
    WorkflowBuilder("contract", variables={"i": 0})
    .set("inc", {"i": "{{ vars.i + 1 }}"})
    .end("done")
    .transition("inc", "inc", when="vars.i < 3")
    .transition("inc", "done")
    .build()
)


def created(room_id: str = "r1", now: int = 1000) -> engine.Step:
    return engine.create_room(WF, RoomId(room_id), now=now, variables={"x": [1, {"y": "z"}]})


def make_room(store: AtomicStore, room_id: str = "r1", now: int = 1000) -> RoomState:
    step = created(room_id, now)
    store.commit(step.state, step.events, expected_version=None)
    return step.state


def test_get_after_create_returns_an_equal_state(store: AtomicStore) -> None:
    state = created().state
    store.create(state)
    assert store.get(state.room_id) == state
    assert store.find(state.room_id) == state


def test_get_of_a_missing_room_raises_and_find_returns_none(store: AtomicStore) -> None:
    with pytest.raises(RoomNotFoundError):
        store.get(RoomId("nope"))
    assert store.find(RoomId("nope")) is None


def test_create_with_a_taken_id_raises(store: AtomicStore) -> None:
    state = created().state
    store.create(state)
    with pytest.raises(RoomExistsError):
        store.create(state)


def test_replace_with_stale_version_raises(store: AtomicStore) -> None:
    """A writer holding an old version cannot overwrite a newer snapshot."""
    state = created().state
    store.create(state)
    store.replace(attrs.evolve(state, version=2), expected_version=1)
    with pytest.raises(StaleRoomError):
        store.replace(attrs.evolve(state, version=3), expected_version=1)
    assert store.get(state.room_id).version == 2


def test_replace_of_a_missing_room_raises_not_found(store: AtomicStore) -> None:
    with pytest.raises(RoomNotFoundError):
        store.replace(created().state, expected_version=1)


def test_commit_appends_events_and_saves_state_together(store: AtomicStore) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    store.commit(step.state, step.events, expected_version=state.version)
    assert store.get(state.room_id) == step.state
    log = store.read(state.room_id)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert log[-len(step.events) :] == list(step.events)
    assert engine.fold(log) == step.state


def test_commit_with_stale_version_writes_nothing(store: AtomicStore) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    store.commit(step.state, step.events, expected_version=state.version)
    again = engine.start(WF, state, now=3000)  # computed from the old state
    with pytest.raises(StaleRoomError):
        store.commit(again.state, again.events, expected_version=state.version)
    assert store.get(state.room_id) == step.state
    assert store.last_seq(state.room_id) == step.state.version


def test_commit_creating_an_existing_room_writes_no_events(store: AtomicStore) -> None:
    state = make_room(store)
    step = created()
    with pytest.raises(RoomExistsError):
        store.commit(step.state, step.events, expected_version=None)
    assert store.last_seq(state.room_id) == 1


def test_append_refuses_a_sequence_gap_or_duplicate(store: AtomicStore) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    with pytest.raises(StaleRoomError):
        store.append(step.events[1:])  # gap
    with pytest.raises(StaleRoomError):
        store.append(created().events)  # seq 1 again
    assert store.last_seq(state.room_id) == 1


def test_read_filters_by_cursor_level_type_and_limit(store: AtomicStore) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    store.commit(step.state, step.events, expected_version=state.version)
    everything = store.read(state.room_id)
    assert [e.seq for e in store.read(state.room_id, after=2)] == [e.seq for e in everything[2:]]
    assert len(store.read(state.room_id, limit=2)) == 2
    started = store.read(state.room_id, types=[EventType.NODE_STARTED])
    assert started and all(e.type is EventType.NODE_STARTED for e in started)
    assert all(
        e.level.rank >= Level.WARN.rank for e in store.read(state.room_id, min_level=Level.WARN)
    )
    assert store.read(RoomId("other")) == []
    assert store.last_seq(RoomId("other")) == 0


def test_events_read_back_equal_and_every_cursor_and_limit_slices_the_log(
    store: AtomicStore,
) -> None:
    """Commits of several events each: any cursor and limit cut the log, not a commit."""
    state = make_room(store)
    committed = list(created().events)
    step = engine.start(WF, state, now=2000)
    store.commit(step.state, step.events, expected_version=state.version)
    committed += step.events
    state = step.state
    failure = Outcome.failed(ValueError("boom"))
    step = engine.decide(WF, state, failure, now=3000, duration_ms=1.5)
    store.commit(step.state, step.events, expected_version=state.version)
    committed += step.events

    everything = store.read(state.room_id)
    assert everything == committed
    assert any(e.error is not None and e.error.message == "boom" for e in everything)
    for after in range(len(committed) + 1):
        for limit in (1, 2, None):
            got = store.read(state.room_id, after=after, limit=limit)
            end = None if limit is None else after + limit
            assert got == committed[after:end], (after, limit)
    assert store.last_seq(state.room_id) == committed[-1].seq
    with pytest.raises(StaleRoomError):
        store.append(committed[1:2])  # a seq inside an earlier commit


def test_list_filters_by_status_and_workflow_newest_first(store: AtomicStore) -> None:
    a = make_room(store, "a", now=1000)
    b = make_room(store, "b", now=2000)
    step = engine.start(WF, b, now=2500)
    store.commit(step.state, step.events, expected_version=b.version)
    assert [s.room_id for s in store.list_rooms()] == ["b", "a"]
    assert [s.room_id for s in store.list_rooms(status=RoomStatus.CREATED)] == [a.room_id]
    assert store.list_rooms(workflow_id="other") == []
    assert len(store.list_rooms(limit=1)) == 1


def test_count_rooms_counts_ids_with_a_prefix(store: AtomicStore) -> None:
    for room_id in ("a", "a.x.1.1", "a.x.1.1.y.1.1", "a-b", "ab", "a/", "b.a.1"):
        make_room(store, room_id)
    assert store.count_rooms("a.") == 2
    assert store.count_rooms("a") == 6
    assert store.count_rooms("b.") == 1
    assert store.count_rooms("zz") == 0
    assert store.count_rooms("") == 7


def test_lease_excludes_other_owners_until_it_expires(store: AtomicStore) -> None:
    state = make_room(store)
    first = store.acquire_lease(state.room_id, "w1", ttl_ms=1000, now=0)
    with pytest.raises(RoomLeasedError):
        store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=500)
    second = store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=1500)
    assert second.token > first.token
    assert store.find_lease(state.room_id) == second


def test_a_lost_lease_cannot_save_or_renew(store: AtomicStore) -> None:
    """Fencing: after another owner takes the lease, the old holder's writes are refused."""
    state = make_room(store)
    old = store.acquire_lease(state.room_id, "w1", ttl_ms=100, now=0)
    store.acquire_lease(state.room_id, "w2", ttl_ms=100, now=200)
    step = engine.start(WF, state, now=300)
    with pytest.raises(StaleRoomError):
        store.commit(step.state, step.events, expected_version=state.version, lease=old)
    with pytest.raises(StaleRoomError):
        store.replace(step.state, expected_version=state.version, lease=old)
    with pytest.raises(StaleRoomError):
        store.renew_lease(old, ttl_ms=100, now=300)
    assert store.get(state.room_id) == state


def test_release_then_reacquire_gives_a_higher_token(store: AtomicStore) -> None:
    state = make_room(store)
    first = store.acquire_lease(state.room_id, "w1", ttl_ms=1000, now=0)
    store.release_lease(first)
    assert store.find_lease(state.room_id) is None
    second = store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=10)
    assert second.token > first.token
    renewed = store.renew_lease(second, ttl_ms=1000, now=500)
    assert renewed.expires_at == 1500


def test_force_takes_an_unexpired_lease(store: AtomicStore) -> None:
    state = make_room(store)
    store.acquire_lease(state.room_id, "w1", ttl_ms=10_000, now=0)
    taken = store.acquire_lease(state.room_id, "w2", ttl_ms=10_000, now=1, force=True)
    assert taken.owner == "w2"


def test_lease_on_a_missing_room_raises(store: AtomicStore) -> None:
    with pytest.raises(RoomNotFoundError):
        store.acquire_lease(RoomId("nope"), "w1", ttl_ms=10, now=0)


def test_workflows_are_versioned_and_conflicts_refused(store: AtomicStore) -> None:
    v1 = StoredWorkflow("wf", 1, "d1", {"id": "wf", "version": 1}, 10)
    assert store.put_workflow(v1) is True
    assert store.put_workflow(v1) is False
    with pytest.raises(WorkflowConflictError):
        store.put_workflow(StoredWorkflow("wf", 1, "other", {"id": "wf"}, 11))
    v2 = StoredWorkflow("wf", 2, "d2", {"id": "wf", "version": 2}, 12)
    store.put_workflow(v2)
    assert store.get_workflow("wf") == v2
    assert store.get_workflow("wf", 1) == v1
    assert [w.version for w in store.list_workflows()] == [2]
    with pytest.raises(WorkflowNotFoundError):
        store.get_workflow("wf", 3)
    with pytest.raises(WorkflowNotFoundError):
        store.get_workflow("missing")


def test_listing_with_on_corrupt_lists_every_sound_room(store: AtomicStore) -> None:
    """Sound rooms never reach *on_corrupt* (test_sqlite_store.py damages rows on purpose)."""
    make_room(store, "a", now=1000)
    make_room(store, "b", now=2000)
    seen: list[CorruptRoomError] = []
    assert [s.room_id for s in store.list_rooms(on_corrupt=seen.append)] == ["b", "a"]
    assert seen == []


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_read_only_opening_sees_what_a_writer_committed(kind: str, tmp_path: Path) -> None:
    urls = {
        "memory": "memory://contract-read-only",
        "sqlite": f"sqlite:///{tmp_path}/ro.db",
        "postgres": postgres_url() if kind == "postgres" else "",
        "redis": redis_url() if kind == "redis" else "",
    }
    url = urls[kind]
    writer = open_service(url)
    state = make_room(writer)
    writer.put_workflow(StoredWorkflow("wf", 1, "d1", {"id": "wf", "version": 1}, 10))
    step = engine.start(WF, state, now=2000)
    reader = open_backend(url, read_only=True)
    try:
        assert reader.get(state.room_id) == state
        writer.commit(step.state, step.events, expected_version=state.version)
        assert reader.get(state.room_id) == step.state  # a later commit is seen, too
        assert reader.read(state.room_id) == writer.read(state.room_id)
        assert reader.list_rooms() == [step.state]
        assert reader.get_workflow("wf") == writer.get_workflow("wf")
    finally:
        reader.close()
        writer.close()
        if kind == "postgres":
            drop_postgres_schema(url)


def saved(store: AtomicStore, state: RoomState, **changes: object) -> RoomState:
    """*state* with *changes*, saved over the stored one (a new version)."""
    new = attrs.evolve(state, version=state.version + 1, **changes)  # type: ignore[arg-type]
    store.replace(new, expected_version=state.version)
    return new


def test_due_rooms_are_passed_timers_and_queued_rooms_earliest_first(store: AtomicStore) -> None:
    running, waiting = RoomStatus.RUNNING, RoomStatus.WAITING
    saved(store, make_room(store, "retry"), status=running, wake_at=5000)
    saved(store, make_room(store, "timeout"), status=waiting, wake_at=3000)
    saved(store, make_room(store, "later"), status=running, wake_at=9000)
    saved(store, make_room(store, "queued"), status=RoomStatus.QUEUED, updated_at=4000)
    saved(store, make_room(store, "no-timer"), status=waiting, wake_at=None)
    saved(store, make_room(store, "running"), status=running, wake_at=None)
    saved(store, make_room(store, "done"), status=RoomStatus.COMPLETED, wake_at=None)
    make_room(store, "created")
    assert store.next_wake_at() == 3000
    assert store.due_rooms(2999) == []
    assert store.due_rooms(3000) == ["timeout"]
    assert store.due_rooms(5000) == ["timeout", "queued", "retry"]
    assert store.due_rooms(10**13, limit=2) == ["timeout", "queued"]
    assert store.due_rooms(10**13) == ["timeout", "queued", "retry", "later"]


def test_a_room_saved_without_a_timer_is_no_longer_due(store: AtomicStore) -> None:
    state = saved(store, make_room(store), status=RoomStatus.WAITING, wake_at=2000)
    assert store.due_rooms(2000) == ["r1"]
    store.replace(engine.cancel(state, now=2500).state, expected_version=state.version)
    assert store.due_rooms(3000) == []
    assert store.next_wake_at() is None


def test_a_created_queued_room_is_due_at_once(store: AtomicStore) -> None:
    state = created("q", now=1000).state
    queued = engine.queue(state, now=1200)
    store.create(queued.state)
    assert store.due_rooms(1200) == ["q"]
    assert store.next_wake_at() == 1200


def test_a_leased_room_is_due_only_once_its_lease_is_released_or_expired(
    store: AtomicStore,
) -> None:
    saved(store, make_room(store, "a"), status=RoomStatus.RUNNING, wake_at=1000)
    saved(store, make_room(store, "b"), status=RoomStatus.RUNNING, wake_at=2000)
    lease = store.acquire_lease(RoomId("a"), "w1", ttl_ms=5000, now=0)
    assert store.due_rooms(2000) == ["b"]
    assert store.next_wake_at() == 2000
    assert store.due_rooms(5000) == ["a", "b"]  # the lease expired
    lease = store.renew_lease(lease, ttl_ms=5000, now=4000)
    assert store.due_rooms(5000) == ["b"]
    store.acquire_lease(RoomId("b"), "w1", ttl_ms=8000, now=0)
    assert store.next_wake_at() == 8000  # a's lease expires at 9000, b's at 8000
    store.release_lease(lease)
    assert store.due_rooms(5000) == ["a"]
    assert store.next_wake_at() == 1000


# LeasingStore: a lease taken and let go in a commit's own transaction


def test_acquire_and_commit_takes_the_lease_and_commits_under_it(store: LeasingStore) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    lease = store.acquire_and_commit(
        step.state, step.events, expected_version=state.version, owner="w1", ttl_ms=1000, now=2000
    )
    assert (lease.owner, lease.expires_at) == ("w1", 3000)
    assert store.find_lease(state.room_id) == lease
    assert store.get(state.room_id) == step.state
    assert [e.seq for e in store.read(state.room_id)] == list(range(1, step.state.version + 1))
    with pytest.raises(RoomLeasedError):
        store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=2500)


def test_acquire_and_commit_refused_leaves_no_trace(store: LeasingStore) -> None:
    """Refused for another owner's live lease, or a stale version: nothing is saved, no
    lease is taken, no token is used up."""
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    held = store.acquire_lease(state.room_id, "w1", ttl_ms=1000, now=1500)
    with pytest.raises(RoomLeasedError):
        store.acquire_and_commit(
            step.state, step.events, expected_version=state.version, owner="w2", ttl_ms=9, now=2000
        )
    assert store.find_lease(state.room_id) == held
    store.release_lease(held)
    with pytest.raises(StaleRoomError):
        store.acquire_and_commit(
            step.state, step.events, expected_version=state.version + 1, owner="w2", ttl_ms=9, now=1
        )
    assert store.find_lease(state.room_id) is None
    assert store.get(state.room_id) == state
    assert store.last_seq(state.room_id) == state.version
    assert store.acquire_lease(state.room_id, "w3", ttl_ms=9, now=2).token == held.token + 1


def test_acquire_and_commit_with_release_leaves_the_room_free_and_fenced(
    store: LeasingStore,
) -> None:
    state = make_room(store)
    step = engine.start(WF, state, now=2000)
    lease = store.acquire_and_commit(
        step.state,
        step.events,
        expected_version=state.version,
        owner="w1",
        ttl_ms=1000,
        now=2000,
        release=True,
    )
    assert store.find_lease(state.room_id) is None
    assert store.get(state.room_id) == step.state
    later = store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=2001)
    assert later.token == lease.token + 1
    again = engine.fail(step.state, now=2002, reason="x")
    with pytest.raises(StaleRoomError):  # the released lease writes no more
        store.commit(again.state, again.events, expected_version=step.state.version, lease=lease)


def test_commit_and_release_commits_then_lets_the_lease_go(store: LeasingStore) -> None:
    state = make_room(store)
    old = store.acquire_lease(state.room_id, "w1", ttl_ms=1000, now=0)
    step = engine.start(WF, state, now=10)
    taken = store.acquire_lease(state.room_id, "w2", ttl_ms=1000, now=5, force=True)
    with pytest.raises(StaleRoomError):  # a lost lease neither commits nor releases
        store.commit_and_release(step.state, step.events, expected_version=state.version, lease=old)
    assert store.find_lease(state.room_id) == taken
    assert store.get(state.room_id) == state
    store.commit_and_release(step.state, step.events, expected_version=state.version, lease=taken)
    assert store.find_lease(state.room_id) is None
    assert store.get(state.room_id) == step.state
    assert store.last_seq(state.room_id) == step.state.version
