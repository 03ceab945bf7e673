"""What only the Redis store has: its URL, key prefix, clock, errors, and losing keys.

The protocol contracts run over it in tests/contract (``redis`` in BACKENDS and PAIRS).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrooms import engine
from openrooms.backends import Lease, RedisStore, SQLiteStore, StoredWorkflow, open_backend
from openrooms.errors import (
    BackendConfigError,
    BackendError,
    BackendUnavailableError,
    CorruptRoomError,
    StaleRoomError,
    UnstorableValueError,
)
from openrooms.events import Event, EventType, Level
from openrooms.room import RoomStatus
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from openrooms.workflow import Workflow
from tests.conftest import REDIS_URL, open_service, redis_url

WF = Workflow.from_yaml(
    """
id: counts
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


@pytest.fixture
def store() -> Iterator[RedisStore]:
    s = open_service(redis_url())
    assert isinstance(s, RedisStore)
    yield s
    s.close()


def client(store: RedisStore) -> Any:
    return store._client


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/15?prefix=a%20b", "prefix 'a b' is not a key prefix"),
        ("redis://127.0.0.1:6379/15?prefix=*", "prefix '*' is not a key prefix"),
        ("redis://127.0.0.1:6379/15?prefix=", "prefix '' is not a key prefix"),
        ("redis://127.0.0.1:6379/15?colour=red", "unknown option 'colour'; known: client_name"),
        ("redis://127.0.0.1:6379/fifteen", "must be a database number (e.g. /0), not 'fifteen'"),
        ("redis://127.0.0.1:99999/0", "not a valid Redis URL"),
        ("redis:///0", "no host"),
        ("redis://127.0.0.1/0?socket_timeout=soon", "socket_timeout='soon' must be a float"),
    ],
)
def test_a_bad_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(BackendConfigError) as caught:
        open_backend(url)
    assert says in str(caught.value)


def test_a_bad_url_never_shows_its_password() -> None:
    with pytest.raises(BackendConfigError) as caught:
        open_backend("redis://user:hunter2@127.0.0.1:6379/0?colour=red")
    assert "hunter2" not in str(caught.value)
    assert "unknown option 'colour'" in str(caught.value)


def test_an_unreachable_server_is_unavailable_naming_host_and_port_not_the_password() -> None:
    # port 1 on loopback: nothing listens there, so the connection is refused at once
    with pytest.raises(BackendUnavailableError) as caught:
        open_backend("redis://user:hunter2@127.0.0.1:1/0?socket_connect_timeout=2")
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(caught.value.args)


def test_settings_the_server_refuses_are_config_errors_without_the_password() -> None:
    base = REDIS_URL.split("?", 1)[0].rsplit("/", 1)[0]  # redis://host:port
    with pytest.raises(BackendConfigError, match="DB index is out of range"):
        open_service(f"{base}/99999")
    login = base.replace("redis://", "redis://nobody-here:s3cr%40t@")
    with pytest.raises(BackendConfigError, match="refused the login") as caught:
        open_service(f"{login}/15")
    assert "s3cr" not in str(caught.value)


def test_every_key_is_under_the_prefix_and_prefixes_are_separate(tmp_path: Path) -> None:
    one = open_service(redis_url())
    other = open_service(redis_url())
    assert isinstance(one, RedisStore) and isinstance(other, RedisStore)
    try:
        rt = Runtime(one, one)
        room = rt.create_room(WF)
        rt.run(room.id)
        keys = {k.decode() for k in client(one).scan_iter(match=f"{one.prefix}*")}
        assert keys >= {
            f"{one.prefix}room:{room.id}",
            f"{one.prefix}log:{room.id}",
            f"{one.prefix}lease:{room.id}",
            f"{one.prefix}rooms",
            f"{one.prefix}ids",
            f"{one.prefix}wf:counts",
            f"{one.prefix}workflows",
        }
        assert other.find(room.id) is None
        assert other.list_rooms() == [] and other.count_rooms("") == 0
        assert other.read(room.id) == []
    finally:
        one.close()
        other.close()


def test_the_clock_is_the_server_s(store: RedisStore) -> None:
    assert abs(store.clock_ms() - time.time() * 1000) < 5000


