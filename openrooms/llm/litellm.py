"""`LiteLLMModel`: a :class:`~openrooms.llm.base.ChatModel` over ``litellm.acompletion``.

This is the only module in OpenRooms that imports litellm, and it does so lazily, on the
first call, so ``import openrooms`` stays light. Before that import it sets
``LITELLM_LOCAL_MODEL_COST_MAP=True`` (unless the environment already says otherwise):
litellm then prices calls from the map bundled with it instead of fetching one from the
internet at import time, which keeps costs reproducible and offline installs quiet.

API keys come only from the environment, where litellm looks for them
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ...); a request never carries one. For the
providers :mod:`openrooms.llm.keys` lists, a missing key is refused before litellm is
imported (:class:`~openrooms.errors.MissingAPIKeyError`, at once instead of after a 4 to 7 s
import); :meth:`LiteLLMModel.warm_up` lets a runner import litellm before a node's
deadline starts, so the import never counts against ``timeout_s``.

Retries belong to the node's retry policy, so litellm's own are off (``num_retries=0``,
``max_retries=0``); failures come back as :class:`~openrooms.errors.CompletionError`
whose ``retryable`` and ``retry_after_s`` tell the policy what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Final

from openrooms._extras import require
from openrooms.errors import CompletionError, MissingAPIKeyError
from openrooms.llm.base import ChatModel, ChatRequest, ChatResponse, Message, ToolCall, Usage
from openrooms.llm.keys import is_known_provider, missing_key

__all__ = ["LiteLLMModel"]

_DETAIL_LIMIT: Final = 500
_warmed_up = False  # set by LiteLLMModel.warm_up once litellm has made one (mock) call


def _litellm() -> Any:
    """Import and configure litellm once. ``Any``: litellm's own annotations are partial."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before the first import
    module: Any = require("litellm", feature="litellm models", extra="llm")
    if not getattr(module, "_openrooms_configured", False):
        module.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on errors
        if hasattr(module, "telemetry"):  # older releases phone home unless told not to
            module.telemetry = False
        module._openrooms_configured = True
    return module


