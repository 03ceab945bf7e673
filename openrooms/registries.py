"""A runtime's registries (node types, tools, models, backends) and the plugins that fill them.

Every :class:`~openrooms.Runtime` owns one :class:`Registries`, copied from the process-wide
defaults (the built-ins) when it is made, so registering on one runtime never changes
another::

    rt = open_runtime(plugins=["acme_plugin"])   # acme_plugin.register(registries) ran
    rt.tools.register(my_tool)                   # this runtime only
    rt.node_types.register("shout", Shout())

A plugin is a module with a ``register`` hook, named in the runtime config
(``plugins: [module, ...]``), in ``OPENROOMS_PLUGINS`` (comma-separated) or with
``--plugin``::

    # acme_plugin.py
    def register(registries: openrooms.Registries) -> None:
        registries.tools.register(word_count)

Workflows built while a runtime validates them (:func:`validating_with`) check their node
types and tools against its registries; outside any runtime, against the defaults.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from openrooms.errors import PluginError

if TYPE_CHECKING:
    from openrooms.backends import BackendRegistry
    from openrooms.config import RuntimeConfig
    from openrooms.llm.registry import ModelRegistry
    from openrooms.nodes.registry import NodeRegistry
    from openrooms.tools.registry import ToolRegistry

__all__ = [
    "PLUGIN_HOOK",
    "Registries",
    "configured",
    "load_plugins",
    "open_registries",
    "plugin_names",
    "validating_with",
    "validation_registries",
]

PLUGIN_HOOK: Final = "register"
"""The function a plugin module defines: ``register(registries: Registries) -> None``."""


class Registries:
    """Where a runtime finds node types, tools, model providers and backend schemes.

    Each one left out is a copy of the process-wide defaults
    (:data:`~openrooms.nodes.node_types`, :data:`~openrooms.tools.default_tools`,
    :data:`~openrooms.llm.default_models`, :data:`~openrooms.backends.default_backends`):
    the built-ins, and what the module-level helpers added before they were made. Built-in
    node types and tools are imported when first looked up.

    Attributes:
        node_types: node type name -> executor.
        tools: the tools ``tool`` nodes and agents may call.
        models: model string prefix -> provider (litellm answers the rest).
        backends: URL scheme -> factory, used by :func:`~openrooms.open_runtime`.
        plugins: the plugins loaded into these registries, in order.
    """

    __slots__ = ("backends", "models", "node_types", "plugins", "tools")

    def __init__(
        self,
        *,
        node_types: NodeRegistry | None = None,
        tools: ToolRegistry | None = None,
        models: ModelRegistry | None = None,
        backends: BackendRegistry | None = None,
    ) -> None:
        if node_types is None:
            from openrooms.nodes.registry import node_types as default_node_types

            node_types = default_node_types.copy()
        if tools is None:
            from openrooms.tools.registry import default_tools

            tools = default_tools.copy()
        if backends is None:
            from openrooms.backends import default_backends

            backends = default_backends.copy()
        if models is None:
            from openrooms.llm.registry import default_models

            models = default_models.copy()
        self.node_types = node_types
        self.tools = tools
        self.models = models
        self.backends = backends
        self.plugins: list[str] = []

    def replace(
        self,
        *,
        node_types: NodeRegistry | None = None,
        tools: ToolRegistry | None = None,
        models: ModelRegistry | None = None,
    ) -> Registries:
        """New registries sharing these ones, with those given put in their place."""
        new = Registries(
            node_types=node_types if node_types is not None else self.node_types,
            tools=tools if tools is not None else self.tools,
            models=models if models is not None else self.models,
            backends=self.backends,
        )
        new.plugins = list(self.plugins)
        return new


_defaults: Registries | None = None
_validating: ContextVar[Registries | None] = ContextVar("openrooms_validating", default=None)


def _process_defaults() -> Registries:
    """The process-wide default registries themselves (not copies)."""
    global _defaults
    if _defaults is None:
        from openrooms.backends import default_backends
        from openrooms.llm.registry import default_models
        from openrooms.nodes.registry import node_types
        from openrooms.tools.registry import default_tools

        _defaults = Registries(
            node_types=node_types,
            tools=default_tools,
            models=default_models,
            backends=default_backends,
        )
    return _defaults


def validation_registries() -> Registries:
    """The registries workflows being built now are checked against: those
    :func:`validating_with` names, else the process-wide defaults."""
    current = _validating.get()
    return current if current is not None else _process_defaults()


@contextlib.contextmanager
def validating_with(registries: Registries | None) -> Iterator[None]:
    """Check node types and tool names against *registries* (None: the process-wide
    defaults) in this block.

    ``WorkflowBuilder.build(registries=...)``, ``load_workflow(path, registries=...)`` and
    a :class:`~openrooms.Runtime` loading stored workflows use it, so a workflow can use
    types and tools that exist only in one runtime's registries.
    """
    token = _validating.set(registries)
    try:
        yield
    finally:
        _validating.reset(token)


def plugin_names(text: str | None) -> list[str]:
    """The module names in a comma-separated list (``OPENROOMS_PLUGINS``), blanks dropped."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def load_plugins(registries: Registries, plugins: Iterable[str]) -> None:
    """Import each plugin module and call its ``register(registries)`` hook, in order; a
    plugin already loaded into *registries* is not loaded again.

    Raises:
        PluginError: a module that cannot be imported, has no callable ``register``, or
            whose hook raised (the exception is the ``__cause__``), naming the plugin.
    """
    for name in plugins:
        name = name.strip()
        if not name or name in registries.plugins:
            continue
        if not all(part.isidentifier() for part in name.split(".")):
            raise PluginError(
                name,
                "a plugin is named by its module's import name, dotted like "
                "'my_company.openrooms_tools', not by a file path",
            )
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a plugin's own bug too (RuntimeError, RecursionError...)
            raise PluginError(name, f"{type(exc).__name__}: {exc}") from exc
        hook = getattr(module, PLUGIN_HOOK, None)
        if not callable(hook):
            raise PluginError(
                name,
                f"it has no {PLUGIN_HOOK}() hook; define `def {PLUGIN_HOOK}(registries): ...` "
                f"in it to register tools, node types, providers or backends",
            )
        try:
            hook(registries)
        except Exception as exc:
            raise PluginError(
                name, f"its {PLUGIN_HOOK}() hook raised {type(exc).__name__}: {exc}"
            ) from exc
        registries.plugins.append(name)


def configured(registries: Registries, config: RuntimeConfig | None) -> Registries:
    """*registries* with *config* applied: an ``http`` tool that follows its allow-list."""
    if config is not None:
        from openrooms.tools.destination import HttpPolicy
        from openrooms.tools.registry import http_loader

        if config.http != HttpPolicy():
            registries.tools._register_lazy("http", http_loader(config.http))
    return registries


def open_registries(
    plugins: Sequence[str] = (), *, config: RuntimeConfig | None = None
) -> Registries:
    """New registries from the defaults, with *config* applied (see :func:`configured`)
    and the plugins loaded: first those of *config* (``plugins:``), then
    ``OPENROOMS_PLUGINS``, then *plugins*. What :func:`~openrooms.open_runtime`, the CLI,
    the worker and the server do.

    Raises:
        PluginError: see :func:`load_plugins`.
    """
    registries = configured(Registries(), config)
    named = [
        *(config.plugins if config is not None else ()),
        *plugin_names(os.environ.get("OPENROOMS_PLUGINS")),
        *plugins,
    ]
    load_plugins(registries, named)
    return registries
