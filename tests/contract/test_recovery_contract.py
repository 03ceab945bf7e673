"""The contract of crash recovery every store keeps: a lease's recovery count, the rooms
whose lease expired unreleased (``expired_rooms``) and the store's clock (``clock_ms``).

See :mod:`openrooms.backends.base` for the semantics these tests pin down.
"""

from __future__ import annotations

import time

import attrs

from openrooms import engine
from openrooms.backends import AtomicStore, LeasingStore
from openrooms.backends.base import expired_rooms, store_clock_ms
from openrooms.room import RoomState, RoomStatus
from openrooms.types import RoomId
from tests.contract.test_store_contract import WF, make_room


def started(store: AtomicStore, room_id: str) -> RoomState:
    """A room that has started (status ``running``, at its first node, no timer)."""
    state = make_room(store, room_id)
    step = engine.start(WF, state, now=1100)
    store.commit(step.state, step.events, expected_version=state.version)
    return step.state


def test_a_first_lease_and_one_after_a_release_count_no_recovery(store: AtomicStore) -> None:
    room = started(store, "r").room_id
    first = store.acquire_lease(room, "w1", ttl_ms=100, now=0)
    assert first.recoveries == 0
    store.release_lease(first)
    again = store.acquire_lease(room, "w2", ttl_ms=100, now=500)  # long after: released
    assert again.recoveries == 0


def test_each_takeover_of_an_expired_unreleased_lease_counts_one_more(store: AtomicStore) -> None:
    room = started(store, "r").room_id
    lease = store.acquire_lease(room, "w1", ttl_ms=100, now=0)
    for n in range(1, 4):
        lease = store.acquire_lease(room, f"w{n + 1}", ttl_ms=100, now=n * 1000)
        assert lease.recoveries == n
        assert store.find_lease(room) == lease
    renewed = store.renew_lease(lease, ttl_ms=100, now=3050)
    assert (renewed.recoveries, renewed.expires_at) == (3, 3150)
    store.release_lease(renewed)  # a runner that let go: the count starts again
    assert store.acquire_lease(room, "w9", ttl_ms=100, now=9000).recoveries == 0


def test_a_forced_takeover_of_an_unreleased_lease_counts_a_recovery(store: AtomicStore) -> None:
    room = started(store, "r").room_id
    store.acquire_lease(room, "w1", ttl_ms=10_000, now=0)
    taken = store.acquire_lease(room, "w2", ttl_ms=10_000, now=1, force=True)
    assert taken.recoveries == 1


def test_acquire_and_commit_counts_recoveries_as_acquire_lease(store: LeasingStore) -> None:
    state = make_room(store, "r")
    store.acquire_lease(state.room_id, "dead", ttl_ms=100, now=0)
    step = engine.start(WF, state, now=2000)
    lease = store.acquire_and_commit(
        step.state, step.events, expected_version=state.version, owner="w", ttl_ms=100, now=2000
    )
    assert lease.recoveries == 1
    assert store.find_lease(state.room_id) == lease


def test_expired_rooms_are_running_or_queued_rooms_whose_lease_ran_out_unreleased(
    store: AtomicStore,
) -> None:
    crashed = started(store, "crashed").room_id
    later = started(store, "later").room_id
    released = started(store, "released").room_id
    live = started(store, "live").room_id
    started(store, "never-leased")
    queued = make_room(store, "queued")
    store.replace(engine.queue(queued, now=1200).state, expected_version=queued.version)
    waiting = started(store, "waiting")
    store.replace(
        attrs.evolve(waiting, status=RoomStatus.WAITING, version=waiting.version + 1),
        expected_version=waiting.version,
    )
    store.acquire_lease(crashed, "w1", ttl_ms=100, now=0)  # expires at 100
    store.acquire_lease(later, "w1", ttl_ms=300, now=0)  # 300
    store.acquire_lease(RoomId("queued"), "w1", ttl_ms=200, now=0)  # 200
    store.acquire_lease(RoomId("waiting"), "w1", ttl_ms=100, now=0)  # a waiting room: no
    store.release_lease(store.acquire_lease(released, "w1", ttl_ms=100, now=0))
    store.acquire_lease(live, "w1", ttl_ms=10_000, now=0)
    assert expired_rooms(store, 99) == []
    assert expired_rooms(store, 100) == ["crashed"]
    assert expired_rooms(store, 1000) == ["crashed", "queued", "later"]
    assert expired_rooms(store, 1000, limit=2) == ["crashed", "queued"]
    # taken over: no longer expired until the new lease runs out unreleased too
    taken = store.acquire_lease(crashed, "w2", ttl_ms=100, now=1000)
    assert expired_rooms(store, 1050) == ["queued", "later"]
    assert expired_rooms(store, 1100) == ["queued", "later", "crashed"]  # by expiry
    store.release_lease(taken)
    assert expired_rooms(store, 10**12) == ["queued", "later", "live"]


def test_a_finished_room_is_never_expired(store: AtomicStore) -> None:
    state = started(store, "r")
    store.acquire_lease(state.room_id, "w1", ttl_ms=100, now=0)
    ended = engine.cancel(state, now=50)
    store.replace(ended.state, expected_version=state.version)
    assert expired_rooms(store, 10_000) == []


def test_the_store_clock_is_milliseconds_since_the_epoch(store: AtomicStore) -> None:
    before = time.time_ns() // 1_000_000
    at = store_clock_ms(store)
    after = time.time_ns() // 1_000_000
    assert at is not None
    # a store on another machine may differ by its clock's offset; these share this one's
    assert before - 1000 <= at <= after + 1000
