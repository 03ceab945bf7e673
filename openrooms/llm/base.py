"""The model interface: messages and tool schemas in, an assistant message and usage out.

Everything an agent node needs from a provider is :class:`ChatModel.complete`. The
litellm implementation lives in :mod:`openrooms.llm.litellm` (the only module that
imports litellm); :class:`openrooms.testing.ScriptedModel` replays scripted replies.

Adding a provider (the seed's "Adding New LLM Providers")::

    from openrooms.llm import ChatRequest, ChatResponse, Message, Usage, register_provider

    class EchoModel:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            last = request.messages[-1].content or ""
            return ChatResponse(Message("assistant", last), Usage(), request.model)

    register_provider("echo", EchoModel())   # agents with model "echo/anything" use it
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from openrooms._wording import article
from openrooms.errors import CompletionError, InputError

__all__ = ["ChatModel", "ChatRequest", "ChatResponse", "Message", "Role", "ToolCall", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]


@attrs.frozen(slots=True)
class ToolCall:
    """A tool call the model asked for.

    Attributes:
        id: the provider's call id; the tool's result message refers to it.
        name: the tool's name.
        arguments: the arguments exactly as the model sent them (JSON text, maybe broken).
    """

    id: str
    name: str
    arguments: str

    def parsed_arguments(self, model: str = "") -> dict[str, Any]:
        """The arguments as an object.

        Raises:
            CompletionError: not JSON, or not an object (retryable: models do better twice).
        """
        from openrooms.loading import parse_json

        try:  # strict: no duplicate keys, NaN, huge integers or runaway nesting
            value = parse_json(self.arguments or "{}", source=f"arguments of {self.name!r}")
        except InputError as exc:
            raise CompletionError(
                model,
                f"tool call {self.name!r} has malformed JSON arguments: {exc}",
                retryable=True,
            ) from None
        if not isinstance(value, dict):
            raise CompletionError(
                model,
                f"tool call {self.name!r} arguments are {article(type(value).__name__)}, "
                "not an object",
                retryable=True,
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire form."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        fn = d.get("function") or {}
        args = fn.get("arguments")
        return cls(
            id=str(d.get("id") or ""),
            name=str(fn.get("name") or ""),
            arguments=args if isinstance(args, str) else json.dumps(args or {}),
        )


@attrs.frozen(slots=True)
class Message:
    """One chat message, in the OpenAI shape every litellm provider accepts."""

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI wire form (also how transcripts are stored in the log)."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        role = d.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"message role {role!r}; expected system, user, assistant or tool")
        content = d.get("content")
        return cls(
            role=role,
            content=None if content is None else str(content),
            tool_calls=tuple(ToolCall.from_dict(c) for c in d.get("tool_calls") or ()),
            tool_call_id=d.get("tool_call_id"),
            name=d.get("name"),
        )


@attrs.frozen(slots=True)
class Usage:
    """Tokens a call used and, where the price is known, what it cost in US dollars."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@attrs.frozen(slots=True)
class ChatRequest:
    """One model call.

    Attributes:
        model: a litellm model string (``openai/gpt-4o-mini``, ``anthropic/...``) or
            ``PROVIDER/name`` for a registered provider.
        messages: the conversation so far, system prompt first.
        tools: OpenAI-style function schemas (``{"type": "function", "function": {...}}``).
        temperature, max_tokens: sampling settings; None leaves the provider's default.
        response_format: e.g. ``{"type": "json_object"}``, when the agent wants JSON.
        api_base: the endpoint, from trusted configuration only (never room variables).
        timeout_s: the HTTP timeout for this call.
        idempotency_key: the attempt's key plus the turn, for providers that deduplicate.
        metadata: who is asking (``agent``, ``room``, ``node``); for routing and tracing,
            never sent as part of the prompt.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    response_format: Mapping[str, Any] | None = None
    api_base: str | None = None
    timeout_s: float | None = None
    idempotency_key: str | None = None
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class ChatResponse:
    """The assistant's reply to a :class:`ChatRequest`."""

    message: Message
    usage: Usage
    model: str
    finish_reason: str | None = None


@runtime_checkable
class ChatModel(Protocol):
    """Anything that can answer a :class:`ChatRequest`."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer *request*.

        Raises:
            CompletionError: the provider failed or replied unusably; ``retryable`` and
                ``retry_after_s`` say whether and when to try again.
        """
        ...
