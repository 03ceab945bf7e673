"""Helpers for users' tests: in-memory runtimes, a clock the test moves, a scripted model."""

from __future__ import annotations

import inspect
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import attrs

from openrooms._wording import article
from openrooms.backends.memory import MemoryStore
from openrooms.errors import CompletionError
from openrooms.llm.base import ChatModel, ChatRequest, ChatResponse, Message, ToolCall, Usage
from openrooms.registries import Registries
from openrooms.runtime import Runtime
from openrooms.tools import ToolRegistry

__all__ = ["ManualClock", "ScriptStep", "ScriptedModel", "ScriptedReply", "memory_runtime"]


class ManualClock:
    """A millisecond clock that only moves when told to; pass it as ``clock=`` to a Runtime.

    Wait timeouts are decided by this clock, so a test can expire a wait without sleeping.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move the clock forward by *ms*; returns the new time."""
        with self._lock:
            self._now += ms
            return self._now


def memory_runtime(
    *,
    tools: ToolRegistry | None = None,
    clock: ManualClock | None = None,
    registries: Registries | None = None,
) -> Runtime:
    """A runtime over a fresh in-memory store (state and log in one, committed atomically),
    with its own registries (*registries*, else a copy of the defaults) and *tools*."""
    store = MemoryStore()
    if clock is None:
        return Runtime(store, store, tools=tools, registries=registries)
    return Runtime(store, store, tools=tools, clock=clock, registries=registries)


@attrs.frozen(slots=True)
class ScriptedReply:
    """One scripted assistant reply; build it with :meth:`ScriptedModel.text` or ``.call``.

    Attributes:
        message: the assistant message; tool calls with an empty id get ``call_N``.
        usage: the usage to report, or None for the model's default.
        finish_reason: None means ``tool_calls`` when there are calls, else ``stop``.
    """

    message: Message
    usage: Usage | None = None
    finish_reason: str | None = None


ScriptStep: TypeAlias = (
    str | Message | ChatResponse | ScriptedReply | BaseException | Callable[[ChatRequest], Any]
)
"""What a script holds: assistant text, a message, a whole response, an error to raise,
or a function of the request returning one of those (or an awaitable of one)."""


