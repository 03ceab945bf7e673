"""Offline runs: scripted model replies and canned tool results from a YAML file.

``openrooms --script FILE run WORKFLOW`` (or ``OPENROOMS_SCRIPT=FILE``) runs a workflow
with no API key and no network: every agent's model answers from the script, and the
tools the script names return its canned results instead of running::

    models:
      triager:                       # an agent name from the workflow
        - content: '{"label": "refund"}'
      writer:
        - match: refund              # optional: only when the last user message contains it
          tool_calls: [{name: calculator, arguments: {expression: "2 * 3"}}]
        - content: All done.
          usage: {prompt_tokens: 120, completion_tokens: 30}
    tools:
      http:                          # results in order; the last one repeats
        - {status: 200, json: {id: A-1001, total: 24.5}}

Replies are used in order per agent (the first unused one whose ``match`` fits), so
concurrent branches of one agent can be told apart by ``match``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from openrooms import loading
from openrooms.errors import CompletionError, Problem, SchemaValidationError
from openrooms.llm.base import ChatRequest, ChatResponse, Message, ToolCall, Usage
from openrooms.llm.registry import ModelRegistry
from openrooms.tools.base import Tool
from openrooms.tools.registry import ToolRegistry

__all__ = ["ScriptBook", "load_script"]

_REPLY_KEYS = frozenset({"content", "tool_calls", "match", "usage"})


class ScriptBook:
    """A :class:`~openrooms.llm.ChatModel` answering each agent from its scripted replies."""

    def __init__(self, replies: Mapping[str, list[Mapping[str, Any]]]) -> None:
        self._replies = {agent: list(items) for agent, items in replies.items()}
        self._used: dict[str, set[int]] = {agent: set() for agent in replies}
        self._lock = threading.Lock()
        self._calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        agent = str(request.metadata.get("agent", ""))
        asked = next((m.content or "" for m in reversed(request.messages) if m.role == "user"), "")
        with self._lock:
            replies = self._replies.get(agent)
            if replies is None:
                raise CompletionError(
                    request.model, f"the script has no replies for agent {agent!r}"
                )
            used = self._used[agent]
            for i, reply in enumerate(replies):
                if i not in used and str(reply.get("match", "")) in asked:
                    used.add(i)
                    self._calls += 1
                    call = self._calls
                    break
            else:
                raise CompletionError(
                    request.model,
                    f"the script for agent {agent!r} has no reply left for: {asked[:80]!r}",
                )
        calls = tuple(
            ToolCall(
                id=f"script_{call}_{j}",
                name=str(c["name"]),
                arguments=c["arguments"]
                if isinstance(c.get("arguments"), str)
                else json.dumps(c.get("arguments") or {}),
            )
            for j, c in enumerate(reply.get("tool_calls") or ())
        )
        usage = reply.get("usage") or {}
        return ChatResponse(
            Message("assistant", reply.get("content"), tool_calls=calls),
            Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
            request.model,
            "tool_calls" if calls else "stop",
        )


def _canned(name: str, results: list[Any], original: Tool | None) -> Tool:
    lock = threading.Lock()
    served = [0]

    async def serve(**_: Any) -> Any:
        with lock:
            i = min(served[0], len(results) - 1)
            served[0] += 1
        return results[i]

    return Tool(
        name=name,
        description=original.description if original else f"{name} (scripted)",
        parameters=original.parameters if original else {"type": "object"},
        fn=serve,
    )


_MAX_TOKENS: Final = 10**12


def _usage_problems(usage: Any, path: str) -> list[Problem]:
    """A reply's ``usage``: token counts a model could report (whole numbers, not negative)."""
    if usage is None:
        return []
    if not isinstance(usage, Mapping):
        return [Problem(path, "expected {prompt_tokens: N, completion_tokens: N}")]
    problems = []
    for key, value in usage.items():
        if key not in ("prompt_tokens", "completion_tokens"):
            problems.append(
                Problem(
                    f"{path}.{key}", "unknown key; usage takes prompt_tokens and completion_tokens"
                )
            )
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKENS:
            problems.append(
                Problem(f"{path}.{key}", f"expected a whole number from 0 to 10**12, got {value!r}")
            )
    return problems


def load_script(path: str | Path, tools: ToolRegistry) -> tuple[ModelRegistry, ToolRegistry]:
    """A model registry answering every model string from the script, and *tools* with the
    scripted tools replaced by canned ones.

    Raises:
        FileNotFoundError: no such file.
        InputError: it cannot be read or does not parse (see :mod:`openrooms.loading`).
        SchemaValidationError: the script is not shaped as the module docstring shows.
    """
    data = loading.load_file(path) or {}
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        raise SchemaValidationError(f"script {path}", [Problem("", "expected a mapping")])
    for key in data:
        if key not in ("models", "tools"):
            problems.append(Problem(str(key), "unknown key; the script has 'models' and 'tools'"))
    models = data.get("models") or {}
    if not isinstance(models, Mapping):
        problems.append(Problem("models", "expected agent name -> list of replies"))
        models = {}
    for agent, replies in models.items():
        if not isinstance(replies, list) or not all(isinstance(r, Mapping) for r in replies):
            problems.append(Problem(f"models.{agent}", "expected a list of replies (mappings)"))
            continue
        for i, r in enumerate(replies):
            problems.extend(_usage_problems(r.get("usage"), f"models.{agent}[{i}].usage"))
            for key in r:
                if key not in _REPLY_KEYS:
                    problems.append(
                        Problem(
                            f"models.{agent}[{i}].{key}",
                            "unknown key",
                            f"replies take: {', '.join(sorted(_REPLY_KEYS))}",
                        )
                    )
    canned = data.get("tools") or {}
    if not isinstance(canned, Mapping):
        problems.append(Problem("tools", "expected tool name -> list of results"))
        canned = {}
    for name, results in canned.items():
        if not isinstance(results, list) or not results:
            problems.append(Problem(f"tools.{name}", "expected a non-empty list of results"))
    if problems:
        raise SchemaValidationError(f"script {path}", problems)
    registry = ModelRegistry(fallback=ScriptBook(models))
    scripted = tools.copy()
    for name, results in canned.items():
        scripted.register(_canned(str(name), list(results), tools.find(str(name))), replace=True)
    return registry, scripted
