"""The room queries a dashboard makes, on every store: keyset pages (``before``), search by
id or workflow prefix (``query``) and counts by status (``status_counts``).

The state store alone answers them, so a split runtime (state in one store, log in
another) lists as its state store does: these run over each store as the ``store`` fixture
opens it (tests/conftest.py), and through a :class:`Runtime` at the end.
"""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import pytest

from openrooms import engine
from openrooms.backends import AtomicStore
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime
from openrooms.types import RoomId
from tests.conftest import discard_store
from tests.contract.test_fenced_commit import PAIRS, open_pair
from tests.contract.test_store_contract import WF


def put(
    store: AtomicStore,
    room_id: str,
    created_at: int,
    *,
    workflow_id: str = "contract",
    status: RoomStatus = RoomStatus.CREATED,
) -> RoomState:
    """Store a room created at *created_at* with that workflow id and status (the store
    takes the state as it is: these tests are about listing, not running)."""
    state = engine.create_room(WF, RoomId(room_id), now=created_at).state
    state = attrs.evolve(state, workflow_id=workflow_id, status=status)
    store.create(state)
    return state


def ids(rooms: list[RoomState]) -> list[str]:
    return [s.room_id for s in rooms]


def walk(store: AtomicStore, size: int, **filters: object) -> list[str]:
    """Every room the filters select, read in pages of *size*, each from the last room of
    the page before."""
    seen: list[str] = []
    before = None
    while len(seen) <= 1000:  # a cursor that does not move on fails, not hangs
        page = store.list_rooms(limit=size, before=before, **filters)  # type: ignore[arg-type]
        assert len(page) <= size
        seen += ids(page)
        if len(page) < size:
            return seen
        before = (page[-1].created_at, page[-1].room_id)
    raise AssertionError(f"the walk did not end: {seen[:20]}...")


def test_before_lists_rooms_strictly_older_ties_broken_by_id(store: AtomicStore) -> None:
    for room_id, at in (("a", 1000), ("b", 1000), ("c", 1000), ("d", 2000), ("e", 500)):
        put(store, room_id, at)
    assert ids(store.list_rooms()) == ["d", "c", "b", "a", "e"]
    assert ids(store.list_rooms(before=(1000, "b"))) == ["a", "e"]
    assert ids(store.list_rooms(before=(1000, "bb"))) == ["b", "a", "e"]  # not a room: fine
    assert ids(store.list_rooms(before=(2000, "a"))) == ["c", "b", "a", "e"]
    assert ids(store.list_rooms(before=(2000, "d"))) == ["c", "b", "a", "e"]
    assert ids(store.list_rooms(before=(1000, ""))) == ["e"]
    assert ids(store.list_rooms(before=(1000, "c"), limit=1)) == ["b"]
    assert ids(store.list_rooms(before=(3000, ""))) == ["d", "c", "b", "a", "e"]
    assert store.list_rooms(before=(500, "e")) == []
    assert store.list_rooms(before=(0, "zzz")) == []


def test_ties_on_created_at_order_by_code_point_on_every_store(store: AtomicStore) -> None:
    """Ids compare as code points (UTF-8 bytes), not by a locale: ``é`` sorts after ``z``
    and ``Z`` before ``a``."""
    for room_id in ("a", "Z", "z", "é", "\U0010ffff", "a.1"):
        put(store, room_id, 1000)
    order = ["\U0010ffff", "é", "z", "a.1", "a", "Z"]
    assert ids(store.list_rooms()) == order
    assert ids(store.list_rooms(before=(1000, "é"))) == order[2:]
    assert walk(store, 1) == order


def test_pages_walk_every_room_exactly_once(store: AtomicStore) -> None:
    """60 rooms, created in 12 distinct ms (so most pages end inside a tie), walked in
    pages of every size from 1 to 13, unfiltered and filtered."""
    rng = random.Random(7)
    statuses = [RoomStatus.CREATED, RoomStatus.RUNNING, RoomStatus.FAILED]
    made = []
    for i in range(60):
        made.append(
            put(
                store,
                f"r{rng.randrange(10**6):06d}-{i}",
                1000 + rng.randrange(12),
                workflow_id=rng.choice(["alpha", "beta"]),
                status=rng.choice(statuses),
            )
        )
    newest_first = sorted(made, key=lambda s: (s.created_at, s.room_id), reverse=True)
    assert ids(store.list_rooms(limit=1000)) == ids(newest_first)
    for size in range(1, 14):
        assert walk(store, size) == ids(newest_first), size
    failed = [s for s in newest_first if s.status is RoomStatus.FAILED]
    beta = [s for s in newest_first if s.workflow_id == "beta"]
    assert walk(store, 4, status=RoomStatus.FAILED) == ids(failed)
    assert walk(store, 3, workflow_id="beta") == ids(beta)
    assert walk(store, 2, query="be") == ids(beta)
    both = [s for s in beta if s.status is RoomStatus.FAILED]
    assert walk(store, 2, query="be", status=RoomStatus.FAILED) == ids(both)


