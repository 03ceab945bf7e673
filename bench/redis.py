"""What a durable tool step costs on Redis, beside the raw round trip it needs.

    python bench/redis.py                            # 2,000 steps, best of 5
    python bench/redis.py --steps 1000 --repeat 8 --url redis://127.0.0.1:6379/15

Five rows, run in turns (each round runs all five, the best of the rounds kept), so all
see the same load:

- ``raw``: per commit, one ``EVALSHA`` of a script doing ``XADD`` of as many stream entries
  as a commit of the loop appends, then ``HSET`` of the state fields it writes, of the same
  sizes (measured from a run of the loop first): the least a commit can cost on Redis;
- ``memory://``: the no-op tool loop with no store IO (the Python a step needs);
- ``memory:// on IO thread``: the same with every store call made from the runner's IO
  thread, as for any store that may block (a network store): the hand-off's cost;
- ``memory:// + raw``: that, with the raw ``EVALSHA`` made in every commit (a test device):
  the least a durable step on Redis can cost, from the runner, with this store design;
- ``redis://``: the loop on RedisStore (one ``EVALSHA`` per commit, from the runner's IO
  thread).

Every key is written under a fresh prefix, deleted at the end (never FLUSHDB). Wall time
and CPU time (process_time) per step; redis-server's own CPU is not in this process's.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This file is named redis.py: with its folder first on sys.path (as `python bench/redis.py`
# puts it), `import redis` would import it. The library is imported with the folder taken off
# the path, then the folder goes last, for engine.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import redis as redis_py  # noqa: E402

sys.path.append(str(_HERE))
from engine import noop_tools, run_openrooms_tools, tool_loop_workflow  # noqa: E402

from openrooms.backends import MemoryStore, open_backend  # noqa: E402
from openrooms.backends.redis import RedisStore  # noqa: E402
from openrooms.runtime import Runtime  # noqa: E402

_RAW: str = """
for i = 3, 2 + tonumber(ARGV[1]) do
  redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
