"""Missing keys are refused before litellm loads; its import and cut-off calls vs timeout_s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openrooms import EventType, Level, MissingAPIKeyError, RoomStatus, Runtime, serde
from openrooms.backends import SQLiteStore
from openrooms.llm import ModelRegistry
from openrooms.llm.fake_openai import FakeOpenAI
from openrooms.llm.keys import check_keys, missing_key
from openrooms.testing import ScriptedModel

ROOT = Path(__file__).parents[2]


def agent_workflow(*, api_base: str | None = None, timeout_s: float | None = None) -> str:
    base = f"\n    api_base: {api_base}" if api_base else ""
    timeout = f"\n    timeout_s: {timeout_s}" if timeout_s is not None else ""
    return f"""
id: keyed
agents:
  writer:
    model: openai/fake-model{base}
nodes:
  write:
    type: agent
    agent: writer
    prompt: Say hello{timeout}
    output: text
  done: {{type: end}}
transitions:
  - {{from: write, to: done}}
"""


def run_in_subprocess(code: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_AUTH_TOKEN"))}
    clean["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys, time
from openrooms import Runtime, serde
from openrooms.backends import MemoryStore
wf = serde.workflow_from_text({text!r})
store = MemoryStore()
rt = Runtime(store, store)
started = time.monotonic()
state = rt.run(rt.create_room(wf).id)
print(json.dumps({{
    "status": state.status.value,
    "reason": state.reason,
    "text": state.variables.get("text"),
    "seconds": time.monotonic() - started,
    "litellm": "litellm" in sys.modules,
}}))
"""


@pytest.mark.slow
def test_a_missing_key_is_refused_before_litellm_is_imported() -> None:
    found = run_in_subprocess(PROBE.format(text=agent_workflow()))
    assert found["status"] == "failed"
    assert "no API key: set OPENAI_API_KEY" in str(found["reason"])
    assert found["litellm"] is False  # the refusal did not pay for litellm's import


@pytest.mark.slow
def test_litellms_import_does_not_count_against_the_nodes_timeout(
    fake_openai: FakeOpenAI,
) -> None:
    """A fresh process imports litellm (seconds) for the first call; a 1 s timeout holds."""
    fake_openai.enqueue({"content": "hello"})
    code = PROBE.format(text=agent_workflow(api_base=fake_openai.base_url, timeout_s=1.0))
    found = run_in_subprocess(code, OPENAI_API_KEY="sk-openrooms-test-not-a-real-key")
    assert found["status"] == "completed", found["reason"]
    assert found["text"] == "hello"
    assert found["litellm"] is True


def test_missing_key_knows_the_common_providers_and_leaves_the_rest_to_litellm() -> None:
    assert missing_key("openai/gpt-4o-mini", environ={}) == "OPENAI_API_KEY"
    assert missing_key("openai/gpt-4o-mini", environ={"OPENAI_API_KEY": ""}) == "OPENAI_API_KEY"
    assert missing_key("openai/gpt-4o-mini", environ={"OPENAI_API_KEY": "sk-1"}) is None
    assert missing_key("anthropic/claude", environ={"ANTHROPIC_AUTH_TOKEN": "t"}) is None
    assert missing_key("gemini/gemini-pro", environ={}) == "GEMINI_API_KEY"
    assert missing_key("ollama/llama3", environ={}) is None  # litellm's own check decides
    assert missing_key("gpt-4o", environ={}) is None  # no provider prefix: litellm decides


def test_check_keys_names_every_agent_that_needs_the_missing_key() -> None:
    wf = serde.workflow_from_text(
        """
id: two-agents
agents:
  a: {model: openai/gpt-4o-mini}
  b: {model: openai/gpt-4o}
  local: {model: openai/llama, api_base: "http://127.0.0.1:9/v1"}
  scripted: {model: scripted/x}
nodes:
  one: {type: agent, agent: a}
  two: {type: agent, agent: b}
  three: {type: agent, agent: local}
  four: {type: agent, agent: scripted}
  done: {type: end}
transitions:
  - {from: one, to: two}
  - {from: two, to: three}
  - {from: three, to: four}
  - {from: four, to: done}
"""
    )
    models = ModelRegistry()
    models.register_provider("scripted", ScriptedModel([]))
    with pytest.raises(MissingAPIKeyError) as info:
        check_keys(wf, models, environ={})
    assert info.value.key == "OPENAI_API_KEY"
    assert info.value.agents == ["a"]  # one model per error; 'local' has an endpoint
    assert "agent 'a'" in str(info.value)
    assert not info.value.retryable
    check_keys(wf, models, environ={"OPENAI_API_KEY": "sk-test"})  # no error
    # an endpoint from the runtime config counts like the workflow's own
    check_keys(wf, models, api_bases={"a": "http://x", "b": "http://y"}, environ={})