def test_a_read_only_opening_reads_and_refuses_writes(store: RedisStore) -> None:
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    reader = open_backend(redis_url(store.prefix), read_only=True)
    try:
        assert reader.get(RoomId("r1")) == step.state
        with pytest.raises(BackendError, match="opened read-only"):
            reader.acquire_lease(RoomId("r1"), "w", ttl_ms=10, now=0)
        with pytest.raises(BackendError, match="opened read-only"):
            reader.replace(step.state, expected_version=1)
    finally:
        reader.close()


def test_recoveries_count_takeovers_of_expired_unreleased_leases(store: RedisStore) -> None:
    """+1 when the lease taken over was never released (it expired, or is taken by force);
    0 after a release or on a first lease (as tests/contract/test_recovery_contract.py)."""
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    room = RoomId("r1")
    first = store.acquire_lease(room, "w1", ttl_ms=100, now=0)
    assert first.recoveries == 0
    second = store.acquire_lease(room, "w2", ttl_ms=100, now=200)  # w1 crashed
    assert second.recoveries == 1
    third = store.acquire_lease(room, "w3", ttl_ms=100, now=400)  # and w2 too
    assert third.recoveries == 2
    assert store.find_lease(room) == third
    assert store.renew_lease(third, ttl_ms=100, now=450).recoveries == 2
    store.release_lease(third)
    assert store.acquire_lease(room, "w4", ttl_ms=100, now=600).recoveries == 0
    assert store.acquire_lease(room, "w5", ttl_ms=100, now=650, force=True).recoveries == 1
    taken = store.acquire_and_commit(
        engine.start(WF, step.state, now=2000).state,
        engine.start(WF, step.state, now=2000).events,
        expected_version=step.state.version,
        owner="w6",
        ttl_ms=100,
        now=1000,
    )
    assert taken.recoveries == 2 and store.find_lease(room) == taken


def test_a_stored_state_or_event_that_does_not_decode_names_its_key(store: RedisStore) -> None:
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    client(store).hset(f"{store.prefix}room:r1", "memory", b"{not json")
    with pytest.raises(CorruptRoomError) as caught:
        store.get(RoomId("r1"))
    assert f"key '{store.prefix}room:r1'" in str(caught.value)
    assert "field memory" in str(caught.value)
    seen: list[CorruptRoomError] = []
    assert store.list_rooms(on_corrupt=seen.append) == [] and len(seen) == 1
    client(store).xadd(f"{store.prefix}log:r1", {"e": b"[2]"}, id="0-2")
    with pytest.raises(CorruptRoomError) as caught:
        store.read(RoomId("r1"))
    assert f"key '{store.prefix}log:r1', entry 0-2" in str(caught.value)


def test_a_lone_surrogate_is_unstorable_and_nothing_is_written(store: RedisStore) -> None:
    step = engine.create_room(WF, RoomId("r1"), now=1000, variables={"n": 0, "x": "\udc80"})
    with pytest.raises(UnstorableValueError):
        store.commit(step.state, step.events, expected_version=None)
    assert store.find(RoomId("r1")) is None and store.last_seq(RoomId("r1")) == 0


def test_a_redis_state_that_lost_a_room_s_keys_or_went_back_is_rebuilt_from_a_sqlite_log(
    store: RedisStore, tmp_path: Path
) -> None:
    """The issue's split: Redis state, the log elsewhere (SQLite here) as the truth."""
    log = SQLiteStore(tmp_path / "log.db")
    rt = Runtime(store, log)
    try:
        room = rt.create_room(WF)
        first = rt.run(room.id)
        key = f"{store.prefix}room:{room.id}"
        snapshot = client(store).hgetall(key)  # the state as of the first wait
        second = rt.send_input(room.id, {"go": 1})
        assert second.version > first.version

        client(store).delete(key, f"{store.prefix}rooms")  # the state and the listing gone
        assert store.find(room.id) is None
        assert rt.load_room(room.id) == second
        assert store.get(room.id) == second

        client(store).delete(key)
        client(store).hset(key, mapping=snapshot)  # rolled back to the first wait
        assert store.get(room.id) == first
        assert rt.load_room(room.id) == second
        assert store.get(room.id) == second

        client(store).delete(key)
        state = rt.send_input(room.id, {"go": 2})  # the runner loads it too, and runs on
        state = rt.send_input(room.id, {"go": 3})
        assert state.status is RoomStatus.COMPLETED and state.variables["n"] == 3
        assert engine.fold(log.read(room.id)) == state == store.get(room.id)
    finally:
        rt.close()


