"""Processes that open one new SQLite file at the same moment all get a working store."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

FILES = 40


def _open_all(folder: str, barrier: Any, results: Any) -> None:
    from openrooms.backends import SQLiteStore

    failures = []
    for i in range(FILES):
        barrier.wait()  # every process opens the same new file at the same moment
        try:
            SQLiteStore(f"{folder}/race-{i}.db").close()
        except Exception as exc:
            failures.append(f"race-{i}: {type(exc).__name__}: {exc}")
    results.put(failures)


def test_concurrent_first_opens_of_new_files_all_succeed(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_open_all, args=(str(tmp_path), barrier, results)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    failures = [f for _ in procs for f in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    results.close()
    results.join_thread()
    assert failures == []
    assert len(list(tmp_path.glob("race-*.db"))) == FILES
