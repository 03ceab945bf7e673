"""The recovery cap: a room whose runners keep dying fails instead of taking down the next.

A "dead runner" here is a lease taken and never released by an owner on another host (so
no runner may take it over early), on a room left mid-node. The subprocess version, with
a tool that kills its own process, is in tests/e2e/test_rq_workers.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openrooms import EventType, RoomStatus, Runtime, WorkflowBuilder, engine
from openrooms.backends import AtomicStore, MemoryJobQueue, MemoryStore
from openrooms.config import RuntimeConfig, WorkerSettings, worker_settings
from openrooms.errors import SchemaValidationError
from openrooms.runner import MAX_RECOVERIES_REASON
from openrooms.sweeper import sweep
from openrooms.types import RoomId
from tests.conftest import BACKENDS, make_store

WF = (
    WorkflowBuilder("crashy")
    .tool("call", "calculator", {"expression": "1 + 1"})
    .end("done")
    .transition("call", "done")
    .build()
)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def runtime(store: AtomicStore, clock: Clock, cap: int) -> Runtime:
    return Runtime(store, store, clock=clock, lease_ttl_ms=1000, max_recoveries=cap)


def crash(store: AtomicStore, room: str, clock: Clock, times: int) -> None:
    """*times* runners on another host each take the room and die holding its lease."""
    for i in range(times):
        clock.ms += 5000  # the last one's lease has expired
        store.acquire_lease(RoomId(room), f"elsewhere:{i}:dead", ttl_ms=1000, now=clock.ms)
    clock.ms += 5000


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_room_taken_over_more_often_than_the_cap_fails_saying_why(
    kind: str, tmp_path: Path
) -> None:
    store = make_store(kind, tmp_path)
    clock = Clock()
    rt = runtime(store, clock, cap=2)
    room = rt.create_room(WF, room_id="poison").room_id
    state = rt.get_room(room)
    step = engine.start(WF, state, now=clock.ms)
    store.commit(step.state, step.events, expected_version=state.version)
    crash(store, room, clock, times=3)  # the third takeover is the fourth runner's
    done = rt.run(room)
    assert done.status is RoomStatus.FAILED
    assert done.reason == MAX_RECOVERIES_REASON == "max recovery attempts exceeded"
    failed = rt.events(room, types=[EventType.ROOM_FAILED])
    assert len(failed) == 1
    assert failed[0].data["recoveries"] == 3
    assert failed[0].data["max_recoveries"] == 2
    assert rt.events(room, types=[EventType.TOOL_CALLED]) == []  # the node never ran again
    assert store.find_lease(room) is None  # let go: nothing left to recover
    assert rt.replay(room) == done
    store.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_room_at_the_cap_still_runs_and_its_clean_end_resets_the_count(
    kind: str, tmp_path: Path
) -> None:
    store = make_store(kind, tmp_path)
    clock = Clock()
    rt = runtime(store, clock, cap=2)
    room = rt.create_room(WF, room_id="survivor").room_id
    state = rt.get_room(room)
    step = engine.start(WF, state, now=clock.ms)
    store.commit(step.state, step.events, expected_version=state.version)
    crash(store, room, clock, times=2)
    done = rt.run(room)
    assert done.status is RoomStatus.COMPLETED
    resumed = rt.events(room, types=[EventType.ROOM_RESUMED])
    assert len(resumed) == 1 and resumed[0].data["previous_lease"] == "expired"
    store.close()


def test_worker_settings_come_from_overrides_then_environment_then_config() -> None:
    config = RuntimeConfig.from_dict(
        {"workers": {"lease_ttl_s": 12, "sweep_every_s": 4, "max_recoveries": 5}}
    )
    assert config.workers == WorkerSettings(lease_ttl_s=12, sweep_every_s=4, max_recoveries=5)
    env = {"OPENROOMS_LEASE_TTL_S": "6", "OPENROOMS_MAX_RECOVERIES": "1"}
    settings = worker_settings(config, env, sweep_every_s=0.5)
    assert settings == WorkerSettings(
        lease_ttl_s=6, renew_every_s=None, sweep_every_s=0.5, max_recoveries=1
    )
    assert (settings.lease_ttl_ms, settings.renew_every_ms) == (6000, 2000)
    assert worker_settings().lease_ttl_ms == 30_000


@pytest.mark.parametrize(
    ("env", "overrides", "where"),
    [
        ({"OPENROOMS_MAX_RECOVERIES": "lots"}, {}, "OPENROOMS_MAX_RECOVERIES"),
        ({"OPENROOMS_LEASE_TTL_S": "-1"}, {}, "OPENROOMS_LEASE_TTL_S"),
        ({}, {"lease_ttl_s": 2, "renew_every_s": 3}, "renew_every_s"),
    ],
)
def test_bad_worker_settings_are_refused_naming_where(
    env: dict[str, str], overrides: dict[str, float], where: str
) -> None:
    with pytest.raises(SchemaValidationError) as caught:
        worker_settings(None, env, **overrides)
    assert [p.path for p in caught.value.problems] == [where]


def test_a_bad_workers_section_names_the_setting() -> None:
    with pytest.raises(SchemaValidationError) as caught:
        RuntimeConfig.from_dict({"workers": {"lease_ttl": 3, "sweep_every_s": "soon"}})
    assert sorted(p.path for p in caught.value.problems) == [
        "workers.lease_ttl",
        "workers.sweep_every_s",
    ]


class AheadStore(MemoryStore):
    """A store whose clock runs *ahead_ms* ahead of this machine's."""

    def __init__(self, ahead_ms: int) -> None:
        super().__init__()
        self.ahead_ms = ahead_ms

    def clock_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.ahead_ms


