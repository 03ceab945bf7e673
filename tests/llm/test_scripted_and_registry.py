"""ScriptedModel (the test double agents run on) and ModelRegistry (who answers a model string)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import openrooms.llm.base
from openrooms.errors import CompletionError
from openrooms.llm import (
    ChatModel,
    ChatRequest,
    ChatResponse,
    LiteLLMModel,
    Message,
    ModelRegistry,
    ToolCall,
    Usage,
    default_models,
    register_provider,
)
from openrooms.testing import ScriptedModel, ScriptedReply


def request(text: str = "hi", model: str = "scripted/helper") -> ChatRequest:
    return ChatRequest(model, (Message("user", text),))


def answer(model: ChatModel, req: ChatRequest | None = None) -> ChatResponse:
    return asyncio.run(model.complete(req or request()))


@pytest.fixture
def clean_default_models() -> Iterator[None]:
    """Undo whatever a test registers in the process-wide registry."""
    before = set(default_models.providers())
    yield
    for prefix in set(default_models.providers()) - before:
        default_models.unregister_provider(prefix)


# -- ScriptedModel -----------------------------------------------------------------------


def test_a_scripted_model_is_a_chat_model() -> None:
    assert isinstance(ScriptedModel(), ChatModel)


def test_text_steps_answer_in_order_and_every_request_is_recorded() -> None:
    model = ScriptedModel(["first", ScriptedModel.text("second")])
    one, two = request("a"), request("b")
    assert answer(model, one) == ChatResponse(
        Message("assistant", "first"), Usage(), "scripted/helper", "stop"
    )
    assert answer(model, two).message.content == "second"
    assert model.requests == [one, two]
    assert model.remaining == 0


def test_tool_calls_get_deterministic_ids_across_replies() -> None:
    model = ScriptedModel(
        [
            ScriptedModel.call("lookup", {"order_id": "A1"}),
            ScriptedModel.calls(("lookup", {"order_id": "B2"}), ("search", None)),
            ScriptedModel.call("lookup", {"order_id": "C3"}, id="mine"),
        ]
    )
    first, second, third = (answer(model) for _ in range(3))
    assert first.message.tool_calls == (ToolCall("call_1", "lookup", '{"order_id": "A1"}'),)
    assert first.finish_reason == "tool_calls"
    assert [c.id for c in second.message.tool_calls] == ["call_2", "call_3"]
    assert second.message.tool_calls[1].arguments == "{}"
    assert third.message.tool_calls[0].id == "mine"


def test_raw_string_arguments_are_sent_as_they_are() -> None:
    model = ScriptedModel([ScriptedModel.call("lookup", '{"order_id": ')])
    (call,) = answer(model).message.tool_calls
    assert call.arguments == '{"order_id": '
    with pytest.raises(CompletionError, match="malformed JSON"):
        call.parsed_arguments()


def test_usage_is_the_models_default_unless_a_reply_sets_its_own() -> None:
    model = ScriptedModel(
        ["a", ScriptedModel.text("b", usage=Usage(900, 300, 0.01))], usage=Usage(10, 2)
    )
    assert answer(model).usage == Usage(10, 2)
    assert answer(model).usage == Usage(900, 300, 0.01)


def test_exception_steps_are_raised() -> None:
    error = CompletionError("scripted/helper", "slow down", retryable=True, retry_after_s=0.5)
    model = ScriptedModel([error, "recovered"])
    with pytest.raises(CompletionError) as info:
        answer(model)
    assert info.value is error
    assert answer(model).message.content == "recovered"
    assert len(model.requests) == 2


def test_callable_steps_see_the_request() -> None:
    async def later(req: ChatRequest) -> str:
        return "async " + (req.messages[-1].content or "")

    model = ScriptedModel([lambda req: f"echo {req.messages[-1].content}", later])
    assert answer(model, request("one")).message.content == "echo one"
    assert answer(model, request("two")).message.content == "async two"


def test_message_and_response_steps_are_used_as_given() -> None:
    whole = ChatResponse(Message("assistant", "x"), Usage(1, 1), "other/model", "length")
    message = Message("assistant", None, (ToolCall("", "lookup", "{}"),))
    model = ScriptedModel([whole, message, ScriptedReply(Message("assistant", "y"), None, "stop")])
    assert answer(model) is whole
    assert answer(model).message.tool_calls[0].id == "call_1"
    assert answer(model).message.content == "y"


def test_an_exhausted_script_fails_clearly_and_not_retryably() -> None:
    model = ScriptedModel(["a", "b"])
    answer(model)
    answer(model)
    with pytest.raises(CompletionError) as info:
        answer(model)
    assert not info.value.retryable
    assert "script exhausted after 2 replies" in str(info.value)
    assert len(model.requests) == 3


def test_steps_are_checked_when_added() -> None:
    with pytest.raises(TypeError, match="int"):
        ScriptedModel([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="assistant"):
        ScriptedModel([Message("user", "not a reply")])
    model = ScriptedModel([lambda req: 42])
    with pytest.raises(TypeError, match="callable returned an int"):
        answer(model)


# -- ModelRegistry -----------------------------------------------------------------------


def test_a_registered_prefix_wins_and_everything_else_goes_to_one_litellm_model() -> None:
    registry = ModelRegistry()
    scripted = ScriptedModel()
    registry.register_provider("scripted", scripted)
    assert registry.resolve("scripted/helper") is scripted
    assert registry.resolve("scripted") is scripted
    fallback = registry.resolve("openai/gpt-4o-mini")
    assert isinstance(fallback, LiteLLMModel)
    assert registry.resolve("anthropic/claude") is fallback
    assert registry.resolve("scriptedx/helper") is fallback
    assert registry.providers() == ["scripted"]
    assert "scripted" in registry


def test_a_taken_prefix_needs_replace() -> None:
    registry = ModelRegistry()
    registry.register_provider("echo", ScriptedModel())
    other = ScriptedModel()
    with pytest.raises(ValueError, match="already registered"):
        registry.register_provider("echo", other)
    registry.register_provider("echo", other, replace=True)
    assert registry.resolve("echo/x") is other
    assert registry.unregister_provider("echo") is other
    assert registry.providers() == []


@pytest.mark.parametrize("prefix", ["", "  ", "a/b"])
def test_malformed_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ModelRegistry().register_provider(prefix, ScriptedModel())


def test_something_without_async_complete_is_not_a_provider() -> None:
    class Sync:
        def complete(self, request: ChatRequest) -> ChatResponse:
            raise AssertionError

    with pytest.raises(TypeError, match="async def complete"):
        ModelRegistry().register_provider("sync", Sync())  # type: ignore[arg-type]


def test_a_custom_fallback_answers_unclaimed_strings() -> None:
    fallback = ScriptedModel(["from the fallback"])
    registry = ModelRegistry(fallback=fallback)
    assert registry.resolve("openai/gpt-4o") is fallback


def test_registry_aclose_closes_models_that_can_close() -> None:
    closed: list[str] = []

    class Closing(ScriptedModel):
        async def aclose(self) -> None:
            closed.append("closed")

    registry = ModelRegistry(fallback=Closing())
    shared = Closing()
    registry.register_provider("a", shared)
    registry.register_provider("b", shared)
    registry.register_provider("c", ScriptedModel())
    asyncio.run(registry.aclose())
    assert closed == ["closed", "closed"]  # the shared model once, the fallback once


def test_module_level_register_provider_uses_default_models(clean_default_models: None) -> None:
    model = ScriptedModel(["hello"])
    register_provider("unit-test-provider", model)
    assert default_models.resolve("unit-test-provider/any") is model
    with pytest.raises(ValueError, match="already registered"):
        register_provider("unit-test-provider", model)


def test_the_adding_a_provider_example_in_base_py_works_verbatim(
    clean_default_models: None,
) -> None:
    doc = openrooms.llm.base.__doc__ or ""
    code = textwrap.dedent(doc.split("::\n", 1)[1])
    namespace: dict[str, Any] = {}
    exec(compile(code, "openrooms/llm/base.py (docstring)", "exec"), namespace)
    model = default_models.resolve("echo/anything")
    assert isinstance(model, namespace["EchoModel"])
    reply = asyncio.run(model.complete(request("repeat after me", model="echo/anything")))
    assert reply.message == Message("assistant", "repeat after me")
    assert reply.model == "echo/anything"


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        ("{completion_tokens: -5}", "completion_tokens: expected a whole number from 0"),
        ("{prompt_tokens: " + "9" * 35 + "}", "prompt_tokens: expected a whole number from 0"),
        ("{prompt_tokens: 1.5}", "prompt_tokens: expected a whole number"),
        ("{tokens: 3}", "tokens: unknown key"),
        ("7", "expected {prompt_tokens: N"),
    ],
)
def test_a_scripts_usage_must_be_token_counts(tmp_path: Path, usage: str, problem: str) -> None:
    """Found by a hostile trial: -5 tokens were added to a room's usage."""
    from openrooms import SchemaValidationError, default_tools
    from openrooms.offline import load_script

    script = tmp_path / "s.yaml"
    script.write_text(f"models:\n  a:\n    - {{content: hi, usage: {usage}}}\n")
    with pytest.raises(SchemaValidationError, match=problem):
        load_script(script, default_tools)
