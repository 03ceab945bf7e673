"""The durable step on Postgres, beside raw one-transaction-per-step baselines in the same run.

    python bench/postgres.py                       # 2,000 steps, best of 5
    python bench/postgres.py --steps 5000 --repeat 3 --url postgresql://postgres@127.0.0.1/test

Rows (run in turns, each round runs every row once, best of the rounds kept, so all of them
see the same load; each run in a fresh schema, dropped afterwards):

- ``raw txn/step``: the baseline of issue #8: per step one transaction that inserts one event
  row and updates one state row, of the sizes OpenRooms writes per step (bench/engine.py's
  ``row_sizes``), written the plain psycopg way (``with conn.transaction()``: BEGIN, INSERT,
  UPDATE, COMMIT; four round trips);
- ``raw, one round trip``: the same transaction as one statement (a data-modifying CTE in
  autocommit): the floor of any store that sends one statement per step;
- ``PostgresStore.commit alone``: the same loop's commits, its steps computed beforehand,
  made in a bare loop: the store's cost (its statement and its Python) without the runner;
- ``openrooms postgresql://``: bench/engine.py's loop through a no-op ``tool`` node (every
  step commits) on PostgresStore;
- ``openrooms memory://``: the same loop with no IO at all (the Python a step needs).

The machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
from engine import noop_tools, row_sizes, run_openrooms_tools, run_rooms, tool_loop_workflow

from openrooms import Runtime, Workflow, engine
from openrooms.backends import MemoryStore
from openrooms.backends.postgres import PostgresStore
from openrooms.nodes import Outcome
from openrooms.tools import ToolRegistry

DEFAULT_URL = os.environ.get(
    "OPENROOMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TARGET = 1.3


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Schemas:
    """Fresh schemas for the runs, all dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    def fresh(self) -> str:
        schema = f"or_bench_{uuid.uuid4().hex[:10]}"
        self.made.append(schema)
        return schema

    def drop(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for schema in self.made:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )


def raw_setup(conn: psycopg.Connection[tuple[object, ...]], schema: str, state_row: str) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    conn.execute("CREATE TABLE rooms (id text PRIMARY KEY, version bigint, body text)")
    conn.execute(
        "CREATE TABLE events (room_id text, seq bigint, body text, PRIMARY KEY (room_id, seq))"
    )
    conn.execute("INSERT INTO rooms VALUES ('r', 0, %s)", (state_row,))


def raw_txn(url: str, schema: str, steps: int, state_row: str, event_row: str) -> float:
    """One transaction per step, the plain way; returns the seconds the steps took."""
    with psycopg.connect(url, autocommit=True) as conn:
        raw_setup(conn, schema, state_row)
        started = time.perf_counter()
        for i in range(steps):
            with conn.transaction():
                conn.execute("INSERT INTO events VALUES ('r', %s, %s)", (i + 1, event_row))
                conn.execute(
                    "UPDATE rooms SET version = %s, body = %s WHERE id = 'r' AND version = %s",
                    (i + 1, state_row, i),
                )
        return time.perf_counter() - started


def raw_one_trip(url: str, schema: str, steps: int, state_row: str, event_row: str) -> float:
    """The same transaction as one statement, one round trip per step."""
    with psycopg.connect(url, autocommit=True) as conn:
        raw_setup(conn, schema, state_row)
        started = time.perf_counter()
        for i in range(steps):
            conn.execute(
                "WITH u AS (UPDATE rooms SET version = %s, body = %s "
                "WHERE id = 'r' AND version = %s RETURNING id) "
                "INSERT INTO events SELECT u.id, %s, %s FROM u",
                (i + 1, state_row, i, i + 1, event_row),
            )
        return time.perf_counter() - started


def commits_alone(url: str, wf: Workflow, tools: ToolRegistry, steps: int) -> float:
    """The tool loop's commits in a bare loop (the steps made beforehand, as the engine
    makes them); returns the seconds per commit."""
    store = PostgresStore(url)
    try:
        room = Runtime(store, store, tools=tools).create_room(wf)
        state = store.get(room.id)
        first = engine.start(wf, state, now=1)
        store.commit(first.state, first.events, expected_version=state.version)
        made, current = [], first.state
        for _ in range(steps):
            step = engine.decide(wf, current, Outcome.ok(None), now=2, duration_ms=1.0)
            made.append((current.version, step))
            current = step.state
        started = time.perf_counter()
        for version, step in made:
            store.commit(step.state, step.events, expected_version=version)
        return (time.perf_counter() - started) / len(made)
    finally:
        store.close()


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", default=DEFAULT_URL, help="a Postgres database to use")
    args = parser.parse_args()
    steps, url = args.steps, args.url
    tools = noop_tools()
    wf = tool_loop_workflow(steps, tools)
    state_row, event_row, commits = row_sizes(wf, tools)
    schemas = Schemas(url)

    def ours() -> float:
        store = PostgresStore(with_schema(url, schemas.fresh()))
        return timed(lambda: run_rooms(store, wf, 1, tools))  # run_rooms closes the store

    rows: dict[str, Callable[[], float]] = {
        "raw txn/step (baseline: BEGIN, INSERT, UPDATE, COMMIT)": lambda: raw_txn(
            url, schemas.fresh(), steps, state_row, event_row
        ),
        "raw, one round trip (one CTE statement per step)": lambda: raw_one_trip(
            url, schemas.fresh(), steps, state_row, event_row
        ),
        "PostgresStore.commit alone (steps made beforehand)": lambda: (
            steps * commits_alone(with_schema(url, schemas.fresh()), wf, tools, steps - 5)
        ),
        "openrooms postgresql:// (no-op tool loop)": ours,
        "openrooms memory:// (same loop, no IO)": lambda: timed(
            lambda: run_openrooms_tools(MemoryStore(), wf, tools)
        ),
    }
    best = dict.fromkeys(rows, float("inf"))
    try:
        for _ in range(args.repeat):
            for name, run in rows.items():
                best[name] = min(best[name], run())
    finally:
        schemas.drop()
    names = list(rows)
    raw, one_trip, pg = best[names[0]], best[names[1]], best[names[3]]
    width = max(map(len, names))
    print(
        f"\n{steps:,} steps through a no-op tool node on Postgres, best of {args.repeat}; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cpus\n"
    )
    print(f"{'scenario':<{width}}  {'total s':>8}  {'µs/step':>8}  vs baseline")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 11}")
    for name in names:
        note = ""
        if name == names[3]:
            note = f"{pg / raw:.2f}x raw txn/step; {pg / one_trip:.2f}x one round trip"
        elif name == names[2]:
            note = f"{best[name] / raw:.2f}x raw txn/step; {best[name] / one_trip:.2f}x one trip"
        elif name == names[1]:
            note = f"{one_trip / raw:.2f}x raw txn/step"
        print(f"{name:<{width}}  {best[name]:>8.3f}  {best[name] / steps * 1e6:>8.0f}  {note}")
    print(
        f"\nrows written per step: state {len(state_row)} B, events {len(event_row)} B; "
        f"{commits} commit(s) per step"
    )
    ratio = pg / raw
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(
        f"\ntarget (issue #8): postgres step vs raw txn/step  {ratio:.2f}x <= {TARGET}x  {verdict}"
    )


if __name__ == "__main__":
    main()
