"""The REST API under a bounded load on loopback, beside a bare Starlette endpoint served
the same way in the same run.

    python bench/server.py                      # 2,000 requests per row, 16 at a time, best of 3
    python bench/server.py --requests 5000 --concurrency 32 --repeat 5

Both servers are uvicorn processes on 127.0.0.1 (``openrooms serve`` on a fresh SQLite file,
and a one-route Starlette app answering ``{"ok": true}``); this process is the client
(httpx, asyncio, a fixed number of requests in flight). Rows, run in turns so all see the
same load, best round kept:

- ``bare GET``: the bare endpoint, the ceiling of any Starlette app served this way;
- ``GET /api/rooms/{id}``: one room, read from the store (issue #9's target: at least 50% of
  the bare endpoint's rate);
- ``create+run 1-node``: ``POST /api/rooms?run=true`` of a one-node workflow: the room is
  created, queued and run in the server's process.

The machine is shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[1]
TARGET = 0.5
BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def ok(request): return JSONResponse({"ok": True})
app = Starlette(routes=[Route("/ok", ok)])
uvicorn.run(app, host="127.0.0.1", port=0, log_level="info")  # as `serve`: access log on
"""
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
ONE_NODE = {"id": "one", "nodes": {"done": {"type": "end"}}}


def start(args: list[str], log: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    with log.open("w") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = LISTENING.search(log.read_text())
        if m:
            return proc, f"http://127.0.0.1:{m.group(1)}"
        if proc.poll() is not None:
            raise SystemExit(f"{args} exited:\n{log.read_text()}")
        time.sleep(0.05)
    raise SystemExit(f"{args} did not start")


async def load(url: str, method: str, path: str, body: object, n: int, conc: int) -> list[float]:
    latencies: list[float] = []
    todo = iter(range(n))
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                r = await client.request(method, path, json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code >= 300:
                    raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        latencies.append(-(time.perf_counter() - t0))  # the wall time, last
    return latencies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT)
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-"))
    api, api_url = start(
        [
            sys.executable,
            "-m",
            "openrooms.cli",
            "--db",
            f"sqlite:///{tmp}/rooms.db",
            "serve",
            "--port",
            "0",
            # the guards stay on (the access log, headers, keys check, limiter, body cap);
            # the limits are raised so the load measures the server, not the limiter
            "--rate-limit",
            "1000000000",
            "--room-rate-limit",
            "1000000000",
        ],
        tmp / "api.log",
        env,
    )
    bare, bare_url = start([sys.executable, "-c", BARE], tmp / "bare.log", env)
    try:
        with httpx.Client(base_url=api_url) as c:
            room_id = c.post("/api/rooms?run=true", json={"definition": ONE_NODE}).json()["id"]
        rows = {
            "bare GET": (bare_url, "GET", "/ok", None),
            "GET /api/rooms/{id}": (api_url, "GET", f"/api/rooms/{room_id}", None),
            "create+run 1-node": (api_url, "POST", "/api/rooms?run=true", {"workflow": "one"}),
        }
        best: dict[str, tuple[float, float, float]] = {}
        for _ in range(a.repeat):
            for name, (url, method, path, body) in rows.items():
                lat = asyncio.run(load(url, method, path, body, a.requests, a.concurrency))
                wall = -lat.pop()
                lat.sort()
                rps = len(lat) / wall
                p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
                if name not in best or rps > best[name][0]:
                    best[name] = (rps, p50, p99)
    finally:
        for proc in (api, bare):
            proc.terminate()
            proc.wait(timeout=60)
    print(f"{a.requests} requests per row, {a.concurrency} in flight, best of {a.repeat}")
    print(f"{'row':<22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs bare':>8}")
    for name, (rps, p50, p99) in best.items():
        print(f"{name:<22} {rps:>8.0f} {p50:>8.2f} {p99:>8.2f} {rps / best['bare GET'][0]:>8.2f}")
    ratio = best["GET /api/rooms/{id}"][0] / best["bare GET"][0]
    verdict = "meets" if ratio >= TARGET else "misses"
    print(
        f"GET /api/rooms/{{id}} at {ratio:.0%} of the bare endpoint: "
        f"{verdict} the {TARGET:.0%} target"
    )


if __name__ == "__main__":
    main()