def test_a_fenced_append_checks_the_lease_tokens_this_store_gave(store: RedisStore) -> None:
    """Where Redis holds both the leases and the log, an older lease's append is refused
    even before anyone raised the fence."""
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    old = store.acquire_lease(RoomId("r1"), "w1", ttl_ms=100, now=0)
    store.acquire_lease(RoomId("r1"), "w2", ttl_ms=100, now=200)
    started = engine.start(WF, step.state, now=300)
    with pytest.raises(StaleRoomError):
        store.append(started.events, lease=old)
    store.append(started.events, lease=Lease(RoomId("r1"), "w2", old.token + 1, 10_000))
    assert store.last_seq(RoomId("r1")) == started.state.version


def test_check_finds_a_wrong_due_index_a_log_without_a_room_and_a_gap(
    store: RedisStore,
) -> None:
    rt = Runtime(store, store)
    room = rt.create_room(WF)
    rt.run(room.id)
    assert store.check() == []
    client(store).zadd(f"{store.prefix}due", {room.id: 5})
    client(store).xadd(f"{store.prefix}log:ghost", {"e": b"[1]"}, id="0-3")
    client(store).hset(f"{store.prefix}wf:counts", "b:1", b"[]")
    problems = store.check()
    assert any("the due index says 5, its state says None" in p for p in problems), problems
    assert any("log:ghost'" in p and "room key" in p for p in problems), problems
    assert any("field b:1" in p for p in problems), problems
    assert not any("room key" in p for p in store.check(split=True))


def test_a_forked_child_uses_its_own_connection_and_the_parent_s_stays_sound(
    store: RedisStore,
) -> None:
    """An RQ work horse is a fork: a store opened before it must not share its socket."""
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    with warnings.catch_warnings():  # 3.12+ warns of fork in a threaded process: RQ does it
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: read and write through the store, then leave at once
        code = 1
        try:
            for _ in range(2000):
                assert store.get(RoomId("r1")) == step.state
            store.put_workflow(StoredWorkflow("child", 1, "d", {"id": "child"}, 1))
            code = 0
        finally:
            os._exit(code)
    try:
        for _ in range(2000):  # the parent, at the same time, on its own connection
            assert store.get(RoomId("r1")) == step.state
    finally:  # the child is done before the keys are dropped
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get_workflow("child").definition == {"id": "child"}
    started = engine.start(WF, step.state, now=2000)
    store.commit(started.state, started.events, expected_version=step.state.version)
    assert store.get(RoomId("r1")) == started.state


def test_a_filtered_read_pages_through_a_long_log(store: RedisStore) -> None:
    """More events than one page (256): a filter with a limit reads on until it has enough,
    and a filter without one reads to the end."""
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    state = step.state
    extra = [
        Event(
            room_id=RoomId("r1"),
            seq=state.version + i,
            type=EventType.NODE_STARTED if i % 100 else EventType.NODE_FAILED,
            level=Level.INFO if i % 100 else Level.ERROR,
            timestamp=2000 + i,
            node="count",
            data={"i": i},
        )
        for i in range(1, 701)
    ]
    store.append(extra)
    failed = store.read(RoomId("r1"), types=[EventType.NODE_FAILED])
    assert [e.data["i"] for e in failed] == [100, 200, 300, 400, 500, 600, 700]
    assert [e.data["i"] for e in store.read(RoomId("r1"), min_level=Level.ERROR, limit=2)] == [
        100,
        200,
    ]
    tail = store.read(RoomId("r1"), after=650, types=[EventType.NODE_STARTED])
    assert [e.seq for e in tail] == [e.seq for e in extra if e.seq > 650 and e.data["i"] % 100]
    assert store.read(RoomId("r1"), after=300, limit=3) == extra[299:302]
