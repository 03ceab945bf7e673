"""Workflow definitions: nodes, transitions, retry policies, and the builder.

A :class:`Workflow` is validated when it is constructed (from Python, the builder or a
file), so every ``Workflow`` object that exists is runnable; its compiled
:class:`~openrooms.plan.Plan` is what the engine executes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import attrs

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from openrooms.plan import Plan
    from openrooms.registries import Registries
    from openrooms.tools.registry import ToolRegistry

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ROOMS",
    "DEFAULT_MAX_STEPS",
    "MAX_ROOMS_PER_ROOT",
    "MAX_ROOM_DEPTH",
    "AgentConfig",
    "Node",
    "RetryPolicy",
    "Transition",
    "Workflow",
    "WorkflowBuilder",
    "load_workflow",
]

DEFAULT_MAX_STEPS: Final = 10_000
DEFAULT_MAX_DEPTH: Final = 8
"""How deep sub-workflow rooms may nest under a root room, unless configured."""
DEFAULT_MAX_ROOMS: Final = 1_000
"""How many sub-workflow rooms one root room may create in all, unless configured."""
MAX_ROOM_DEPTH: Final = 32
"""The highest ``max_depth`` anything may set (each level is a nested run)."""
MAX_ROOMS_PER_ROOT: Final = 1_000_000
"""The highest ``max_rooms`` anything may set."""


def _frozen_dict(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return dict(value) if value else {}


@attrs.frozen(slots=True)
class RetryPolicy:
    """How a failing node is retried before its ``on: error`` / ``on: timeout`` routes apply.

    Attributes:
        max_attempts: attempts in all, the first included (1 means no retry).
        backoff_s: delay before the second attempt.
        multiplier: each later delay is the previous one times this.
        max_delay_s: cap on any single delay.
        jitter: a fraction in [0, 1]; each delay is spread by up to ±jitter of itself,
            deterministically per room, node and attempt.
        retry_on: outcome labels (``error``, ``timeout``) or exception type names
            (``ToolError``, ``ConnectionError``) that are retried; anything else is not.
    """

    max_attempts: int = 3
    backoff_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 60.0
    jitter: float = 0.0
    retry_on: tuple[str, ...] = ("error", "timeout")

    def delay_s(self, attempt: int, spread: float = 0.0) -> float:
        """The delay after failed attempt number *attempt* (from 1).

        Args:
            attempt: the attempt that just failed.
            spread: a number in [-1, 1] that picks the point in the jitter band.

        Returns:
            seconds to wait before the next attempt.
        """
        try:
            base = min(self.backoff_s * self.multiplier ** (attempt - 1), self.max_delay_s)
        except OverflowError:  # the multiplier's power is past any float: the cap applies
            base = self.max_delay_s
        return max(0.0, base * (1.0 + self.jitter * spread))

    def retries(self, label: str, error_type: str | None) -> bool:
        """Whether a failure with this outcome *label* and exception type is retried."""
        return label in self.retry_on or (error_type is not None and error_type in self.retry_on)


@attrs.frozen(slots=True)
class Node:
    """One state of the machine.

    Attributes:
        id: unique within the workflow.
        type: a registered node type (``set``, ``decision``, ``tool``, ``wait``, ``end``, ...).
        config: the type's own settings (``assign`` for ``set``, ``tool`` and ``args`` for
            ``tool``, ...).
        output: the variable that receives the node's output, if any.
        retry: how failures are retried; None means a single attempt.
        timeout_s: deadline for one attempt; an overrun fails it with outcome ``timeout``.
        description: free text for people.
    """

    id: str
    type: str
    config: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    output: str | None = None
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    description: str = ""


@attrs.frozen(slots=True)
class Transition:
    """An edge of the machine, written ``{from, to, on, when}`` in files.

    Attributes:
        source: the node it leaves.
        target: the node it enters.
        on: the outcome it accepts: ``ok`` (default), ``error``, ``timeout`` or a custom label.
        when: a guard expression; None is the default for its source and outcome.
    """

    source: str
    target: str
    on: str = "ok"
    when: str | None = None


@attrs.frozen(slots=True)
class AgentConfig:
    """A named agent a workflow's ``agent`` nodes can use.

    Attributes:
        model: a litellm model string, e.g. ``openai/gpt-4o-mini``.
        system_prompt: the agent's system message.
        tools: names of the tools the agent may call; nothing else can be called.
        temperature: sampling temperature.
        max_tokens: completion token limit per call, if any.
        max_turns: model calls per node execution, tool round trips included.
        api_base: an optional provider endpoint (trusted configuration only).
    """

    model: str
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    temperature: float = 0.0
    max_tokens: int | None = None
    max_turns: int = 8
    api_base: str | None = None


@attrs.frozen(slots=True)
class Budget:
    """Per-room limits beyond ``max_steps``; a breach fails the room, or sends it to a
    ``wait`` node when ``on_exceeded`` names one (a person decides what happens next).

    Attributes:
        max_tokens: prompt plus completion tokens over all model calls.
        max_cost_usd: model cost, where the provider's price is known.
        max_wall_s: seconds since the room was created, checked before each node.
        on_exceeded: a ``wait`` node to go to instead of failing.
        max_depth: how deep ``subworkflow`` rooms may nest below a root room of this
            workflow (default: the runtime's ``rooms.max_depth``, 8). Sub-workflows inherit
            it; their own can only lower it. Exceeding it fails the node that would nest.
        max_rooms: how many ``subworkflow`` rooms a root room of this workflow may create
            in all, at any depth (default: the runtime's ``rooms.max_rooms``, 1,000);
            inherited like ``max_depth``.
    """

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_wall_s: float | None = None
    on_exceeded: str | None = None
    max_depth: int | None = None
    max_rooms: int | None = None

    def breach(self, usage: Mapping[str, Any], elapsed_ms: int) -> tuple[str, float, float] | None:
        """The first limit *usage* (and *elapsed_ms* since creation) is newly over, if any:
        ``(name, limit, used)``. A limit already reported (``usage["exceeded"]``) is not
        reported again: whoever answered the ``on_exceeded`` wait chose to go on."""
        done = usage.get("exceeded", ())
        tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        if self.max_tokens is not None and tokens > self.max_tokens and "tokens" not in done:
            return ("tokens", self.max_tokens, tokens)
        cost = usage.get("cost_usd", 0.0)
        if self.max_cost_usd is not None and cost > self.max_cost_usd and "cost_usd" not in done:
            return ("cost_usd", self.max_cost_usd, cost)
        wall = self.max_wall_s
        if wall is not None and elapsed_ms > wall * 1000 and "wall_s" not in done:
            return ("wall_s", wall, elapsed_ms / 1000)
        return None


@attrs.frozen(slots=True)
class Workflow:
    """An immutable, versioned, validated workflow definition.

    Construction validates the whole table and raises
    :class:`~openrooms.errors.WorkflowValidationError` listing every problem at once.

    Attributes:
        id: ``[a-z0-9_-]+``; with ``version``, the key rooms pin.
        nodes: node id -> :class:`Node`, in declaration order.
        transitions: the ordered transition table; the first matching entry wins.
        version: an integer from 1.
        description: free text.
        initial: the first node; None means the first declared node.
        variables: default variables, overridden by a room's own.
        max_steps: node executions a room may make before it fails as a runaway loop.
        agents: named agent configurations.
        budget: per-room token, cost and time limits, if any.
        inputs: a JSON schema for the variables a caller may pass (``type: object`` and
            ``additionalProperties: false`` implied); None takes any variables.
    """

    id: str
    nodes: Mapping[str, Node]
    transitions: tuple[Transition, ...] = ()
    version: int = 1
    description: str = ""
    initial: str | None = None
    variables: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    max_steps: int = DEFAULT_MAX_STEPS
    agents: Mapping[str, AgentConfig] = attrs.field(factory=dict, converter=_frozen_dict)
    budget: Budget | None = None
    inputs: Mapping[str, Any] | None = None
    plan: Plan = attrs.field(init=False, eq=False, repr=False, hash=False)

    def __attrs_post_init__(self) -> None:
        from openrooms.plan import build_plan

        object.__setattr__(self, "plan", build_plan(self))

    @property
    def start(self) -> str:
        """The node a room starts at."""
        return self.initial if self.initial is not None else next(iter(self.nodes))

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        tools: ToolRegistry | None = None,
        registries: Registries | None = None,
    ) -> Workflow:
        """Build from the file format (as parsed from YAML or JSON); node types and tool
        names are checked against *registries* (a runtime's: ``rt.registries``) and tool
        names against *tools* if given (default: the registries in force, see
        :func:`openrooms.registries.validating_with`).

        Raises:
            WorkflowValidationError: listing every problem with its path.
        """
        from openrooms import serde

        with _validating(tools, registries):
            return serde.workflow_from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The file format of this workflow; ``Workflow.from_dict`` of it is equal to it."""
        from openrooms import serde

        return serde.workflow_to_dict(self)

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        source: str = "<string>",
        tools: ToolRegistry | None = None,
        registries: Registries | None = None,
    ) -> Workflow:
        """Parse YAML (or JSON, which is YAML) text; node types and tools are checked as
        :meth:`from_dict` says.

        Raises:
            WorkflowValidationError: the text does not parse or the workflow is invalid.
        """
        from openrooms import serde

        with _validating(tools, registries):
            return serde.workflow_from_text(text, source=source)


def _validating(
    tools: ToolRegistry | None, registries: Registries | None
) -> AbstractContextManager[None]:
    """Validation against *registries* (default: those in force), with *tools* if given."""
    import contextlib

    from openrooms.registries import validating_with, validation_registries

    if tools is None and registries is None:
        return contextlib.nullcontext()
    base = registries if registries is not None else validation_registries()
    return validating_with(base if tools is None else base.replace(tools=tools))


def load_workflow(
    path: str | Path,
    *,
    tools: ToolRegistry | None = None,
    registries: Registries | None = None,
) -> Workflow:
    """Load a workflow from a ``.yaml``, ``.yml`` or ``.json`` file; node types and tools
    are checked against *registries* (a runtime's: ``rt.registries``), tool names against
    *tools* if given (default: the registries in force, the process-wide defaults outside
    a runtime).

    Raises:
        FileNotFoundError: there is no such file.
        WorkflowValidationError: the file is not UTF-8, is over the size limit, does not
            parse, or the workflow is invalid (see :mod:`openrooms.loading`).
    """
    from openrooms import serde

    with _validating(tools, registries):
        return serde.workflow_from_file(path)


class WorkflowBuilder:
    """Builds a :class:`Workflow` in Python, one node and transition at a time.

    Example::

        wf = (WorkflowBuilder("counter", variables={"i": 0})
              .set("inc", assign={"i": "{{ vars.i + 1 }}"})
              .end("done")
              .transition("inc", "inc", when="vars.i < 3")
              .transition("inc", "done")
              .build())

    ``inputs`` is a JSON schema for the variables a caller may pass (see
    :attr:`Workflow.inputs`), e.g. ``inputs={"properties": {"n": {"type": "integer"}}}``.
    """

    def __init__(
        self,
        id: str,
        *,
        version: int = 1,
        description: str = "",
        variables: Mapping[str, Any] | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        initial: str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        self._fields: dict[str, Any] = {
            "id": id,
            "version": version,
            "description": description,
            "variables": dict(variables or {}),
            "max_steps": max_steps,
            "initial": initial,
            "inputs": dict(inputs) if isinstance(inputs, Mapping) else inputs,
        }
        self._nodes: dict[str, Node] = {}
        self._transitions: list[Transition] = []
        self._agents: dict[str, AgentConfig] = {}

    def node(
        self,
        id: str,
        type: str,
        *,
        output: str | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        description: str = "",
        **config: Any,
    ) -> Self:
        """Add a node of any registered type; other keyword arguments are its config."""
        if isinstance(retry, Mapping):
            settings: dict[str, Any] = dict(retry)
            if "retry_on" in settings:
                settings["retry_on"] = tuple(settings["retry_on"])
            retry = RetryPolicy(**settings)
        self._nodes[id] = Node(
            id=id,
            type=type,
            config=config,
            output=output,
            retry=retry,
            timeout_s=timeout_s,
            description=description,
        )
        return self

    def set(self, id: str, assign: Mapping[str, Any], **common: Any) -> Self:
        """Add a ``set`` node assigning variables (values may be ``{{ }}`` templates)."""
        return self.node(id, "set", assign=dict(assign), **common)

    def decision(self, id: str, **common: Any) -> Self:
        """Add a ``decision`` node: it routes by its transitions' guards only."""
        return self.node(id, "decision", **common)

    def tool(
        self, id: str, tool: str, args: Mapping[str, Any] | None = None, **common: Any
    ) -> Self:
        """Add a ``tool`` node calling the registered tool *tool* with templated *args*."""
        return self.node(id, "tool", tool=tool, args=dict(args or {}), **common)

    def wait(
        self,
        id: str,
        *,
        prompt: str | None = None,
        schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        **common: Any,
    ) -> Self:
        """Add a ``wait`` node: the room waits for input, optionally validated by a JSON schema."""
        config: dict[str, Any] = {}
        if prompt is not None:
            config["prompt"] = prompt
        if schema is not None:
            config["schema"] = dict(schema)
        return self.node(id, "wait", timeout_s=timeout_s, **config, **common)

    def end(self, id: str, *, status: str = "completed", reason: str | None = None) -> Self:
        """Add an ``end`` node finishing the room as ``completed`` or ``failed``."""
        config: dict[str, Any] = {} if status == "completed" else {"status": status}
        if reason is not None:
            config["reason"] = reason
        return self.node(id, "end", **config)

    def agent(self, id: str, *, agent: str, prompt: str, **common: Any) -> Self:
        """Add an ``agent`` node running the named agent on a templated prompt."""
        return self.node(id, "agent", agent=agent, prompt=prompt, **common)

    def add_agent(self, name: str, config: AgentConfig) -> Self:
        """Declare a named agent for ``agent`` nodes."""
        self._agents[name] = config
        return self

    def transition(
        self, source: str, target: str, *, on: str = "ok", when: str | None = None
    ) -> Self:
        """Append a transition; order matters, the first matching one wins."""
        self._transitions.append(Transition(source=source, target=target, on=on, when=when))
        return self

    def transitions(self, *pairs: Sequence[str]) -> Self:
        """Append default ``ok`` transitions from ``(source, target)`` pairs."""
        for source, target in pairs:
            self.transition(source, target)
        return self

    def build(
        self, *, tools: ToolRegistry | None = None, registries: Registries | None = None
    ) -> Workflow:
        """Return the validated workflow; node types and tools are checked against
        *registries* (a runtime's: ``rt.registries``), tool names against *tools* if given
        (default: the registries in force, the process-wide defaults outside a runtime).

        Raises:
            WorkflowValidationError: listing every problem at once.
        """
        with _validating(tools, registries):
            return Workflow(
                nodes=dict(self._nodes),
                transitions=tuple(self._transitions),
                agents=dict(self._agents),
                **self._fields,
            )