class ScriptedModel(ChatModel):
    """A ChatModel that answers from a script, one step per call, and records each request.

    Steps are used in order:

    * ``str`` — an assistant text reply;
    * :class:`~openrooms.llm.Message` or :class:`ScriptedReply` — that assistant message;
    * :class:`~openrooms.llm.ChatResponse` — returned as it is;
    * an exception instance — raised (e.g. ``CompletionError(..., retryable=True)``);
    * a callable taking the :class:`~openrooms.llm.ChatRequest` — its result (or awaited
      result) is used as the step.

    ::

        model = ScriptedModel([
            ScriptedModel.call("lookup", {"order_id": "A1"}),
            ScriptedModel.call("lookup", "{not json"),          # malformed arguments
            CompletionError("scripted/x", "slow down", retryable=True, status=429),
            ScriptedModel.text("It is 42.", usage=Usage(120, 8)),
        ])
        registry.register_provider("scripted", model)  # agents use model "scripted/anything"

    Tool calls without an id get ``call_1``, ``call_2``, ... in the order they are
    answered, so transcripts are deterministic.

    Args:
        steps: the script.
        usage: the usage reported for replies that do not set their own.

    Attributes:
        requests: every request received, in order (also those answered by an error).
    """

    def __init__(self, steps: Iterable[ScriptStep] = (), *, usage: Usage | None = None) -> None:
        self._steps: deque[ScriptStep] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._answered = 0
        self.usage = usage if usage is not None else Usage()
        self.requests: list[ChatRequest] = []
        self.add(*steps)

    def __repr__(self) -> str:
        return f"ScriptedModel(remaining={self.remaining}, answered={self._answered})"

    # -- building a script -----------------------------------------------------------

    @staticmethod
    def text(content: str, *, usage: Usage | None = None) -> ScriptedReply:
        """An assistant reply with *content* and no tool calls."""
        return ScriptedReply(Message("assistant", content), usage)

    @staticmethod
    def call(
        name: str,
        args: Mapping[str, Any] | str | None = None,
        id: str | None = None,
        *,
        content: str | None = None,
        usage: Usage | None = None,
    ) -> ScriptedReply:
        """An assistant reply asking for one tool call.

        Args:
            name: the tool.
            args: the arguments: a dict (sent as JSON) or raw text, which may be malformed
                JSON on purpose.
            id: the call id; None assigns ``call_N`` when the reply is given.
            content: text sent along with the call.
            usage: this reply's usage.
        """
        return ScriptedModel.calls((name, args, id), content=content, usage=usage)

    @staticmethod
    def calls(
        *calls: tuple[str, Mapping[str, Any] | str | None]
        | tuple[str, Mapping[str, Any] | str | None, str | None]
        | ToolCall,
        content: str | None = None,
        usage: Usage | None = None,
    ) -> ScriptedReply:
        """An assistant reply asking for several tool calls at once (``(name, args[, id])``)."""
        built: list[ToolCall] = []
        for call in calls:
            if isinstance(call, ToolCall):
                built.append(call)
                continue
            name, args, *rest = call
            raw = args if isinstance(args, str) else json.dumps(dict(args or {}))
            built.append(ToolCall(id=(rest[0] if rest else None) or "", name=name, arguments=raw))
        return ScriptedReply(Message("assistant", content, tool_calls=tuple(built)), usage)

    def add(self, *steps: ScriptStep) -> None:
        """Append steps to the script.

        Raises:
            TypeError: a step is none of the kinds listed above.
            ValueError: a scripted message is not from the assistant.
        """
        for step in steps:
            _check_step(step)
        with self._lock:
            self._steps.extend(steps)

    @property
    def remaining(self) -> int:
        """Steps not used yet."""
        with self._lock:
            return len(self._steps)

    # -- answering ---------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Record *request* and answer with the next step.

        Raises:
            CompletionError: the script is exhausted (not retryable), or the step is one.
            BaseException: whatever exception the step holds.
        """
        with self._lock:
            self.requests.append(request)
            if not self._steps:
                answered = self._answered
                step: Any = None
            else:
                self._answered += 1
                step = self._steps.popleft()
        if step is None:
            raise CompletionError(
                request.model,
                f"script exhausted after {answered} replies; add more steps to the ScriptedModel",
                retryable=False,
            )
        if callable(step) and not isinstance(step, BaseException):
            step = step(request)
            if inspect.isawaitable(step):
                step = await step
            _check_step(step, from_callable=True)
        return self._answer(request, step)

    def _answer(self, request: ChatRequest, step: Any) -> ChatResponse:
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, ChatResponse):
            return step
        if isinstance(step, str):
            step = ScriptedReply(Message("assistant", step))
        elif isinstance(step, Message):
            step = ScriptedReply(step)
        message = self._with_ids(step.message)
        finish = step.finish_reason or ("tool_calls" if message.tool_calls else "stop")
        return ChatResponse(
            message, step.usage if step.usage is not None else self.usage, request.model, finish
        )

    def _with_ids(self, message: Message) -> Message:
        if all(call.id for call in message.tool_calls):
            return message
        with self._lock:
            calls = tuple(
                call if call.id else attrs.evolve(call, id=f"call_{next(self._ids)}")
                for call in message.tool_calls
            )
        return attrs.evolve(message, tool_calls=calls)


def _check_step(step: object, *, from_callable: bool = False) -> None:
    kinds = (str, Message, ChatResponse, ScriptedReply, BaseException)
    if isinstance(step, kinds) or (callable(step) and not from_callable):
        message = step.message if isinstance(step, ScriptedReply | ChatResponse) else step
        if isinstance(message, Message) and message.role != "assistant":
            raise ValueError(f"a scripted reply must be an assistant message, not {message.role!r}")
        return
    origin = "a script callable returned" if from_callable else "a script step is"
    raise TypeError(
        f"{origin} {article(type(step).__name__)}; expected str, Message, ChatResponse, "
        f"ScriptedReply, an exception or a callable(ChatRequest)"
    )
