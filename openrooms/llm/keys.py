"""Which environment variable a provider's API key lives in, known without importing litellm.

litellm takes 4 to 7 s to import. A run whose key is missing should say so at once, so the
common providers' key names are listed here and checked first; a model string whose
provider is not listed is left to litellm's own check after the import::

    >>> missing_key("openai/gpt-4o-mini", environ={})
    'OPENAI_API_KEY'
    >>> missing_key("openai/gpt-4o-mini", environ={"OPENAI_API_KEY": "sk-..."}) is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from openrooms.errors import MissingAPIKeyError

if TYPE_CHECKING:
    from openrooms.llm.registry import ModelRegistry
    from openrooms.workflow import Workflow

__all__ = ["PROVIDER_KEYS", "check_keys", "is_known_provider", "missing_key"]

PROVIDER_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    # the names litellm's validate_environment accepts, the one to suggest first
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"),
    "cohere": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "xai": ("XAI_API_KEY",),
}
"""Provider prefix (``openai`` in ``openai/gpt-4o-mini``) -> environment variables, any of
which holds its key."""


def is_known_provider(model: str) -> bool:
    """Whether *model*'s ``provider/`` prefix is one :data:`PROVIDER_KEYS` lists."""
    provider, sep, _ = model.partition("/")
    return bool(sep) and provider in PROVIDER_KEYS


def missing_key(model: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable to set for *model*'s provider, or None when it is set (or the provider
    is not one :data:`PROVIDER_KEYS` knows: litellm checks those itself).

    An empty value counts as missing: the provider would refuse it anyway.
    """
    env = os.environ if environ is None else environ
    provider, sep, _ = model.partition("/")
    names = PROVIDER_KEYS.get(provider) if sep else None
    if not names or any(env.get(name) for name in names):
        return None
    return names[0]


def check_keys(
    workflow: Workflow,
    models: ModelRegistry,
    *,
    api_bases: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Refuse a workflow whose agents' models need a key the environment lacks, before any
    room runs: one error naming the variable and every agent that needs it.

    Only agents answered by litellm are checked (a registered provider or a ``--script``
    needs no key), and only those without an ``api_base`` (in the workflow or *api_bases*,
    the runtime config's), as a model call would be.

    Raises:
        MissingAPIKeyError: the first missing variable, with the agents that need it.
    """
    from openrooms.llm.litellm import LiteLLMModel

    bases = api_bases or {}
    needed: dict[tuple[str, str], list[str]] = {}
    for name, agent in workflow.agents.items():
        if agent.api_base is not None or name in bases:
            continue
        if not isinstance(models.resolve(agent.model), LiteLLMModel):
            continue
        key = missing_key(agent.model, environ=environ)
        if key is not None:
            needed.setdefault((key, agent.model), []).append(name)
    if needed:
        (key, model), agents = next(iter(needed.items()))
        raise MissingAPIKeyError(model, key, agents)
