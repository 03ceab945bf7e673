"""Models: the :class:`ChatModel` protocol, its litellm implementation, and providers.

Importing this package does not import litellm; :class:`LiteLLMModel` does on its
first call. :class:`~openrooms.llm.fake_openai.FakeOpenAI` (a scripted
OpenAI-compatible server for tests) lives in :mod:`openrooms.llm.fake_openai`.
"""

from typing import TYPE_CHECKING, Any

from openrooms.llm.base import ChatModel, ChatRequest, ChatResponse, Message, Role, ToolCall, Usage
from openrooms.llm.registry import ModelRegistry, default_models, register_provider

if TYPE_CHECKING:
    from openrooms.llm.litellm import LiteLLMModel

__all__ = [
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "LiteLLMModel",
    "Message",
    "ModelRegistry",
    "Role",
    "ToolCall",
    "Usage",
    "default_models",
    "register_provider",
]


def __getattr__(name: str) -> Any:
    """``LiteLLMModel``, its module imported on first use (PEP 562)."""
    if name != "LiteLLMModel":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from openrooms.llm.litellm import LiteLLMModel

    return LiteLLMModel
