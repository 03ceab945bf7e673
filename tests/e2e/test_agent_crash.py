"""An agent room killed with SIGKILL mid-conversation, then resumed by another process.

The model (FakeOpenAI on loopback, through litellm) asks for a tool; the tool runs and
its result is committed; the next model call hangs, and the process is killed there.
`openrooms resume` must not run the tool again nor ask the first turn again, and the
model must see a whole transcript: its tool call followed by the recorded result.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openrooms import EventType, RoomStatus, engine, open_runtime
from openrooms.llm.fake_openai import FakeOpenAI

pytestmark = pytest.mark.slow

PLUGIN = '''
from pathlib import Path
from openrooms import tool

def crash_note(text: str) -> dict:
    """Write a note (counts its calls in a file)."""
    with open(Path(__file__).with_name("calls.txt"), "a") as f:
        f.write(text + "\\n")
    return {"saved": text}


def register(registries):
    tool(name="crash_note", registry=registries.tools)(crash_note)
'''


def flow(base_url: str) -> str:
    return f"""
id: crash_agent
agents:
  scribe:
    model: openai/fake-model
    api_base: {base_url}
    tools: [crash_note]
nodes:
  write:
    type: agent
    agent: scribe
    prompt: Save a note saying hello, then confirm.
    output: answer
  done: {{type: end}}
transitions:
  - {{from: write, to: done}}
"""


def openrooms(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
    env.update(
        OPENROOMS_DB=f"sqlite:///{tmp / 'crash.db'}",
        OPENROOMS_PLUGINS="crash_plugin",
        PYTHONPATH=str(tmp),
        OPENAI_API_KEY="sk-openrooms-test-not-a-real-key",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "openrooms.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(condition: object, what: str, timeout: float = 120) -> None:
    """Poll *condition* (a callable) until it holds: a condition, not a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_agent_then_resume_keeps_the_transcript_whole(tmp_path: Path) -> None:
    (tmp_path / "crash_plugin.py").write_text(PLUGIN)
    with FakeOpenAI() as fake:
        fake.enqueue(
            {"tool_calls": [{"name": "crash_note", "arguments": {"text": "hello"}}]},
            {"hang": True},
        )
        wf = tmp_path / "crash_agent.yaml"
        wf.write_text(flow(fake.base_url))
        victim = openrooms(tmp_path, "run", str(wf))
        try:
            wait_for(lambda: len(fake.requests) >= 2, "the second model call")
            victim.send_signal(signal.SIGKILL)
        finally:
            victim.communicate(timeout=60)
        assert victim.returncode == -signal.SIGKILL
        assert (tmp_path / "calls.txt").read_text() == "hello\n"
        first_call = fake.requests[0]

        fake.release()
        fake.enqueue({"content": "Saved: hello."})
        rt = open_runtime(f"sqlite:///{tmp_path / 'crash.db'}")
        (room,) = rt.list_rooms()
        assert room.status is RoomStatus.RUNNING
        resumed = openrooms(tmp_path, "resume", room.id, "--json")
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        final = json.loads(out.strip().splitlines()[-1])
        assert final["status"] == "completed"
        assert final["variables"]["answer"] == "Saved: hello."

        # the tool did not run again, and the first turn was not asked again
        assert (tmp_path / "calls.txt").read_text() == "hello\n"
        bodies = [r.body for r in fake.requests]
        assert len(bodies) == 3
        assert bodies[0] == first_call.body
        asked_again = bodies[2]["messages"]
        assert asked_again == bodies[1]["messages"]  # the hung turn, with the same transcript
        call = asked_again[-2]["tool_calls"][0]
        assert asked_again[-1]["role"] == "tool"
        assert asked_again[-1]["tool_call_id"] == call["id"]
        assert json.loads(asked_again[-1]["content"]) == {"result": {"saved": "hello"}}

        events = rt.events(room.id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert engine.fold(events) == rt.get_room(room.id)
        types = [e.type for e in events]
        assert types.count(EventType.TOOL_CALLED) == 1
        assert types.count(EventType.NODE_COMPLETED) == 1
        assert EventType.ROOM_RESUMED in types
        rt.close()