class LiteLLMModel(ChatModel):
    """Answers chat requests through litellm, so any provider litellm knows works.

    Args:
        timeout_s: the HTTP timeout when a request does not set ``timeout_s``
            (None leaves litellm's default).
        drop_params: let litellm drop settings the provider does not support instead
            of failing the call.

    Raises:
        MissingExtraError: on the first call, when litellm is not installed
            (``pip install 'openrooms[llm]'``).
    """

    def __init__(self, *, timeout_s: float | None = None, drop_params: bool = False) -> None:
        self.timeout_s = timeout_s
        self.drop_params = drop_params
        self._keys_seen: set[str] = set()

    def __repr__(self) -> str:
        return f"LiteLLMModel(timeout_s={self.timeout_s!r}, drop_params={self.drop_params!r})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Send *request* through ``litellm.acompletion`` and map the reply.

        Raises:
            CompletionError: the provider failed or replied unusably. Rate limits (with
                the provider's ``Retry-After``), 5xx, timeouts, refused connections and
                malformed replies are retryable; authentication and bad requests are not.
                The litellm exception is the ``__cause__``.
            MissingAPIKeyError: the provider's key is not in the environment (checked
                before litellm is imported, for the providers it knows).
            MissingExtraError: litellm is not installed.
        """
        checked = request.api_base is not None or request.model in self._keys_seen
        if not checked and (key := missing_key(request.model)) is not None:
            raise MissingAPIKeyError(request.model, key)
        litellm = _litellm()
        if not checked:
            self._check_keys(litellm, request.model)
        try:
            response = await litellm.acompletion(**self._arguments(request))
        except Exception as exc:  # every litellm failure becomes a CompletionError
            raise _completion_error(litellm, request.model, exc) from exc
        return _to_response(litellm, request.model, response)

    async def warm_up(self, model: str) -> None:
        """Load what the first call of *model* needs now, so that call does not pay for it.

        litellm's import takes seconds (in a thread, so the loop keeps running), and its
        first call imports more: one ``mock_response`` call, which never leaves the
        process, loads that too. A runner calls this before a node's deadline starts.
        Nothing happens when *model*'s key is missing (its call is refused without the
        import). Never raises: a failure is met and reported by the call itself.
        """
        global _warmed_up
        if _warmed_up or missing_key(model) is not None:
            return
        with contextlib.suppress(Exception):
            litellm = await asyncio.to_thread(_litellm)
            await litellm.acompletion(
                model=model,
                messages=[{"role": "user", "content": "warm-up"}],
                mock_response="ok",
                num_retries=0,
                max_retries=0,
            )
        _warmed_up = True

    def _check_keys(self, litellm: Any, model: str) -> None:
        """Refuse at once, and not as a retryable 'server error', when the provider's key
        is missing from the environment (litellm would report a made-up HTTP 500)."""
        if is_known_provider(model):  # checked before the import, in complete()
            self._keys_seen.add(model)
            return
        try:
            found = litellm.validate_environment(model=model)
        except Exception:  # an unknown provider: let the call itself say what is wrong
            return
        missing = [k for k in found.get("missing_keys") or () if k.endswith("_KEY")]
        if missing:
            raise MissingAPIKeyError(model, " or ".join(missing))
        self._keys_seen.add(model)

    def _arguments(self, request: ChatRequest) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": [m.to_dict() for m in request.messages],
            "num_retries": 0,  # retries are the node's retry policy's job
            "max_retries": 0,  # ... and not the provider SDK's either
        }
        if request.tools:
            kwargs["tools"] = [_plain(t) for t in request.tools]
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.response_format is not None:
            kwargs["response_format"] = _plain(request.response_format)
        if request.api_base is not None:
            kwargs["api_base"] = request.api_base
        timeout = request.timeout_s if request.timeout_s is not None else self.timeout_s
        if timeout is not None:
            kwargs["timeout"] = timeout
        if request.idempotency_key:
            kwargs["extra_headers"] = {"Idempotency-Key": request.idempotency_key}
        if self.drop_params:
            kwargs["drop_params"] = True
        return kwargs

    async def aclose(self) -> None:
        """Close the HTTP clients litellm opened on the running event loop.

        litellm caches one client per event loop and never closes it, so a program
        that runs several loops (``asyncio.run`` per room run) leaks a socket per loop.
        Call this before the loop ends. Best effort: never raises. Does nothing (and
        imports nothing) when litellm was never loaded.
        """
        if "litellm" not in sys.modules:
            return
        with contextlib.suppress(Exception):
            litellm = _litellm()
            await _flush_litellm_logging()
            await _close_loop_clients(litellm)


def _plain(value: Any) -> Any:
    """Mappings and tuples (frozen config) as the dicts and lists the wire wants."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# -- replies ---------------------------------------------------------------------------


def _to_response(litellm: Any, model: str, response: Any) -> ChatResponse:
    """Map litellm's ModelResponse; a reply without a usable first choice is retryable."""
    try:
        choice = response.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError) as exc:
        raise CompletionError(
            model, "the provider replied without a message (no choices)", retryable=True
        ) from exc
    content = message.content
    calls = tuple(
        _to_tool_call(call, i) for i, call in enumerate(message.tool_calls or (), start=1)
    )
    usage = getattr(response, "usage", None)
    return ChatResponse(
        message=Message(
            "assistant",
            content=None if content is None else str(content),
            tool_calls=calls,
        ),
        usage=Usage(
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost_usd=_cost(litellm, response),
        ),
        model=str(getattr(response, "model", None) or model),
        finish_reason=getattr(choice, "finish_reason", None),
    )


def _to_tool_call(call: Any, index: int) -> ToolCall:
    function = call.function
    arguments = function.arguments
    return ToolCall(
        id=str(call.id or f"call_{index}"),
        name=str(function.name or ""),
        # keep the model's text as it came, broken JSON included; parsed_arguments() judges it
        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
    )


