"""OpenRooms' overhead per model call, beside direct litellm calls in the same run.

    python bench/agent.py                  # 200 model calls per scenario, best of 3
    python bench/agent.py --calls 500 --repeat 5

A room loops an ``agent`` node to itself on ``sqlite://``
(synchronous FULL, the default), each agent turn one chat completion against a local
OpenAI-compatible server (``FakeOpenAI`` on 127.0.0.1) through litellm. The baseline
sends the very same request bodies straight to ``litellm.acompletion`` in one event
loop. OpenRooms' overhead is the room's wall time minus the time spent inside the model
calls (each ``LLM_CALLED`` event's duration); litellm's own background work lands
there too, so the same room is also run on an instant in-process model, which leaves
only OpenRooms: the engine, one durable commit per call (LLM_CALLED, MESSAGES_ADDED,
NODE_COMPLETED, TRANSITION, NODE_STARTED), the conversation thread and the agent loop.
Needs the ``llm`` and ``server`` extras.
This machine is shared and noisy: read the difference and the ratio, not the absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openrooms import EventType, Runtime, Workflow, serde
from openrooms.backends import SQLiteStore
from openrooms.llm import ChatRequest, ChatResponse, Message, Usage
from openrooms.llm.fake_openai import FakeOpenAI
from openrooms.llm.litellm import LiteLLMModel
from openrooms.llm.registry import ModelRegistry


def loop_workflow(calls: int, base_url: str) -> Workflow:
    """An agent node that loops to itself, one model call per visit, *calls* times. Its
    conversation thread grows as it would in a real room, and so do the requests."""
    return serde.workflow_from_text(
        f"""
id: bench_agent
max_steps: {calls + 10}
agents:
  bot:
    model: openai/bench-model
    api_base: {base_url}
    system_prompt: You answer in one word.
nodes:
  ask: {{type: agent, agent: bot, prompt: "Turn {{{{ room.steps }}}}: say ok.", output: last}}
  done: {{type: end}}
transitions:
  - {{from: ask, to: ask, when: "room.steps < {calls}"}}
  - {{from: ask, to: done}}
"""
    )


class Instant:
    """A model that answers at once, in process: what is left is OpenRooms' own cost."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(Message("assistant", "ok"), Usage(10, 1), request.model)


def run_instant(wf: Workflow, path: Path, synchronous: str) -> float:
    store = SQLiteStore(path, synchronous=synchronous)
    rt = Runtime(store, store, models=ModelRegistry(fallback=Instant()))
    room = rt.create_room(wf)
    started = time.perf_counter()
    state = rt.run(room.id)
    elapsed = time.perf_counter() - started
    assert state.status.value == "completed", state.reason
    rt.close()
    return elapsed


def run_openrooms(wf: Workflow, path: Path) -> tuple[float, float]:
    """The room's wall time, and the part of it spent inside the model calls."""
    store = SQLiteStore(path)
    rt = Runtime(store, store, models=ModelRegistry(fallback=LiteLLMModel()))
    room = rt.create_room(wf)
    started = time.perf_counter()
    state = rt.run(room.id)
    elapsed = time.perf_counter() - started
    assert state.status.value == "completed", state.reason
    calls = rt.events(room.id, types=[EventType.LLM_CALLED])
    in_calls = sum(e.duration_ms or 0.0 for e in calls) / 1000
    rt.close()
    return elapsed, in_calls


def run_direct(bodies: list[dict[str, Any]], base_url: str) -> float:
    import litellm

    async def all_calls() -> float:
        started = time.perf_counter()
        for body in bodies:
            await litellm.acompletion(
                model="openai/bench-model",
                messages=body["messages"],
                api_base=base_url,
                temperature=body.get("temperature"),
                num_retries=0,
                max_retries=0,
            )
        return time.perf_counter() - started

    return asyncio.run(all_calls())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    tmp = Path(tempfile.mkdtemp(prefix="openrooms-bench-agent-"))
    ours: list[tuple[float, float]] = []
    direct: list[float] = []
    with FakeOpenAI(default_reply="ok") as fake:
        wf = loop_workflow(args.calls, fake.base_url)
        run_openrooms(wf, tmp / "warmup.db")  # imports litellm, warms its client
        for i in range(args.repeat):
            fake.reset()
            ours.append(run_openrooms(wf, tmp / f"run-{i}.db"))
            bodies = [r.body for r in fake.requests]
            assert len(bodies) == args.calls, len(bodies)
            direct.append(run_direct(bodies, fake.base_url))
    n = args.calls
    instant = {
        sync: min(run_instant(wf, tmp / f"instant-{sync}-{i}.db", sync) for i in range(args.repeat))
        for sync in ("full", "normal")
    }
    # the run whose time outside the model calls was smallest: the least disturbed one
    wall, inside = min(ours, key=lambda r: r[0] - r[1])
    outside = wall - inside
    d = min(direct)
    rows = [
        ("direct litellm.acompletion, same requests (baseline)", d, ""),
        ("openrooms agent room on sqlite:// (FULL), wall time", wall, f"{wall / d:.2f}x baseline"),
        (
            "  of which inside model.complete (litellm + HTTP)",
            inside,
            f"{inside / d:.2f}x baseline",
        ),
        ("  of which outside the model calls", outside, ""),
        ("openrooms, instant in-process model, sqlite:// FULL", instant["full"], "pure overhead"),
        (
            "openrooms, instant in-process model, sqlite:// NORMAL",
            instant["normal"],
            "pure overhead",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(
        f"\n{n} model calls against FakeOpenAI on 127.0.0.1, best of {args.repeat}; python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cpus\n"
    )
    print(f"{'scenario':<{width}}  {'total s':>8}  {'ms/call':>8}  vs baseline")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 11}")
    for name, seconds, note in rows:
        print(f"{name:<{width}}  {seconds:>8.3f}  {seconds / n * 1000:>8.2f}  {note}")
    print(
        f"\nOpenRooms overhead per model call: {instant['full'] / n * 1000:.2f} ms with "
        f"synchronous=FULL (one fsync'd commit per call), {instant['normal'] / n * 1000:.2f} ms "
        f"with NORMAL (target < 1 ms); litellm alone: {d / n * 1000:.2f} ms per call"
    )


if __name__ == "__main__":
    main()
