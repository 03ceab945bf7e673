"""``agent``: a model with a tool-calling loop, a conversation thread and optional JSON output.

::

    agents:
      triager:
        model: openai/gpt-4o-mini
        system_prompt: You sort support tickets.
        tools: [lookup_order]
    nodes:
      classify:
        type: agent
        agent: triager
        prompt: "Ticket: {{ vars.ticket }}"
        output_schema: {type: object, required: [label], properties: {label: {enum: [refund, bug]}}}
        output: triage            # guards then branch on output.label

Every model call is committed as ``LLM_CALLED`` (model, turn, latency, tokens, cost and
the reply) and every tool call as ``TOOL_CALLED`` the moment it returns, through the
node's journal; a re-executed attempt (after a crash) or a replay reuses them in order,
so the transcript is never left with tool calls that have no results. Only the
agent's own ``tools`` can be called: any other call is refused, logged, and answered
to the model as an error, never executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from openrooms import deadline
from openrooms._wording import did_you_mean
from openrooms.errors import CompletionError, InputError, Problem, SchemaValidationError
from openrooms.events import ErrorInfo, EventType, Level
from openrooms.expressions import Template, compile_template
from openrooms.nodes.base import (
    CONFIG_NAMES,
    LogRecord,
    NodeContext,
    NodeExecutor,
    Outcome,
    unknown_keys,
)
from openrooms.nodes.builtin import _template, call_tool
from openrooms.schema import Schema, check_schema, compile_schema

if TYPE_CHECKING:
    from openrooms.llm import ChatRequest, ChatResponse, Message
    from openrooms.llm.registry import ModelRegistry
    from openrooms.workflow import AgentConfig, Node, Workflow

__all__ = ["AgentExecutor", "PreparedAgent"]

MAX_TOOL_RESULT_CHARS = 20_000
"""A tool result longer than this (as JSON) is cut before the model sees it (the log's own
limit is the runtime config's ``tool_results.max_logged_bytes``)."""


@attrs.frozen(slots=True)
class PreparedAgent:
    """An ``agent`` node's compiled config."""

    agent: str
    prompt: Template | None
    thread: str
    output_schema: Mapping[str, Any] | None
    compiled_output: Schema | None = None


class AgentExecutor(NodeExecutor):
    """Runs an agent: model turns and tool calls until a final answer or ``max_turns``."""

    labels = frozenset({"ok"})

    _KEYS = frozenset({"agent", "prompt", "thread", "output_schema"})

    def validate(self, node: Node, path: str) -> list[Problem]:
        problems = unknown_keys(node, path, self._KEYS)
        agent = node.config.get("agent")
        if not isinstance(agent, str) or not agent:
            problems.append(
                Problem(f"{path}.agent", "an 'agent' node needs 'agent': an agent name")
            )
        _template(node.config.get("prompt"), f"{path}.prompt", problems)
        thread = node.config.get("thread")
        if thread is not None and (not isinstance(thread, str) or not thread):
            problems.append(Problem(f"{path}.thread", "expected a thread name"))
        schema = node.config.get("output_schema")
        if schema is not None:
            problems.extend(check_schema(schema, f"{path}.output_schema"))
        return problems

    def validate_in(self, workflow: Workflow, node: Node, path: str) -> list[Problem]:
        name = node.config["agent"]
        if name in workflow.agents:
            return []
        hint = did_you_mean(name, workflow.agents, "declare it under 'agents'")
        return [Problem(f"{path}.agent", f"unknown agent {name!r}", hint)]

    def prepare(self, node: Node) -> PreparedAgent:
        prompt = node.config.get("prompt")
        return PreparedAgent(
            agent=node.config["agent"],
            prompt=None if prompt is None else compile_template(prompt, names=CONFIG_NAMES),
            thread=node.config.get("thread") or node.config["agent"],
            output_schema=node.config.get("output_schema"),
            compiled_output=(
                None
                if node.config.get("output_schema") is None
                else compile_schema(node.config["output_schema"])
            ),
        )

    async def warm_up(self, ctx: NodeContext) -> None:
        """Let the agent's model load what its first call needs (litellm's 4 to 7 s import).

        The runner calls this before the node's ``timeout_s`` starts, so a slow import is
        never mistaken for a slow provider. Never raises.
        """
        prepared: PreparedAgent = ctx.prepared
        if ctx.workflow is None or prepared.agent not in ctx.workflow.agents:
            return
        model_string = ctx.workflow.agents[prepared.agent].model
        warm_up = getattr(_models(ctx).resolve(model_string), "warm_up", None)
        if warm_up is not None:
            with contextlib.suppress(Exception):
                await warm_up(model_string)

    async def execute(self, ctx: NodeContext) -> Outcome:
        from openrooms.llm import Message

        prepared: PreparedAgent = ctx.prepared
        assert ctx.workflow is not None, "agent nodes run inside a workflow"
        agent = ctx.workflow.agents[prepared.agent]
        prompt = None if prepared.prompt is None else str(prepared.prompt.render(ctx.scope))
        journal = ctx.journal
        history = journal.messages(prepared.thread) if journal else ()
        added: list[Message] = []
        if prompt:
            added.append(Message("user", prompt))
        loop = _Loop(ctx, agent, prepared)
        corrected = False
        for turn in range(1, agent.max_turns + 1):
            reply, record = await loop.model_turn(turn, [*history, *added])
            message = reply.message
            added.append(message)
            if message.tool_calls:
                # durable before any tool runs, so a resumed attempt matches results to calls
                await loop.commit(record)
                for call in message.tool_calls:
                    added.append(await loop.tool_turn(call))
                continue
            answer: Any = message.content or ""
            if prepared.output_schema is not None:
                assert prepared.compiled_output is not None
                try:
                    answer = _structured(answer, prepared.compiled_output)
                except SchemaValidationError as exc:
                    await loop.commit(record)
                    if corrected:
                        raise
                    corrected = True  # one corrective turn, then the answer stands or fails
                    added.append(Message("user", _correction(exc, prepared.output_schema)))
                    continue
            # The final answer is logged with the node's completion, in the same commit: a
            # crash before it costs one repeated model call, and every turn saves two
            # durable writes.
            records = tuple(r for r in (record, loop.remember(added)) if r is not None)
            return Outcome.ok(answer, records=records)
        raise CompletionError(
            agent.model,
            f"agent {prepared.agent!r} used all {agent.max_turns} turns without a final answer",
        )


class _Loop:
    """One attempt's model and tool calls, each through the journal."""

    def __init__(self, ctx: NodeContext, agent: AgentConfig, prepared: PreparedAgent) -> None:
        self.ctx, self.agent, self.prepared = ctx, agent, prepared

    def _tool_schemas(self) -> tuple[dict[str, Any], ...]:
        schemas = []
        for name in self.agent.tools:
            tool = self.ctx.tools.find(name)
            if tool is None:
                continue
            schemas.append(
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": dict(tool.parameters),
                    },
                }
            )
        return tuple(schemas)

    async def model_turn(
        self, turn: int, conversation: list[Message]
    ) -> tuple[ChatResponse, LogRecord | None]:
        """The model's reply for this turn, and its ``LLM_CALLED`` record to log (None when
        the reply was reused from the journal, which has it already)."""
        from openrooms.llm import ChatRequest, ChatResponse, Message, Usage

        ctx, agent = self.ctx, self.agent
        journal = ctx.journal
        if journal is not None:
            recorded = journal.take(EventType.LLM_CALLED, lambda e: e.error is None)
            if recorded is not None:
                data = recorded.data
                reused = ChatResponse(
                    Message.from_dict(data["response"]),
                    Usage(**data.get("usage", {})),
                    str(data.get("model", agent.model)),
                    data.get("finish_reason"),
                )
                return reused, None
        messages = [Message("system", agent.system_prompt)] if agent.system_prompt else []
        messages.extend(conversation)
        response_format = (
            {"type": "json_object"} if self.prepared.output_schema is not None else None
        )
        request = ChatRequest(
            model=agent.model,
            messages=tuple(messages),
            tools=self._tool_schemas(),
            temperature=agent.temperature,
            max_tokens=agent.max_tokens,
            response_format=response_format,
            api_base=_api_base(ctx, self.prepared.agent, agent.api_base),
            timeout_s=ctx.node.timeout_s,
            idempotency_key=f"{ctx.idempotency_key}:{turn}",
            metadata={"agent": self.prepared.agent, "room": ctx.room.room_id, "node": ctx.node.id},
        )
        model = _models(ctx).resolve(agent.model)
        started = time.perf_counter()
        base = {
            "model": agent.model,
            "turn": turn,
            "agent": self.prepared.agent,
            "request": _request_summary(request),
        }
        try:
            reply = await model.complete(request)
        except asyncio.CancelledError:
            # cut off (by the node's timeout_s, or a stopped run): the call was still made
            _commit_quietly(ctx, _cut_off(base, (time.perf_counter() - started) * 1000))
            raise
        except CompletionError as exc:
            elapsed = (time.perf_counter() - started) * 1000
            data = {**base, "retryable": exc.retryable, "status": exc.status}
            await _acommit(
                ctx,
                LogRecord(
                    EventType.LLM_CALLED,
                    data,
                    Level.ERROR,
                    elapsed,
                    ErrorInfo.from_exception(exc, with_traceback=False),
                ),
            )
            raise
        elapsed = (time.perf_counter() - started) * 1000
        usage = reply.usage
        record = LogRecord(
            EventType.LLM_CALLED,
            {
                **base,
                "latency_ms": round(elapsed, 3),
                "usage": {
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost_usd": usage.cost_usd,
                },
                "finish_reason": reply.finish_reason,
                "response": reply.message.to_dict(),
            },
            Level.INFO,
            elapsed,
        )
        return reply, record

    async def commit(self, record: LogRecord | None) -> None:
        """Make a turn's record durable now (a tool round trip or a correction follows)."""
        if record is not None:
            await _acommit(self.ctx, record)

    async def tool_turn(self, call: Any) -> Message:
        """Run (or reuse) one tool call the model asked for; the tool message answering it."""
        from openrooms.llm import Message

        ctx = self.ctx
        if call.name not in self.agent.tools:
            data = {"tool": call.name, "call_id": call.id, "refused": True}
            journal = ctx.journal
            if (
                journal is None
                or journal.take(EventType.TOOL_CALLED, lambda e: e.data.get("call_id") == call.id)
                is None
            ):
                await _acommit(
                    ctx,
                    LogRecord(
                        EventType.TOOL_CALLED,
                        data,
                        Level.WARN,
                        None,
                        ErrorInfo(
                            "ToolNotAllowedError",
                            f"agent {self.prepared.agent!r} may not call {call.name!r}; "
                            f"its tools: {', '.join(self.agent.tools) or 'none'}",
                        ),
                    ),
                )
            content = {"error": f"tool {call.name!r} is not available to you"}
            return Message("tool", json.dumps(content), tool_call_id=call.id, name=call.name)
        args = call.parsed_arguments(self.agent.model)
        outcome = await call_tool(ctx, call.name, args, call_id=call.id)
        if outcome.is_failure:
            assert outcome.error is not None
            content = {"error": f"{outcome.error.type}: {outcome.error.message}"}
        else:
            content = {"result": outcome.output}
        text = json.dumps(content, ensure_ascii=False)
        if len(text) > MAX_TOOL_RESULT_CHARS:
            text = text[:MAX_TOOL_RESULT_CHARS] + " …[truncated]"
        return Message("tool", text, tool_call_id=call.id, name=call.name)

    def remember(self, added: list[Message]) -> LogRecord | None:
        """The record appending this node's messages to the agent's conversation thread
        (None if the journal has it already, or there is no journal)."""
        journal = self.ctx.journal
        if journal is None or journal.take(EventType.MESSAGES_ADDED) is not None:
            return None
        return LogRecord(
            EventType.MESSAGES_ADDED,
            {"thread": self.prepared.thread, "messages": [m.to_dict() for m in added]},
            Level.DEBUG,
        )


