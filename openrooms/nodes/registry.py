"""The node-type registry: type name -> executor."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar, overload

from openrooms.errors import NodeTypeNotFoundError
from openrooms.nodes.base import NodeExecutor

__all__ = ["NodeRegistry", "node_types", "register_node_type"]

E = TypeVar("E", bound=NodeExecutor)


class NodeRegistry:
    """Maps node type names to executors. Workflows are validated against it when built."""

    def __init__(self) -> None:
        self._executors: dict[str, NodeExecutor] = {}

    def register(self, name: str, executor: NodeExecutor, *, replace: bool = False) -> None:
        """Register *executor* for node type *name*.

        Raises:
            ValueError: *name* is taken and *replace* is false, or *executor* is no NodeExecutor.
        """
        if not isinstance(executor, NodeExecutor):
            raise TypeError(
                f"node type {name!r}: expected a NodeExecutor instance, got {executor!r}"
            )
        if name in self._executors and not replace:
            raise ValueError(
                f"node type {name!r} is already registered; pass replace=True to override"
            )
        self._executors[name] = executor

    def get(self, name: str) -> NodeExecutor:
        """The executor for *name*. Raises NodeTypeNotFoundError if there is none."""
        try:
            return self._executors[name]
        except KeyError:
            raise NodeTypeNotFoundError(name, list(self._executors)) from None

    def find(self, name: str) -> NodeExecutor | None:
        """The executor for *name*, or None."""
        return self._executors.get(name)

    def names(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._executors)

    def __contains__(self, name: object) -> bool:
        return name in self._executors

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


node_types = NodeRegistry()
"""The process-wide registry the built-in types live in; workflows validate against it."""


@overload
def register_node_type(
    name: str, executor: NodeExecutor, *, replace: bool = ...
) -> NodeExecutor: ...
@overload
def register_node_type(
    name: str, executor: None = ..., *, replace: bool = ...
) -> Callable[[type[E]], type[E]]: ...
def register_node_type(
    name: str, executor: NodeExecutor | None = None, *, replace: bool = False
) -> NodeExecutor | Callable[[type[E]], type[E]]:
    """Register a node type, with an executor instance or as a class decorator.

    Example::

        register_node_type("shout", Shout())

        @register_node_type("echo")
        class Echo(NodeExecutor): ...

    Raises:
        ValueError: the name is taken and *replace* is false.
    """
    if executor is not None:
        node_types.register(name, executor, replace=replace)
        return executor

    def decorate(cls: type[E]) -> type[E]:
        node_types.register(name, cls(), replace=replace)
        return cls

    return decorate
