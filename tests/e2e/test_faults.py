"""Fault tests on the production backends: real ``openrooms worker`` processes (RQ), real
Postgres and Redis, signals sent by PID. The scenarios are in ``tests/e2e/chaos.py`` (their
parts in ``chaos_kit.py``); ``nox -s chaos`` runs them many times and prints a table.

- workers SIGKILLed before, during and after a tool call and inside a step's commit, with
  state and log on Postgres and the queue on Redis (``DATABASE_URL`` + ``REDIS_URL``), and
  with Redis state beside a Postgres log: another worker resumes the room within lease +
  sweep + margin, and every room keeps the invariants (no duplicated ``NODE_COMPLETED``,
  gapless sequence numbers, the fold of the log equal to the state, each idempotency key
  applied once by the loopback service the ``http`` tool calls);
- a worker SIGSTOPped past its lease and thawed after another took the room over;
- a private Redis and a private Postgres restarted while rooms run, and a private Redis
  that held a split layout's state (the room rebuilt from its Postgres log once named);
- one room queued ten times and run by four workers;
- a tool that kills its process every time, failed after the recovery cap;
- two hundred rooms across two workers (one of them killed halfway).

Workers run with a 1 s lease renewed every 0.25 s and sweep every 0.3 s. Each test has
its own Postgres schema, Redis key prefix and RQ queue, dropped afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import require_postgres
from tests.e2e.chaos import (
    KILL_POINTS,
    kill_trial,
    lost_state_trial,
    many_rooms_trial,
    poison_trial,
    queued_ten_times_trial,
    restart_trial,
    stop_trial,
)
from tests.e2e.chaos_kit import ApplyService, Cluster, PrivatePostgres, PrivateRedis, Unavailable
from tests.e2e.test_rq_workers import redis_or_skip

pytestmark = pytest.mark.slow

Make = Callable[..., Cluster]


@pytest.fixture
def service() -> Iterator[ApplyService]:
    s = ApplyService()
    yield s
    s.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Clusters with *workers* workers started, closed (workers killed, stores dropped)."""
    require_postgres()
    redis_or_skip()
    made: list[Cluster] = []

    def make_cluster(workers: int = 2, **kwargs: str) -> Cluster:
        folder = tmp_path / f"cluster-{len(made)}"
        folder.mkdir()
        cluster = Cluster(folder, **kwargs)
        made.append(cluster)
        for _ in range(workers):
            cluster.worker()
        return cluster

    yield make_cluster
    for cluster in made:
        cluster.close()


def private(kind: type[PrivateRedis] | type[PrivatePostgres]) -> PrivateRedis | PrivatePostgres:
    try:
        return kind()
    except Unavailable as exc:
        import os

        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no private server: {exc}")
        pytest.skip(str(exc))


@pytest.mark.parametrize("layout", ["postgres", "split"])
def test_a_worker_killed_at_any_point_of_a_node_is_recovered_by_another(
    make: Make, service: ApplyService, layout: str
) -> None:
    cluster = make(layout=layout)
    rng = random.Random(8)
    took = [kill_trial(cluster, service, point, rng) for point in KILL_POINTS]
    assert all(t is not None for t in took[:2] + took[3:])  # only "after" may come too late
    assert sum(service.applications.values()) == len(service.applications) == 2 * len(took)


def test_a_worker_stopped_past_its_lease_writes_nothing_once_thawed(
    make: Make, service: ApplyService
) -> None:
    stop_trial(make(), service)


def test_workers_reconnect_after_their_redis_queue_restarts(
    make: Make, service: ApplyService
) -> None:
    server = private(PrivateRedis)
    try:
        restart_trial(make(redis=server.url), service, server)
    finally:
        server.close()


def test_workers_reconnect_after_their_postgres_restarts(make: Make, service: ApplyService) -> None:
    server = private(PrivatePostgres)
    try:
        restart_trial(make(postgres=server.url), service, server)
    finally:
        server.close()


def test_a_room_whose_redis_state_was_lost_is_rebuilt_from_its_postgres_log(
    make: Make, service: ApplyService
) -> None:
    server = private(PrivateRedis)
    assert isinstance(server, PrivateRedis)
    try:
        lost_state_trial(make(layout="split", redis=server.url), service, server)
    finally:
        server.close()


def test_a_room_queued_ten_times_on_four_workers_has_one_runner(
    make: Make, service: ApplyService
) -> None:
    queued_ten_times_trial(make(workers=4), service, workers=4)


def test_a_room_that_kills_its_worker_every_time_fails_after_the_cap(
    make: Make, service: ApplyService
) -> None:
    poison_trial(make(OPENROOMS_MAX_RECOVERIES="2"), service)


def test_two_hundred_rooms_across_two_workers_one_killed_halfway(
    make: Make, service: ApplyService
) -> None:
    many_rooms_trial(make(), service, 200, random.Random(8))


def test_a_postgres_store_reconnects_at_once_after_a_long_outage() -> None:
    """psycopg_pool's reconnection backoff doubles (1, 2, 4, 8 s ...): without a bound, a
    store whose server was down 8 s would wait about 7 s more after it came back."""
    import time

    from openrooms.backends.postgres import PostgresStore
    from openrooms.errors import BackendUnavailableError

    server = private(PrivatePostgres)
    try:
        store = PostgresStore(f"{server.url}?schema=outage&pool_timeout=1")
        try:
            store.clock_ms()
            server.stop()
            down = time.monotonic()
            while time.monotonic() - down < 8:  # the outage: every call fails meanwhile
                with pytest.raises(BackendUnavailableError):
                    store.clock_ms()
            server.start()
            back = time.monotonic()
            while True:
                try:
                    store.clock_ms()
                    break
                except BackendUnavailableError:
                    assert time.monotonic() - back < 3, "no connection 3 s after the restart"
        finally:
            store.close()
    finally:
        server.close()