def _api_base(ctx: NodeContext, agent: str, default: str | None) -> str | None:
    """The runtime config's endpoint for *agent*, else the workflow's."""
    if ctx.runtime is not None:
        return ctx.runtime.config.api_bases.get(agent, default)
    return default


def _commit(ctx: NodeContext, record: LogRecord) -> None:
    if ctx.journal is not None:
        ctx.journal.commit(record)


async def _acommit(ctx: NodeContext, record: LogRecord) -> None:
    if ctx.journal is not None:
        await ctx.journal.acommit(record)


def _commit_quietly(ctx: NodeContext, record: LogRecord) -> None:
    """Commit while the attempt is being cancelled: a room already stopped keeps its log."""
    with contextlib.suppress(Exception):
        _commit(ctx, record)


LAST_MESSAGE_CHARS: Final = 2000
"""How much of the newest message an ``LLM_CALLED`` event keeps (its ``request``)."""


def _request_summary(request: ChatRequest) -> dict[str, Any]:
    """What ``LLM_CALLED`` records of the request it sent: its shape and its newest message
    (the prompt or the tool results this call answers), that message's text cut to
    LAST_MESSAGE_CHARS characters. The whole conversation is in the thread's
    ``MESSAGES_ADDED`` events; logging it again on every call would grow the log with the
    square of its length."""
    last = request.messages[-1].to_dict() if request.messages else None
    if last is not None:
        text = last.get("content")
        if isinstance(text, str) and len(text) > LAST_MESSAGE_CHARS:
            last["content"] = text[:LAST_MESSAGE_CHARS] + "\u2026"
        last.pop("tool_calls", None)  # an assistant's calls are in the reply that made them
    return {
        "messages": len(request.messages),
        "last_message": last,
        "tools": [t["function"]["name"] for t in request.tools],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "json": request.response_format is not None,
    }


