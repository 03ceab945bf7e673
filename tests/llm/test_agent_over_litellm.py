"""An agent workflow end to end through litellm's real client, against FakeOpenAI on loopback."""

from __future__ import annotations

from pathlib import Path

from openrooms import EventType, RoomStatus, Runtime, Workflow, tool
from openrooms.backends import SQLiteStore
from openrooms.llm.fake_openai import FakeOpenAI


def price(sku: str) -> dict[str, object]:
    """Look up a price."""
    return {"sku": sku, "price": 12.5}


def workflow(base_url: str, rt: Runtime) -> Workflow:
    return Workflow.from_yaml(
        f"""
id: over-litellm
agents:
  shop:
    model: openai/fake-model
    api_base: {base_url}
    system_prompt: You answer price questions.
    tools: [litellm_e2e_price]
nodes:
  ask:
    type: agent
    agent: shop
    prompt: "How much is {{{{ vars.sku }}}}?"
    retry: {{max_attempts: 3, backoff_s: 0.001}}
    output: answer
  done: {{type: end}}
transitions:
  - {{from: ask, to: done}}
""",
        registries=rt.registries,
    )


def test_tool_loop_rate_limit_and_usage_through_litellm(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.enqueue(
        {"tool_calls": [{"name": "litellm_e2e_price", "arguments": {"sku": "B-7"}}]},
        {"status": 429, "retry_after": 0.05},
        {"content": "B-7 costs 12.5.", "usage": {"prompt_tokens": 30, "completion_tokens": 7}},
    )
    store = SQLiteStore(tmp_path / "e2e.db")
    rt = Runtime(store, store)
    tool(name="litellm_e2e_price", registry=rt.tools)(price)
    room = rt.create_room(workflow(fake_openai.base_url, rt), {"sku": "B-7"})
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED, state.reason
    assert state.variables["answer"] == "B-7 costs 12.5."

    sent = fake_openai.requests
    assert len(sent) == 3
    # turn 2 carried the tool's result for the model's call; it was rate-limited
    second = sent[1].body["messages"]
    assert second[0] == {"role": "system", "content": "You answer price questions."}
    assert second[-1]["role"] == "tool"
    assert second[-1]["tool_call_id"] == second[-2]["tool_calls"][0]["id"]
    assert '"price": 12.5' in second[-1]["content"]
    assert sent[0].body["tools"][0]["function"]["name"] == "litellm_e2e_price"
    # a retry is a fresh attempt: it starts the conversation again, under a new key
    assert [m["role"] for m in sent[2].body["messages"]] == ["system", "user"]
    keys = [r.headers.get("idempotency-key") for r in sent]
    assert keys == [f"{room.id}:ask:1:1:1", f"{room.id}:ask:1:1:2", f"{room.id}:ask:1:2:1"]

    retry = rt.events(room.id, types=[EventType.RETRY_SCHEDULED])
    assert retry[0].data["delay_ms"] >= 50  # the provider's Retry-After, not the 1 ms backoff
    calls = rt.events(room.id, types=[EventType.LLM_CALLED])
    assert [c.error is None for c in calls] == [True, False, True]
    assert calls[-1].data["usage"]["prompt_tokens"] == 30
    assert state.usage["completion_tokens"] >= 7
    rt.close()
