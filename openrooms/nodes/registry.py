"""The node-type registry: type name -> executor.

Every :class:`~openrooms.Runtime` has its own :class:`NodeRegistry` (``rt.node_types``),
a copy of :data:`node_types` made when the runtime is created, so a type registered on
one runtime is unknown to every other. The built-in types are registered by name and
their modules imported when a workflow first uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import TypeVar, overload

from openrooms.errors import NodeTypeNotFoundError
from openrooms.nodes.base import NodeExecutor

__all__ = ["NodeRegistry", "node_types", "register_node_type"]

E = TypeVar("E", bound=NodeExecutor)

_BUILTINS: dict[str, str] = {
    "set": "openrooms.nodes.builtin:SetExecutor",
    "decision": "openrooms.nodes.builtin:DecisionExecutor",
    "tool": "openrooms.nodes.builtin:ToolExecutor",
    "wait": "openrooms.nodes.builtin:WaitExecutor",
    "end": "openrooms.nodes.builtin:EndExecutor",
    "agent": "openrooms.nodes.agent:AgentExecutor",
    "parallel": "openrooms.nodes.fanout:ParallelExecutor",
    "map": "openrooms.nodes.fanout:MapExecutor",
    "subworkflow": "openrooms.nodes.fanout:SubworkflowExecutor",
}
"""The built-in types: name -> ``module:class`` of their (stateless) executor."""

_loaded: dict[str, NodeExecutor] = {}


def _builtin(name: str) -> NodeExecutor:
    """The one executor instance of built-in type *name*, its module imported on first use."""
    executor = _loaded.get(name)
    if executor is None:
        module, cls = _BUILTINS[name].split(":")
        executor = _loaded[name] = getattr(importlib.import_module(module), cls)()
    return executor


class _Builtin:
    """A built-in type not imported yet."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class NodeRegistry:
    """Maps node type names to executors. Workflows are validated against it when built."""

    def __init__(self) -> None:
        self._executors: dict[str, NodeExecutor | _Builtin] = {}

    @classmethod
    def builtins(cls) -> NodeRegistry:
        """A new registry holding only the built-in types (imported when first used)."""
        registry = cls()
        registry._executors = {name: _Builtin(name) for name in _BUILTINS}
        return registry

    @overload
    def register(
        self, name: str, executor: NodeExecutor, *, replace: bool = ...
    ) -> NodeExecutor: ...
    @overload
    def register(
        self, name: str, executor: None = ..., *, replace: bool = ...
    ) -> Callable[[type[E]], type[E]]: ...
    def register(
        self, name: str, executor: NodeExecutor | None = None, *, replace: bool = False
    ) -> NodeExecutor | Callable[[type[E]], type[E]]:
        """Register *executor* for node type *name*; without an executor, a class decorator
        that registers an instance of the class::

            rt.node_types.register("shout", Shout())

            @rt.node_types.register("echo")
            class Echo(NodeExecutor): ...

        Raises:
            ValueError: *name* is taken and *replace* is false.
            TypeError: *executor* is not a NodeExecutor.
        """
        if executor is None:

            def decorate(cls: type[E]) -> type[E]:
                self.register(name, cls(), replace=replace)
                return cls

            return decorate
        if not isinstance(executor, NodeExecutor):
            raise TypeError(
                f"node type {name!r}: expected a NodeExecutor instance, got {executor!r}"
            )
        if name in self._executors and not replace:
            raise ValueError(
                f"node type {name!r} is already registered; pass replace=True to override"
            )
        self._executors[name] = executor
        return executor

    def get(self, name: str) -> NodeExecutor:
        """The executor for *name*. Raises NodeTypeNotFoundError if there is none."""
        executor = self.find(name)
        if executor is None:
            raise NodeTypeNotFoundError(name, list(self._executors))
        return executor

    def find(self, name: str) -> NodeExecutor | None:
        """The executor for *name*, or None."""
        executor = self._executors.get(name)
        if isinstance(executor, _Builtin):
            executor = self._executors[name] = _builtin(executor.name)
        return executor

    def names(self) -> list[str]:
        """Registered type names, sorted (nothing is imported to list them)."""
        return sorted(self._executors)

    def copy(self) -> NodeRegistry:
        """An independent registry with the same types."""
        registry = NodeRegistry()
        registry._executors = dict(self._executors)
        return registry

    def __contains__(self, name: object) -> bool:
        return name in self._executors

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


node_types = NodeRegistry.builtins()
"""The process-wide defaults: the built-in types, and those :func:`register_node_type`
adds. Every runtime starts from a copy made when it is created; register a type for one
runtime with ``rt.node_types.register`` (or in a plugin) instead."""


@overload
def register_node_type(
    name: str, executor: NodeExecutor, *, replace: bool = ..., registry: NodeRegistry | None = ...
) -> NodeExecutor: ...
@overload
def register_node_type(
    name: str, executor: None = ..., *, replace: bool = ..., registry: NodeRegistry | None = ...
) -> Callable[[type[E]], type[E]]: ...
def register_node_type(
    name: str,
    executor: NodeExecutor | None = None,
    *,
    replace: bool = False,
    registry: NodeRegistry | None = None,
) -> NodeExecutor | Callable[[type[E]], type[E]]:
    """Register a node type, with an executor instance or as a class decorator.

    Without *registry*, the type goes into the process-wide defaults (:data:`node_types`):
    workflows built outside a runtime, and every runtime created afterwards, know it. A
    runtime created earlier does not; ``rt.node_types.register`` or a plugin's
    ``register(registries)`` hook registers for one runtime only.

    Example::

        register_node_type("shout", Shout())

        @register_node_type("echo", registry=rt.node_types)
        class Echo(NodeExecutor): ...

    Raises:
        ValueError: the name is taken and *replace* is false.
        TypeError: *executor* is not a NodeExecutor.
    """
    target = registry if registry is not None else node_types
    if executor is not None:
        return target.register(name, executor, replace=replace)
    return target.register(name, replace=replace)