def _cost(litellm: Any, response: Any) -> float | None:
    """The price litellm knows for this reply, or None (litellm raises for unmapped models)."""
    try:
        cost = float(litellm.completion_cost(completion_response=response))
    except Exception:  # ModelNotMappedError, and whatever else pricing trips on
        return None
    return cost if math.isfinite(cost) and cost >= 0 else None


# -- failures --------------------------------------------------------------------------


def _completion_error(litellm: Any, model: str, exc: Exception) -> CompletionError:
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    detail = _detail(exc)
    if _caused_by(exc, json.JSONDecodeError):
        # litellm reports an unparseable body as a 500 it made up; the provider sent junk
        return CompletionError(
            model, f"the provider's reply is not valid JSON: {detail}", retryable=True
        )
    if isinstance(exc, litellm.Timeout) or _caused_by(exc, TimeoutError):
        return CompletionError(model, f"the request timed out: {detail}", retryable=True)
    if isinstance(exc, litellm.APIConnectionError):
        return CompletionError(
            model, f"could not reach the provider: {detail}", retryable=True, status=None
        )
    if status == 429:
        retry_after = _retry_after_s(_response_headers(exc))
        when = f"; it asks to retry after {retry_after:g} s" if retry_after is not None else ""
        return CompletionError(
            model,
            f"rate limited (HTTP 429){when}: {detail}",
            retryable=True,
            retry_after_s=retry_after,
            status=429,
        )
    if status is not None and (status >= 500 or status == 408):
        return CompletionError(
            model,
            f"the provider failed (HTTP {status}): {detail}",
            retryable=True,
            retry_after_s=_retry_after_s(_response_headers(exc)),
            status=status,
        )
    if isinstance(exc, litellm.ContextWindowExceededError):
        what = "the conversation is longer than the model's context window"
    elif status in (401, 403):
        what = "the provider refused the credentials; set its API key in the environment"
    elif status is not None:
        what = "the provider refused the request"
    else:
        what = "litellm could not make the call"
    shown = f" (HTTP {status})" if status is not None else ""
    return CompletionError(model, f"{what}{shown}: {detail}", retryable=False, status=status)


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether *kind* is anywhere in the exception's cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _response_headers(exc: BaseException) -> Any:
    """The provider's response headers: litellm keeps them on the exception or its response."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers:
        return headers
    response = getattr(exc, "response", None)
    return getattr(response, "headers", None)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    try:
        items = headers.items()
    except AttributeError:
        return None
    for key, value in items:
        if str(key).lower() == name:
            return str(value)
    return None


def _retry_after_s(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or an HTTP date)."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value = float(millis) / 1000
            if math.isfinite(value) and value >= 0:
                return value
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; a naive parse means the zone was lost
            return None
        value = when.timestamp() - (time.time() if now is None else now)
        return max(0.0, value)
    return value if math.isfinite(value) and value >= 0 else None


# -- cleanup (litellm internals, used defensively) ---------------------------------------


async def _flush_litellm_logging() -> None:
    """Let litellm's background logging worker finish its callbacks on this loop."""
    from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await GLOBAL_LOGGING_WORKER.flush()


async def _close_loop_clients(litellm: Any) -> None:
    """Close and forget the clients litellm cached for the running loop (keys end in its token)."""
    from litellm.caching.evicted_client_closer import running_loop_token

    token = running_loop_token()
    cache = litellm.in_memory_llm_clients_cache
    if token is None or cache is None:
        return
    suffix = f"-{token}"
    for key in [k for k in list(cache.cache_dict) if str(k).endswith(suffix)]:
        client = cache.cache_dict.get(key)
        cache.delete_cache(key)
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is None:
            continue
        with contextlib.suppress(Exception):
            result = close()
            if inspect.isawaitable(result):
                await result