def hanging_call_run(tmp_path: Path, text: str) -> tuple[Runtime, str]:
    store = SQLiteStore(tmp_path / "cut.db")
    rt = Runtime(store, store)
    room = rt.create_room(serde.workflow_from_text(text))
    rt.run(room.id)
    return rt, room.id


def test_a_model_call_cut_off_by_timeout_s_is_logged_and_counted(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.enqueue({"hang": True})
    text = agent_workflow(api_base=fake_openai.base_url, timeout_s=0.5)
    rt, room_id = hanging_call_run(tmp_path, text)
    state = rt.get_room(room_id)
    assert state.status is RoomStatus.FAILED
    calls = rt.events(room_id, types=[EventType.LLM_CALLED])
    assert len(calls) == 1
    assert calls[0].level is Level.ERROR
    assert calls[0].error is not None and "0.5" in calls[0].error.message
    assert state.usage["model_calls"] == 1
    assert state.usage.get("prompt_tokens", 0) == 0
    rt.close()


def test_a_branch_model_call_cut_off_by_its_nodes_deadline_says_timeout(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The branch's own request has no HTTP timeout: only the node's deadline cuts it off."""
    fake_openai.enqueue({"hang": True})
    text = f"""
id: cut-branch
agents:
  writer: {{model: openai/fake-model, api_base: "{fake_openai.base_url}"}}
nodes:
  both:
    type: parallel
    timeout_s: 0.5
    branches:
      a: {{type: agent, agent: writer, prompt: hello, output: said}}
  done: {{type: end}}
transitions:
  - {{from: both, to: done}}
"""
    rt, room_id = hanging_call_run(tmp_path, text)
    calls = rt.events(room_id, types=[EventType.LLM_CALLED])
    assert len(calls) == 1
    error = calls[0].error
    assert error is not None and error.type == "TimeoutError"
    assert "no reply within the node's timeout_s (0.5 s)" in error.message
    assert calls[0].data["scope"] == "a"
    failed = rt.events(room_id, types=[EventType.NODE_FAILED])
    assert failed[0].data["outcome"] == "timeout"
    assert rt.get_room(room_id).usage["model_calls"] == 1
    rt.close()


def test_input_to_a_room_whose_agents_lack_their_key_is_refused_and_it_keeps_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from openrooms.cli import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flow = tmp_path / "ask_then_write.yaml"
    flow.write_text(
        """
id: ask-then-write
agents:
  writer: {model: openai/gpt-4o-mini}
nodes:
  ask: {type: wait, prompt: "Topic?", output: asked}
  write: {type: agent, agent: writer, prompt: "Write on {{ vars.asked.topic }}"}
  done: {type: end}
transitions:
  - {from: ask, to: write}
  - {from: write, to: done}
"""
    )
    db = f"sqlite:///{tmp_path / 'rooms.db'}"
    runner = CliRunner()
    ran = runner.invoke(cli, ["--db", db, "run", str(flow)])
    assert ran.exit_code != 0  # refused at once: the agent needs OPENAI_API_KEY
    assert ran.output.count("no API key: set OPENAI_API_KEY") == 1
    # a room created anyway (by the library) waits; `input` refuses it without recording
    store = SQLiteStore(tmp_path / "rooms.db")
    rt = Runtime(store, store)
    room = rt.run(rt.create_room(serde.workflow_from_text(flow.read_text())).id)
    assert room.status is RoomStatus.WAITING
    sent = runner.invoke(cli, ["--db", db, "input", room.id, "--data", '{"topic": "bees"}'])
    assert sent.exit_code != 0
    assert "agent 'writer'" in sent.output and "OPENAI_API_KEY" in sent.output
    assert rt.get_room(room.id).status is RoomStatus.WAITING
    assert rt.events(room.id, types=[EventType.INPUT_RECEIVED]) == []
    rt.close()
