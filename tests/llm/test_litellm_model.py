"""LiteLLMModel against FakeOpenAI over real HTTP: replies, usage, cost and every failure kind."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from email.utils import formatdate
from typing import Any

import pytest

from openrooms.errors import CompletionError
from openrooms.llm import ChatRequest, ChatResponse, LiteLLMModel, Message
from openrooms.llm.fake_openai import FakeOpenAI
from openrooms.llm.litellm import _retry_after_s

MODEL = "openai/fake-model"


def ask(fake: FakeOpenAI, text: str = "Hello there", **fields: Any) -> ChatRequest:
    fields.setdefault("api_base", fake.base_url)
    return ChatRequest(MODEL, (Message("user", text),), **fields)


def complete(request: ChatRequest, model: LiteLLMModel | None = None) -> ChatResponse:
    """One call on a fresh event loop, closing litellm's clients for that loop afterwards."""
    model = model or LiteLLMModel()

    async def go() -> ChatResponse:
        try:
            return await model.complete(request)
        finally:
            await model.aclose()

    return asyncio.run(go())


def fail(request: ChatRequest) -> CompletionError:
    with pytest.raises(CompletionError) as info:
        complete(request)
    return info.value


def test_a_text_reply_becomes_an_assistant_message(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"content": "Hi, how can I help?"})
    reply = complete(ask(fake_openai))
    assert reply.message == Message("assistant", "Hi, how can I help?")
    assert reply.finish_reason == "stop"
    assert reply.model == "fake-model"


def test_tool_calls_keep_the_models_raw_argument_text(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        {
            "tool_calls": [
                {"name": "lookup", "arguments": {"order_id": "A1"}, "id": "call_a"},
                {"name": "search", "arguments": '{"q": "refund"', "id": "call_b"},
            ]
        }
    )
    reply = complete(ask(fake_openai))
    first, second = reply.message.tool_calls
    assert (first.id, first.name, first.arguments) == ("call_a", "lookup", '{"order_id": "A1"}')
    assert first.parsed_arguments() == {"order_id": "A1"}
    assert (second.id, second.name, second.arguments) == ("call_b", "search", '{"q": "refund"')
    with pytest.raises(CompletionError) as info:
        second.parsed_arguments(MODEL)
    assert info.value.retryable
    assert reply.message.content is None
    assert reply.finish_reason == "tool_calls"


def test_usage_is_mapped_from_the_reply(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"content": "ok", "usage": {"prompt_tokens": 120, "completion_tokens": 7}})
    usage = complete(ask(fake_openai)).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 7, 127)


def test_cost_is_none_when_litellm_has_no_price_for_the_model(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"content": "ok", "model": "fake-model"})
    assert complete(ask(fake_openai)).usage.cost_usd is None


def test_cost_comes_from_litellms_bundled_price_map(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"content": "ok", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000}})
    request = ChatRequest(
        "openai/gpt-4o-mini", (Message("user", "hi"),), api_base=fake_openai.base_url
    )
    cost = complete(request).usage.cost_usd
    assert cost is not None and 0 < cost < 0.01


def test_request_settings_reach_the_provider_at_api_base(fake_openai: FakeOpenAI) -> None:
    tool = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
    request = ChatRequest(
        MODEL,
        (Message("system", "Be brief."), Message("user", "Classify this")),
        tools=(tool,),
        temperature=0.25,
        max_tokens=64,
        response_format={"type": "json_object"},
        api_base=fake_openai.base_url,
    )
    complete(request)
    (seen,) = fake_openai.requests
    assert seen.path == "/v1/chat/completions"
    body = seen.body
    assert body["model"] == "fake-model"
    assert body["messages"] == [m.to_dict() for m in request.messages]
    assert body["tools"] == [tool]
    assert (body["temperature"], body["max_tokens"]) == (0.25, 64)
    assert body["response_format"] == {"type": "json_object"}
    assert seen.headers["authorization"] == "Bearer sk-openrooms-test-not-a-real-key"


def test_the_idempotency_key_is_sent_as_a_header(fake_openai: FakeOpenAI) -> None:
    complete(ask(fake_openai, idempotency_key="room-1:ask:1:1:0"))
    (seen,) = fake_openai.requests
    assert seen.headers["idempotency-key"] == "room-1:ask:1:1:0"


def test_a_429_is_retryable_after_the_providers_retry_after(fake_openai: FakeOpenAI) -> None:
    from litellm.exceptions import RateLimitError

    fake_openai.enqueue({"status": 429, "retry_after": 2})
    error = fail(ask(fake_openai))
    assert error.retryable
    assert error.retry_after_s == 2
    assert error.status == 429
    assert "model 'openai/fake-model'" in str(error) and "429" in str(error)
    assert isinstance(error.__cause__, RateLimitError)
    assert len(fake_openai.requests) == 1  # neither litellm nor the OpenAI SDK retried


def test_a_retry_after_http_date_becomes_seconds(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"status": 429, "retry_after": formatdate(time.time() + 30, usegmt=True)})
    error = fail(ask(fake_openai))
    assert error.retry_after_s is not None and 25 <= error.retry_after_s <= 31


def test_a_5xx_is_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"status": 500})
    error = fail(ask(fake_openai))
    assert (error.retryable, error.status, error.retry_after_s) == (True, 500, None)
    assert "HTTP 500" in str(error)


def test_bad_credentials_are_not_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"status": 401, "message": "invalid api key"})
    error = fail(ask(fake_openai))
    assert (error.retryable, error.status) == (False, 401)
    assert "API key" in str(error)


def test_a_bad_request_is_not_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"status": 400, "message": "unknown parameter"})
    error = fail(ask(fake_openai))
    assert (error.retryable, error.status) == (False, 400)
    assert "unknown parameter" in str(error)


def test_a_body_that_is_not_json_is_retryable(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"raw": "not json at all", "status": 200})
    error = fail(ask(fake_openai))
    assert error.retryable
    assert "not valid JSON" in str(error)


def test_a_provider_that_never_answers_times_out_retryably(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"hang": True})
    started = time.monotonic()
    error = fail(ask(fake_openai, timeout_s=1))
    assert time.monotonic() - started < 10
    assert error.retryable
    assert "timed out" in str(error)


def test_a_refused_connection_is_retryable(fake_openai: FakeOpenAI) -> None:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = fail(ask(fake_openai, api_base=f"http://127.0.0.1:{port}/v1", timeout_s=2))
    assert error.retryable


def test_the_api_key_comes_from_the_environment_only(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    complete(ask(fake_openai))
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-from-the-environment"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0),  # already past
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-3"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert _retry_after_s(headers, now=now) == expected


def test_messages_round_trip_through_the_wire_form(fake_openai: FakeOpenAI) -> None:
    """A full transcript (assistant tool call + tool result) is accepted as sent."""
    call = {"name": "lookup", "arguments": {"id": 1}, "id": "call_9"}
    fake_openai.enqueue({"tool_calls": [call]}, {"content": "It is 42."})
    first = complete(ask(fake_openai))
    transcript = (
        Message("user", "Hello there"),
        first.message,
        Message("tool", json.dumps({"result": 42}), tool_call_id="call_9", name="lookup"),
    )
    second = complete(ChatRequest(MODEL, transcript, api_base=fake_openai.base_url))
    assert second.message.content == "It is 42."
    sent = fake_openai.requests[1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_9"
    assert sent[2] == {
        "role": "tool",
        "content": '{"result": 42}',
        "tool_call_id": "call_9",
        "name": "lookup",
    }