end
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'b', ARGV[#ARGV])
return 1
"""


class ThreadedMemoryStore(MemoryStore):
    """A MemoryStore that says its calls may block: the runner makes them on its IO thread."""

    may_block = True


class RawEvalMemoryStore(ThreadedMemoryStore):
    """A ThreadedMemoryStore whose every commit also makes the raw EVALSHA (a test device):
    the least a durable step on Redis can cost, the Python of a step and the hand-off with the
    raw round trip under it."""

    def __init__(self, url: str, per_commit: int, event_row: str, state_row: str) -> None:
        super().__init__()
        self.prefix = f"bench-memraw-{uuid.uuid4().hex}:"
        self._client = redis_py.Redis.from_url(url.split("?", 1)[0], single_connection_client=True)
        self._script = self._client.register_script(_RAW)
        self._keys = [f"{self.prefix}log:r", f"{self.prefix}room:r"]
        self._rows = [event_row] * per_commit
        self._state_row = state_row
        self._n = 0

    def commit(self, state: Any, events: Any, **kwargs: Any) -> None:
        super().commit(state, events, **kwargs)
        self._n += 1
        self._script(keys=self._keys, args=[len(self._rows), self._n, *self._rows, self._state_row])

    def close(self) -> None:
        self._client.close()


def run_memory_raw(url: str, wf: Any, tools: Any, *shape: Any) -> None:
    store = RawEvalMemoryStore(url, *shape)
    run_openrooms_tools(store, wf, tools)
    store.close()
    drop(url, store.prefix)


def open_store(url: str, prefix: str) -> RedisStore:
    store = open_backend(f"{url}{'&' if '?' in url else '?'}prefix={prefix}")
    assert isinstance(store, RedisStore)
    return store


def shape(url: str, steps: int) -> tuple[int, int, int, int]:
    """Commits per step, events per commit, bytes per event row and bytes of the state
    fields a commit writes, from one run of the loop on Redis."""
    prefix = f"bench-{uuid.uuid4().hex}:"
    store = open_store(url, prefix)
    calls: list[list[Any]] = []
    script = store._commit_script

    def counting(*, keys: list[str], args: list[Any]) -> Any:
        calls.append(args)
        return script(keys=keys, args=args)

    store._commit_script = counting  # type: ignore[assignment]
    tools = noop_tools()
    rt = Runtime(store, store, tools=tools)
    state = rt.run(rt.create_room(tool_loop_workflow(steps, tools)).id)
    rt.close()
    drop(url, prefix)
    commits = calls[1:]  # the creation aside
    events = sum(len(a) - 19 for a in commits)
    event_bytes = sum(len(str(x).encode()) for a in commits for x in a[19:])
    state_bytes = sum(len(str(x).encode()) for a in commits for x in a[13:18] if x != "")
    return (
        max(1, round(len(commits) / max(1, state.steps))),
        max(1, round(events / len(commits))),
        event_bytes // max(1, events),
        state_bytes // len(commits),
    )


def raw(url: str, commits: int, per_commit: int, event_row: str, state_row: str) -> None:
    """*commits* EVALSHAs of XADD x *per_commit* + HSET, under a fresh prefix."""
    prefix = f"bench-raw-{uuid.uuid4().hex}:"
    client = redis_py.Redis.from_url(url.split("?", 1)[0], single_connection_client=True)
    script = client.register_script(_RAW)  # one connection, as RedisStore uses
    keys = [f"{prefix}log:r", f"{prefix}room:r"]
    rows = [event_row] * per_commit
    for i in range(commits):
        script(keys=keys, args=[per_commit, i + 1, *rows, state_row])
    client.close()
    drop(url, prefix)


def run_redis(url: str, steps: int) -> None:
    prefix = f"bench-ours-{uuid.uuid4().hex}:"
    tools = noop_tools()
    store = open_store(url, prefix)
    rt = Runtime(store, store, tools=tools)
    state = rt.run(rt.create_room(tool_loop_workflow(steps, tools)).id)
    assert state.status.value == "completed", state.reason
    rt.close()
    drop(url, prefix)


def drop(url: str, prefix: str) -> None:
    client = redis_py.Redis.from_url(url.split("?", 1)[0])
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    steps, url = args.steps, args.url
    per_step, per_commit, event_bytes, state_bytes = shape(url, steps)
    tools = noop_tools()
    wf = tool_loop_workflow(steps, tools)
    event_row, state_row = "y" * event_bytes, "x" * state_bytes
    cases: dict[str, Callable[[], object]] = {
        "raw": lambda: raw(url, steps * per_step, per_commit, event_row, state_row),
        "memory://": lambda: run_openrooms_tools(MemoryStore(), wf, tools),
        "memory:// on IO thread": lambda: run_openrooms_tools(ThreadedMemoryStore(), wf, tools),
        "memory:// + raw": lambda: run_memory_raw(url, wf, tools, per_commit, event_row, state_row),
        "redis://": lambda: run_redis(url, steps),
    }
    wall = dict.fromkeys(cases, float("inf"))
    cpu = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], (time.perf_counter() - w) / steps * 1e6)
            cpu[name] = min(cpu[name], (time.process_time() - c) / steps * 1e6)
    print(
        f"{steps:,} no-op tool steps on {url}, best of {args.repeat}, µs/step; a step is "
        f"{per_step} commit(s) of {per_commit} event(s) x {event_bytes} B + {state_bytes} B "
        f"of state\n"
    )
    print(f"{'':24s} {'wall':>7s} {'/raw':>6s} {'cpu':>7s} {'/raw':>6s}")
    for name in cases:
        w, c = wall[name], cpu[name]
        print(f"{name:24s} {w:7.0f} {w / wall['raw']:5.2f}x {c:7.0f} {c / cpu['raw']:5.2f}x")
    floor, own_cpu = wall["memory:// + raw"], cpu["redis://"] - cpu["memory:// + raw"]
    print(
        f"\nredis:// / raw: {wall['redis://'] / wall['raw']:.2f}x wall; redis:// / "
        f"(memory:// + raw): {wall['redis://'] / floor:.2f}x wall, "
        f"{cpu['redis://'] / cpu['memory:// + raw']:.2f}x cpu. The store's own cost over that "
        f"floor (encoding, redis-py, the script's checks): {wall['redis://'] - floor:.0f} µs "
        f"wall, {own_cpu:.0f} µs cpu (the cpu figure is the steadier on a shared machine)"
    )


if __name__ == "__main__":
    main()
