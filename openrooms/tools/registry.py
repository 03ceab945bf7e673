"""The tool registry and the ``@tool`` decorator."""

from __future__ import annotations

import builtins
import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar, overload

from openrooms.errors import ToolNotFoundError
from openrooms.schema import check_schema
from openrooms.tools.base import ArgKind, BaseTool, Tool, schema_from_signature

__all__ = ["ToolRegistry", "default_tools", "tool", "validating_with", "validation_tools"]

F = TypeVar("F", bound=Callable[..., Any])


class ToolRegistry:
    """Maps tool names to :class:`Tool` objects."""

    def __init__(self, tools: Mapping[str, Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = dict(tools or {})

    def register(self, tool: Tool | BaseTool, *, replace: bool = False) -> Tool:
        """Add *tool* (a :class:`Tool`, or a :class:`BaseTool` instance).

        Raises:
            ValueError: the name is taken (and *replace* is false) or the schema is invalid.
        """
        if isinstance(tool, BaseTool):
            tool = tool.as_tool()
        if tool.name in self._tools and not replace:
            raise ValueError(
                f"tool {tool.name!r} is already registered; pass replace=True to override"
            )
        problems = check_schema(tool.parameters, f"tool {tool.name!r} parameters")
        if problems:
            raise ValueError("; ".join(str(p) for p in problems))
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool called *name*. Raises ToolNotFoundError if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFoundError(name, list(self._tools)) from None

    def find(self, name: str) -> Tool | None:
        """The tool called *name*, or None."""
        return self._tools.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._tools)

    def list(self) -> list[Tool]:
        """Registered tools, sorted by name."""
        return [self._tools[n] for n in self.names()]

    def describe(self) -> builtins.list[dict[str, Any]]:
        """Every tool as ``{name, description, parameters}``, sorted by name (what
        ``GET /api/tools`` and models are shown)."""
        return [
            {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
            for t in self.list()
        ]

    def copy(self) -> ToolRegistry:
        """An independent registry with the same tools."""
        return ToolRegistry(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.list())


default_tools = ToolRegistry()
"""The process-wide registry: built-ins and everything ``@tool`` registers by default."""

_validating: ContextVar[ToolRegistry | None] = ContextVar("openrooms_validating", default=None)


def validation_tools() -> ToolRegistry:
    """The registry workflows being built now check their tool names against:
    :data:`default_tools`, unless :func:`validating_with` says otherwise."""
    return _validating.get() or default_tools


@contextlib.contextmanager
def validating_with(tools: ToolRegistry | None) -> Iterator[None]:
    """Check tool names against *tools* (None: :data:`default_tools`) in this block.

    ``WorkflowBuilder.build(tools=...)``, ``load_workflow(path, tools=...)`` and a
    :class:`~openrooms.Runtime` loading stored workflows use it, so a workflow can name
    tools that live only in a runtime's own registry.
    """
    token = _validating.set(tools)
    try:
        yield
    finally:
        _validating.reset(token)


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = ...,
    description: str | None = ...,
    registry: ToolRegistry | None = ...,
    replace: bool = ...,
    templating: Mapping[str, ArgKind] | None = ...,
) -> Callable[[F], F]: ...
def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    registry: ToolRegistry | None = None,
    replace: bool = False,
    templating: Mapping[str, ArgKind] | None = None,
) -> F | Callable[[F], F]:
    """Register a Python function as a tool; its argument schema comes from its type hints.

    Example::

        @tool
        def lookup_order(order_id: str, ctx: ToolContext) -> dict:
            '''Fetch an order by id.'''
            return {"id": order_id, "key": ctx.idempotency_key}

    Args:
        name: the tool's name (default: the function's name).
        description: default: the first paragraph of the docstring.
        registry: where to register (default: :data:`default_tools`).
        replace: allow replacing a tool of the same name.
        templating: the arguments it parses as code or a URL, e.g. ``{"query": "code"}``
            (see :data:`~openrooms.tools.base.ArgKind`).

    Raises:
        TypeError: a parameter has no JSON-describable type hint.
        ValueError: the name is taken and *replace* is false, or *templating* names an
            unknown parameter or kind.
    """

    def decorate(f: F) -> F:
        schema, context_param = schema_from_signature(f)
        doc = inspect.getdoc(f) or ""
        desc = description if description is not None else doc.split("\n\n", 1)[0].strip()
        (registry or default_tools).register(
            Tool(
                name=name or f.__name__,
                description=desc,
                parameters=schema,
                fn=f,
                context_param=context_param,
                templating=dict(templating or {}),
            ),
            replace=replace,
        )
        return f

    return decorate(fn) if fn is not None else decorate
