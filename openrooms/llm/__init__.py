"""Models: the :class:`ChatModel` protocol, its litellm implementation, and providers.

Importing this package does not import litellm; :class:`LiteLLMModel` does on its
first call. :class:`~openrooms.llm.fake_openai.FakeOpenAI` (a scripted
OpenAI-compatible server for tests) lives in :mod:`openrooms.llm.fake_openai`.
"""

from openrooms.llm.base import ChatModel, ChatRequest, ChatResponse, Message, Role, ToolCall, Usage
from openrooms.llm.litellm import LiteLLMModel
from openrooms.llm.registry import ModelRegistry, default_models, register_provider

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
