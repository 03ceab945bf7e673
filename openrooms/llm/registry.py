"""Which :class:`~openrooms.llm.base.ChatModel` answers a model string.

An agent names its model with one string. A registered provider claims every string
that starts with its prefix (``echo/anything`` → the ``echo`` provider); any other
string goes to one shared :class:`~openrooms.llm.litellm.LiteLLMModel`, so
``openai/gpt-4o-mini`` or ``anthropic/claude-...`` work with no registration::

    from openrooms.llm import register_provider

    rt.models.register_provider("echo", EchoModel())  # for one runtime
    register_provider("echo", EchoModel())            # default_models: later runtimes too

Every :class:`~openrooms.Runtime` has its own registry (``rt.models``), a copy of
:data:`default_models` made when the runtime is created.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openrooms.llm.base import ChatModel

__all__ = ["ModelRegistry", "default_models", "register_provider"]


class ModelRegistry:
    """Maps model-string prefixes to models; everything else goes to litellm.

    Args:
        fallback: the model for strings no provider claims (default: a
            :class:`~openrooms.llm.litellm.LiteLLMModel`, created on first use).
    """

    def __init__(self, *, fallback: ChatModel | None = None) -> None:
        self._providers: dict[str, ChatModel] = {}
        self._fallback = fallback
        self._given_fallback = fallback
        self._lock = threading.Lock()

    def register_provider(self, prefix: str, model: ChatModel, *, replace: bool = False) -> None:
        """Send model strings ``PREFIX`` and ``PREFIX/...`` to *model*.

        Raises:
            ValueError: *prefix* is empty, contains ``/``, or is taken (and *replace* is
                false).
            TypeError: *model* has no ``async complete(request)`` method.
        """
        if not isinstance(prefix, str) or not prefix.strip() or "/" in prefix:
            raise ValueError(
                f"provider prefix {prefix!r} must be a non-empty name without '/', "
                f"e.g. 'echo' for model strings like 'echo/anything'"
            )
        complete = getattr(model, "complete", None)
        if not inspect.iscoroutinefunction(complete):
            raise TypeError(
                f"provider {prefix!r}: {type(model).__name__} is not a ChatModel; it needs "
                f"'async def complete(self, request: ChatRequest) -> ChatResponse'"
            )
        with self._lock:
            if prefix in self._providers and not replace:
                raise ValueError(
                    f"provider {prefix!r} is already registered "
                    f"({type(self._providers[prefix]).__name__}); pass replace=True to override"
                )
            self._providers[prefix] = model

    def unregister_provider(self, prefix: str) -> ChatModel | None:
        """Forget the provider under *prefix*; returns it, or None if there was none."""
        with self._lock:
            return self._providers.pop(prefix, None)

    def resolve(self, model_string: str) -> ChatModel:
        """The model that answers *model_string*: its provider's, else the litellm fallback."""
        prefix = model_string.split("/", 1)[0]
        with self._lock:
            found = self._providers.get(prefix)
            if found is not None:
                return found
            if self._fallback is None:
                from openrooms.llm.litellm import LiteLLMModel

                self._fallback = LiteLLMModel()
            return self._fallback

    def copy(self) -> ModelRegistry:
        """An independent registry with the same providers and given fallback (a litellm
        fallback is not shared: each registry creates its own on first use)."""
        registry = ModelRegistry(fallback=self._given_fallback)
        with self._lock:
            registry._providers = dict(self._providers)
        return registry

    def providers(self) -> list[str]:
        """Registered prefixes, sorted."""
        with self._lock:
            return sorted(self._providers)

    def __contains__(self, prefix: object) -> bool:
        with self._lock:
            return prefix in self._providers

    async def aclose(self) -> None:
        """Let every model that holds connections (litellm's) close those of the running loop.

        Call it before an event loop that made model calls ends. Never raises.
        """
        with self._lock:
            models = [*self._providers.values(), *([self._fallback] if self._fallback else [])]
        seen: set[int] = set()
        for model in models:
            close = getattr(model, "aclose", None)
            if id(model) in seen or close is None:
                continue
            seen.add(id(model))
            with contextlib.suppress(Exception):
                result = close()
                if inspect.isawaitable(result):
                    await result


default_models = ModelRegistry()
"""The process-wide defaults: providers :func:`register_provider` adds. Every runtime
starts from a copy; ``rt.models.register_provider`` registers for one runtime only."""


def register_provider(prefix: str, model: ChatModel, *, replace: bool = False) -> None:
    """Register *model* for ``PREFIX/...`` model strings in :data:`default_models`, which
    runtimes created afterwards start from (``rt.models.register_provider`` registers for
    one runtime only).

    Raises:
        ValueError: the prefix is malformed or taken (and *replace* is false).
        TypeError: *model* is not a ChatModel.
    """
    default_models.register_provider(prefix, model, replace=replace)
