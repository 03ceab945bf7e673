"""FakeOpenAI on its own, spoken to with plain httpx as any OpenAI client would."""

from __future__ import annotations

import threading

import httpx
import pytest

from openrooms.llm.fake_openai import FakeOpenAI

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "one two three"}]}


def test_an_empty_queue_answers_with_the_default_reply(fake_openai: FakeOpenAI) -> None:
    fake_openai.default_reply = "always this"
    for _ in range(2):
        reply = httpx.post(f"{fake_openai.base_url}/chat/completions", json=CHAT).json()
        assert reply["object"] == "chat.completion"
        assert reply["choices"][0]["message"] == {"role": "assistant", "content": "always this"}
        assert reply["choices"][0]["finish_reason"] == "stop"
        assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_both_paths_are_served_and_requests_are_recorded(fake_openai: FakeOpenAI) -> None:
    root = fake_openai.base_url.removesuffix("/v1")
    fake_openai.enqueue("a", "b")
    first = httpx.post(f"{root}/v1/chat/completions", json=CHAT, headers={"X-Trace": "t1"})
    second = httpx.post(f"{root}/chat/completions", json=CHAT)
    assert [r.json()["choices"][0]["message"]["content"] for r in (first, second)] == ["a", "b"]
    seen = fake_openai.requests
    assert [r.path for r in seen] == ["/v1/chat/completions", "/chat/completions"]
    assert seen[0].headers["x-trace"] == "t1"
    assert seen[0].body == CHAT


def test_tool_calls_errors_and_raw_bodies_are_scripted(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        {"tool_calls": [{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": "{"}]},
        {"status": 429, "retry_after": 2},
        {"raw": "not json at all"},
    )
    url = f"{fake_openai.base_url}/chat/completions"
    message = httpx.post(url, json=CHAT).json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    calls = message["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == ['{"x": 1}', "{"]
    assert len({c["id"] for c in calls}) == 2
    limited = httpx.post(url, json=CHAT)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert httpx.post(url, json=CHAT).text == "not json at all"


def test_a_hanging_reply_answers_once_released(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue({"hang": True, "content": "finally"})
    replies: list[httpx.Response] = []
    client = threading.Thread(
        target=lambda: replies.append(
            httpx.post(f"{fake_openai.base_url}/chat/completions", json=CHAT, timeout=10)
        )
    )
    client.start()
    while not fake_openai.requests:  # wait for the request to arrive
        client.join(timeout=0.01)
    assert client.is_alive() and not replies  # it hangs: nothing answers before release()
    fake_openai.release()
    client.join(timeout=10)
    assert replies[0].json()["choices"][0]["message"]["content"] == "finally"


def test_stopping_the_server_releases_hanging_requests() -> None:
    replies: list[int] = []
    with FakeOpenAI() as fake:
        fake.enqueue({"hang": True})
        url = f"{fake.base_url}/chat/completions"
        client = threading.Thread(
            target=lambda: replies.append(httpx.post(url, json=CHAT, timeout=10).status_code)
        )
        client.start()
        while not fake.requests:  # the request has arrived and is hanging
            client.join(timeout=0.01)
    client.join(timeout=10)
    assert replies == [200]
    with pytest.raises(RuntimeError, match="not running"):
        _ = fake.base_url


def test_malformed_reply_specs_are_refused_when_enqueued(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="unknown FakeOpenAI reply keys"):
        fake_openai.enqueue({"contnet": "typo"})
    with pytest.raises(ValueError, match="status"):
        fake_openai.enqueue({"status": 1000})
    with pytest.raises(ValueError, match="name"):
        fake_openai.enqueue({"tool_calls": [{"arguments": {}}]})
    with pytest.raises(ValueError, match="unknown FakeOpenAI reply keys"):
        fake_openai.default_reply = {"bogus": 1}
    assert fake_openai.pending() == 0