def _cut_off(base: Mapping[str, Any], elapsed_ms: float) -> LogRecord:
    """The ``LLM_CALLED`` record of a call cancelled before it replied (no tokens known)."""
    ended = deadline.expired()
    if ended is not None:
        error = ErrorInfo(
            "TimeoutError",
            f"no reply within the node's timeout_s ({ended.timeout_s:g} s); the call was cut "
            f"off after {elapsed_ms / 1000:.3g} s",
        )
    else:
        error = ErrorInfo(
            "CancelledError", f"the run stopped {elapsed_ms / 1000:.3g} s into the call"
        )
    data = {**base, "retryable": True, "status": None, "latency_ms": round(elapsed_ms, 3)}
    return LogRecord(EventType.LLM_CALLED, data, Level.ERROR, elapsed_ms, error)


def _models(ctx: NodeContext) -> ModelRegistry:
    if ctx.models is not None:
        return ctx.models
    from openrooms.llm.registry import default_models

    return default_models


def _structured(text: str, schema: Schema) -> Any:
    """The final answer parsed as JSON and checked against the node's ``output_schema``."""
    from openrooms.loading import parse_json

    try:  # strict: no duplicate keys, NaN, huge integers or runaway nesting
        value = parse_json(text, source="the agent's answer")
    except InputError as exc:
        where = f", {exc.where}" if exc.where else ""
        raise SchemaValidationError(
            "the agent's answer", [Problem("$", f"not JSON ({exc.message}{where})")]
        ) from None
    schema.validate(value, what="the agent's answer")
    return value


def _correction(exc: SchemaValidationError, schema: Mapping[str, Any]) -> str:
    return (
        f"Your answer was not accepted: {exc}. Reply again with only a JSON value that "
        f"matches this JSON schema: {json.dumps(schema, ensure_ascii=False)}"
    )