def test_a_walk_sees_each_older_room_once_while_rooms_are_added(store: AtomicStore) -> None:
    """Rooms created during a walk are newer than its cursor: they are not listed, and they
    move no older room into a page twice or out of every page."""
    for i in range(20):
        put(store, f"old-{i:02d}", 1000 + i // 3)
    seen: list[str] = []
    before = None
    for n in range(100):
        page = store.list_rooms(limit=3, before=before, query="old")
        seen += ids(page)
        put(store, f"new-{n:02d}", 5000 + n)
        put(store, f"old-new-{n:02d}", 5000 + n)  # matches the query, but is newer
        if len(page) < 3:
            break
        before = (page[-1].created_at, page[-1].room_id)
    assert seen == [f"old-{i:02d}" for i in reversed(range(20))]


def test_query_matches_an_id_or_workflow_prefix_case_sensitively(store: AtomicStore) -> None:
    put(store, "order-1", 1000, workflow_id="orders")
    put(store, "Order-2", 1001, workflow_id="billing")
    put(store, "bill-3", 1002, workflow_id="order_flow")
    put(store, "misc-4", 1003, workflow_id="Orders")
    assert ids(store.list_rooms(query="order")) == ["bill-3", "order-1"]
    assert ids(store.list_rooms(query="Order")) == ["misc-4", "Order-2"]
    assert ids(store.list_rooms(query="bill")) == ["bill-3", "Order-2"]
    assert ids(store.list_rooms(query="order-1")) == ["order-1"]
    assert ids(store.list_rooms(query="order-1x")) == []
    assert ids(store.list_rooms(query="rder")) == []  # a prefix, not a substring
    assert len(store.list_rooms(query="")) == len(store.list_rooms(query=None)) == 4
    assert ids(store.list_rooms(query="order", workflow_id="orders")) == ["order-1"]
    assert ids(store.list_rooms(query="order", status=RoomStatus.RUNNING)) == []
    assert ids(store.list_rooms(query="order", limit=1)) == ["bill-3"]
    assert ids(store.list_rooms(query="order", before=(1002, "bill-3"))) == ["order-1"]


HOSTILE = [
    "a%b",
    "a%",
    "axb",
    "a_b",
    "a_",
    "aXb",
    "a\\b",
    "a\\%",
    "a*b",
    "a?b",
    "a[b]",
    "a'b",
    'a"b',
    "a;--",
    "a b",
    "é%",
    "x\U0010ffffy",
    "x\U0010ffff",
    "\ud7ffz",
]
"""Room ids with LIKE wildcards and escapes, glob characters, quotes, and the characters
around which a prefix range is computed (the last code point; the one before surrogates)."""


@pytest.mark.parametrize(
    "query",
    [
        "a%",
        "a_",
        "a\\",
        "a\\%",
        "a*",
        "a?",
        "a[",
        "a'",
        'a"',
        "a;",
        "a ",
        "%",
        "_",
        "\\",
        "*",
        "é",
        "é%",
        "x\U0010ffff",
        "\ud7ff",
        "a",
        "ax",
    ],
)
def test_hostile_queries_match_literally(store: AtomicStore, query: str) -> None:
    """``%`` and ``_`` are no LIKE wildcards, ``*?[`` no glob, ``\\`` no escape: a query
    selects exactly the ids that start with it (none of these workflow ids do)."""
    for n, room_id in enumerate(HOSTILE):
        put(store, room_id, 1000 + n, workflow_id="wf", status=RoomStatus.CREATED)
    expected = sorted((r for r in HOSTILE if r.startswith(query)), key=HOSTILE.index)
    assert ids(store.list_rooms(query=query)) == expected[::-1], query
    counts = store.status_counts(query=query)
    assert counts["created"] == len(expected) and sum(counts.values()) == len(expected)


def test_hostile_workflow_ids_match_literally(store: AtomicStore) -> None:
    for n, workflow_id in enumerate(["w%x", "wax", "w_x", "wbx", "w\\x"]):
        put(store, f"room-{n}", 1000 + n, workflow_id=workflow_id)
    assert ids(store.list_rooms(query="w%")) == ["room-0"]
    assert ids(store.list_rooms(query="w_")) == ["room-2"]
    assert ids(store.list_rooms(query="w\\")) == ["room-4"]
    assert ids(store.list_rooms(query="w")) == [f"room-{n}" for n in reversed(range(5))]
    assert store.status_counts(query="w_")["created"] == 1


def test_status_counts_has_every_status_and_counts_exactly(store: AtomicStore) -> None:
    assert store.status_counts() == {s.value: 0 for s in RoomStatus}
    plan = {
        RoomStatus.CREATED: 3,
        RoomStatus.RUNNING: 2,
        RoomStatus.WAITING: 1,
        RoomStatus.FAILED: 4,
        RoomStatus.COMPLETED: 1,
    }
    n = 0
    for status, count in plan.items():
        for _ in range(count):
            flow = "alpha" if n % 2 else "beta"
            put(store, f"room-{n:02d}", 1000 + n, workflow_id=flow, status=status)
            n += 1
    expected = {s.value: plan.get(s, 0) for s in RoomStatus}
    assert store.status_counts() == expected
    assert list(store.status_counts()) == [s.value for s in RoomStatus]
    made = store.list_rooms(limit=100)
    for query in ("room-0", "room-1", "al", "beta", "room-00", "zzz", "ROOM"):
        for workflow_id in (None, "alpha", "beta", "nope"):
            want = {s.value: 0 for s in RoomStatus}
            for s in made:
                if (s.room_id.startswith(query) or s.workflow_id.startswith(query)) and (
                    workflow_id is None or s.workflow_id == workflow_id
                ):
                    want[s.status.value] += 1
            assert store.status_counts(query=query, workflow_id=workflow_id) == want, (
                query,
                workflow_id,
            )


def test_status_counts_follow_commits(store: AtomicStore) -> None:
    """A step that changes a room's status moves it from one count to the other."""
    step = engine.create_room(WF, RoomId("r1"), now=1000)
    store.commit(step.state, step.events, expected_version=None)
    assert store.status_counts()["created"] == 1
    started = engine.start(WF, step.state, now=2000)
    store.commit(started.state, started.events, expected_version=step.state.version)
    counts = store.status_counts()
    assert counts[started.state.status.value] == 1 and sum(counts.values()) == 1
    assert counts["created"] == (started.state.status is RoomStatus.CREATED)


def test_runtime_passes_search_cursor_and_counts_to_its_state_store(
    store: AtomicStore,
) -> None:
    rt = Runtime(store, store)
    try:
        first = rt.create_room(WF, room_id="alpha-1")
        second = rt.create_room(WF, room_id="alpha-2")
        rt.create_room(WF, room_id="beta-1")
        rooms = rt.list_rooms(query="alpha")
        assert sorted(ids(rooms)) == ["alpha-1", "alpha-2"]
        last = rooms[0]
        older = rt.list_rooms(query="alpha", before=(last.created_at, last.room_id))
        assert ids(older) == ids(rooms[1:])
        assert {first.id, second.id} == set(ids(rooms))
        assert rt.status_counts(query="alpha")["created"] == 2
        assert rt.status_counts(query="contract") == rt.status_counts()
        assert rt.status_counts()["created"] == 3
    finally:
        rt.close()


@pytest.mark.parametrize("kinds", [p for p in PAIRS if "+" in p])
def test_a_split_runtime_lists_and_counts_from_its_state_store(kinds: str, tmp_path: Path) -> None:
    """State in one store, log in another: run rooms, then page, search and count them."""
    pair = open_pair(kinds, tmp_path)
    rt = Runtime(pair.states, pair.log)
    try:
        for n in range(7):
            room = rt.create_room(WF, room_id=f"{'ab' if n % 2 else 'cd'}-{n}")
            if n < 3:
                rt.run(room.id)
        everything = rt.list_rooms()
        assert len(everything) == 7
        seen: list[RoomState] = []
        before = None
        while len(seen) < 10:
            page = rt.list_rooms(limit=2, before=before)
            seen += page
            if len(page) < 2:
                break
            before = (page[-1].created_at, page[-1].room_id)
        assert ids(seen) == ids(everything)
        assert sorted(ids(rt.list_rooms(query="ab"))) == ["ab-1", "ab-3", "ab-5"]
        counts = rt.status_counts()
        assert counts["completed"] == 3 and counts["created"] == 4 and sum(counts.values()) == 7
        assert rt.status_counts(query="ab") == {
            s.value: sum(r.status is s for r in everything if r.room_id.startswith("ab"))
            for s in RoomStatus
        }
    finally:
        rt.close()
        discard_store(pair.states)
        discard_store(pair.log)
