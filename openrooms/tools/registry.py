"""The tool registry and the ``@tool`` decorator.

Every :class:`~openrooms.Runtime` has its own :class:`ToolRegistry` (``rt.tools``), a copy
of :data:`default_tools` made when the runtime is created. The built-in tools are
registered by name and their modules imported when a tool is first looked up.
"""

from __future__ import annotations

import builtins as py  # `list` is also a method name below
import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from openrooms.errors import ToolNotFoundError
from openrooms.schema import check_schema
from openrooms.tools.base import ArgKind, BaseTool, Tool, schema_from_signature

if TYPE_CHECKING:
    from openrooms.tools.destination import HttpPolicy

__all__ = ["ToolRegistry", "default_tools", "tool", "validating_with", "validation_tools"]

F = TypeVar("F", bound=Callable[..., Any])


class _Lazy:
    """A tool whose module is imported when it is first looked up."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[], Tool]) -> None:
        self.load = load


def _import_tool(spec: str) -> Callable[[], Tool]:
    def load() -> Tool:
        module, name = spec.split(":")
        found: Tool = getattr(importlib.import_module(module), name)
        return found

    return load


def http_loader(policy: HttpPolicy | None = None) -> Callable[[], Tool]:
    """A loader of the ``http`` tool with *policy* (None: refuse every destination), for a
    registry that should not import the http module before the tool is used."""

    def load() -> Tool:
        from openrooms.tools.destination import HttpPolicy
        from openrooms.tools.http import http_tool

        return http_tool(policy if policy is not None else HttpPolicy())

    return load


class ToolRegistry:
    """Maps tool names to :class:`Tool` objects."""

    def __init__(self, tools: Mapping[str, Tool] | None = None) -> None:
        self._tools: dict[str, Tool | _Lazy] = dict(tools or {})

    @classmethod
    def builtins(cls) -> ToolRegistry:
        """A new registry holding only the built-in tools (imported when first looked up);
        its ``http`` tool refuses every destination until a config allows some."""
        registry = cls()
        registry._register_lazy(
            "calculator", _import_tool("openrooms.tools.calculator:calculator_tool")
        )
        registry._register_lazy(
            "memory_query", _import_tool("openrooms.tools.memory_query:memory_query_tool")
        )
        registry._register_lazy("http", http_loader())
        return registry

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

    def _register_lazy(self, name: str, load: Callable[[], Tool]) -> None:
        """Add one of OpenRooms' own tools by name; *load* imports and returns it when it is
        first looked up. Its schema is not checked here (a unit test checks every built-in
        schema), so neither its module nor jsonschema is imported now."""
        self._tools[name] = _Lazy(load)

    def get(self, name: str) -> Tool:
        """The tool called *name*. Raises ToolNotFoundError if there is none."""
        found = self.find(name)
        if found is None:
            raise ToolNotFoundError(name, list(self._tools))
        return found

    def find(self, name: str) -> Tool | None:
        """The tool called *name*, or None."""
        found = self._tools.get(name)
        if isinstance(found, _Lazy):
            found = self._tools[name] = found.load()
        return found

    def names(self) -> list[str]:
        """Registered names, sorted (nothing is imported to list them)."""
        return sorted(self._tools)

    def list(self) -> list[Tool]:
        """Registered tools, sorted by name."""
        return [self.get(n) for n in self.names()]

    def describe(self) -> py.list[dict[str, Any]]:
        """Every tool as ``{name, description, parameters}``, sorted by name (what
        ``GET /api/tools`` and models are shown)."""
        return [
            {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
            for t in self.list()
        ]

    def copy(self) -> ToolRegistry:
        """An independent registry with the same tools."""
        registry = ToolRegistry()
        registry._tools = dict(self._tools)
        return registry

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self.list())


default_tools = ToolRegistry.builtins()
"""The process-wide defaults: the built-in tools, and those ``@tool`` registers without a
``registry``. Every runtime starts from a copy made when it is created; register a tool
for one runtime with ``rt.tools.register`` or ``@tool(registry=rt.tools)`` (or in a
plugin) instead."""


def validation_tools() -> ToolRegistry:
    """The registry workflows being built now check their tool names against: that of the
    registries :func:`openrooms.registries.validating_with` names (by default the
    process-wide ones)."""
    from openrooms.registries import validation_registries

    return validation_registries().tools


@contextlib.contextmanager
def validating_with(tools: ToolRegistry | None) -> Iterator[None]:
    """Check tool names against *tools* (None: :data:`default_tools`) in this block; node
    types stay those of the registries in force. A thin form of
    :func:`openrooms.registries.validating_with`, which takes a whole set of registries.
    """
    from openrooms.registries import validating_with as with_registries
    from openrooms.registries import validation_registries

    if tools is None:
        tools = default_tools
    with with_registries(validation_registries().replace(tools=tools)):
        yield


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
        registry: where to register, e.g. ``rt.tools`` (default: the process-wide
            :data:`default_tools`, which runtimes created afterwards start from).
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