def test_a_runtime_tells_time_by_its_store_clock() -> None:
    store = AheadStore(3_600_000)
    rt = Runtime(store, store)
    assert 3_599_000 <= rt.clock_offset_ms <= 3_601_000
    assert abs(rt.now() - store.clock_ms()) < 1000
    room = rt.create_room(WF)
    assert abs(room.created_at - store.clock_ms()) < 1000  # events, leases: the store's time
    store.ahead_ms = 2  # within the measurement's noise: no offset
    assert rt.sync_clock() == 0
    fixed = Runtime(store, store, clock=lambda: 5)  # a clock given is used as it is
    assert fixed.now() == 5 and fixed.sync_clock() == 0


def test_the_sweeper_judges_expiry_by_the_store_clock() -> None:
    store = AheadStore(3_600_000)  # an hour ahead of this worker
    rt = Runtime(store, store)
    room = rt.create_room(WF).room_id
    state = rt.get_room(room)
    step = engine.start(WF, state, now=rt.now())
    store.commit(step.state, step.events, expected_version=state.version)
    local = time.time_ns() // 1_000_000
    store.acquire_lease(room, "elsewhere:1:x", ttl_ms=600_000, now=local)  # 10 min, local time
    found = sweep(store, MemoryJobQueue())
    assert [(f.room_id, f.why) for f in found] == [(room, "lease expired")]


def test_the_connect_timeout_may_be_zero_but_not_negative() -> None:
    assert worker_settings(None, {"OPENROOMS_CONNECT_TIMEOUT_S": "0"}).connect_timeout_s == 0
    config = RuntimeConfig.from_dict({"workers": {"connect_timeout_s": 5}})
    assert config.workers.connect_timeout_s == 5
    with pytest.raises(SchemaValidationError, match=r"OPENROOMS_CONNECT_TIMEOUT_S.*from 0 to"):
        worker_settings(None, {"OPENROOMS_CONNECT_TIMEOUT_S": "-1"})
    with pytest.raises(SchemaValidationError, match=r"lease_ttl_s.*from 0\.001 to"):
        worker_settings(None, {}, lease_ttl_s=0)
