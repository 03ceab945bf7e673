"""redact() and truncate_json(): tool arguments and results made fit to log."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrooms.tools.redact import REDACTED, is_sensitive_key, redact, truncate_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize(
    "key",
    [
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "api_key",
        "API-KEY",
        "apikey",
        "x-api-key",
        "X_Api_Key",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "client_secret",
        "password",
        "github_token",
        "db_password",
    ],
)
def test_credential_keys_are_sensitive(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize("key", ["method", "url", "max_tokens", "tokens", "content-type", "user"])
def test_ordinary_keys_are_not_sensitive(key: str) -> None:
    assert not is_sensitive_key(key)


def test_redact_replaces_nested_credentials_and_keeps_the_rest() -> None:
    args: dict[str, Any] = {
        "method": "POST",
        "url": "https://api.example.com/v1?q=cats&api_key=s3cr3t",
        "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
        "json": {"items": [{"password": "pw", "name": "n"}], "Token": {"nested": "deep"}},
    }
    assert redact(args) == {
        "method": "POST",
        "url": "https://api.example.com/v1?q=cats&api_key=[redacted]",
        "headers": {"Authorization": REDACTED, "Accept": "application/json"},
        "json": {"items": [{"password": REDACTED, "name": "n"}], "Token": REDACTED},
    }
    assert args["headers"]["Authorization"] == "Bearer abc"  # the input is untouched


def test_redact_hides_url_passwords_but_leaves_plain_urls_alone() -> None:
    assert redact("https://bob:hunter2@example.com/x") == "https://bob:[redacted]@example.com/x"
    assert redact("https://example.com/a?b=c#d") == "https://example.com/a?b=c#d"
    assert redact("https://[broken/") == "https://[broken/"
    assert redact(("a", {"cookie": "c"})) == ["a", {"cookie": REDACTED}]


@given(JSON)
def test_redact_is_idempotent_and_json_stays_json(value: Any) -> None:
    once = redact(value)
    assert redact(once) == once
    json.dumps(once)


@given(JSON)
def test_redact_leaves_values_without_secrets_unchanged(value: Any) -> None:
    text = json.dumps(value)
    if "http" in text or any(is_sensitive_key(k) for k in _keys(value)):
        return
    assert redact(value) == value


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_truncate_json_keeps_small_values() -> None:
    value = {"a": [1, 2, 3]}
    assert truncate_json(value, 100) == (value, False)
    assert truncate_json(value, len(json.dumps(value))) == (value, False)


def test_truncate_json_previews_big_values_within_the_limit() -> None:
    preview, truncated = truncate_json({"text": "x" * 1000}, 20)
    assert truncated
    assert preview == '{"text": "' + "x" * 10
    # Never cuts a character in half.
    preview, truncated = truncate_json("\u00e9" * 10, 6)
    assert (preview, truncated) == ('"\u00e9\u00e9', True)


def test_truncate_json_previews_what_json_cannot_show() -> None:
    preview, truncated = truncate_json({"s": {1, 2}}, 100)
    assert truncated and preview.startswith('{"s": "{1, 2}"')
    preview, truncated = truncate_json(math.nan, 100)
    assert (preview, truncated) == ("NaN", True)
    loop: list[Any] = []
    loop.append(loop)
    assert truncate_json(loop, 100) == ("[[...]]", True)
    with pytest.raises(ValueError, match="max_bytes"):
        truncate_json(1, -1)


@given(JSON, st.integers(min_value=0, max_value=200))
def test_truncate_json_output_fits_and_serializes(value: Any, max_bytes: int) -> None:
    result, truncated = truncate_json(value, max_bytes)
    if truncated:
        assert isinstance(result, str)
        assert len(result.encode()) <= max_bytes
    else:
        assert result is value
        assert len(json.dumps(value, ensure_ascii=False).encode()) <= max_bytes
    json.dumps(result)


def test_urls_in_error_text_lose_their_passwords_and_secret_parameters() -> None:
    from openrooms.tools.redact import redact_text

    text = "refused 'https://bob:hunter2@api.example.com/x?token=abc&q=1'; see http://ok.example/"
    assert redact_text(text) == (
        "refused 'https://bob:[redacted]@api.example.com/x?token=[redacted]&q=1'; "
        "see http://ok.example/"
    )


def test_the_http_tools_refusals_never_quote_a_password() -> None:
    import asyncio

    import pytest

    from openrooms.errors import ToolError
    from openrooms.tools import HttpPolicy, ToolContext, http_tool
    from openrooms.types import RoomId

    tool = http_tool(HttpPolicy())
    ctx = ToolContext(room_id=RoomId("r"), node="n", idempotency_key="r:n:1:1")
    with pytest.raises(ToolError) as info:
        asyncio.run(
            tool.call({"method": "GET", "url": "https://bob:hunter2@api.example.com/"}, ctx)
        )
    assert "hunter2" not in str(info.value)


# -- Scrubber: known secret values, wherever they turn up -------------------------------------


def test_environment_secrets_are_credential_named_variables_of_some_length() -> None:
    from openrooms.scrub import environment_secrets

    env = {
        "OPENAI_API_KEY": "sk-abcdefgh12345",
        "GITHUB_TOKEN": "ghp_0123456789",
        "DB_PASSWORD": "hunter2hunter2",
        "OPENROOMS_API_KEYS": "key-one-111111, key-two-222222",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "SHORT_TOKEN": "abc",  # too short to be a credential worth hiding
        "MONKEY": "bananas-bananas",  # not a credential name
        "HOME": "/home/someone-long",
        "TOKENIZERS_PARALLELISM": "false-or-true",
    }
    assert sorted(environment_secrets(env)) == sorted(
        [
            "sk-abcdefgh12345",
            "ghp_0123456789",
            "hunter2hunter2",
            "key-one-111111",
            "key-two-222222",
            "wJalrXUtnFEMI/K7MDENG",
        ]
    )


def test_secrets_in_finds_the_credentials_a_tool_call_carries() -> None:
    from openrooms.scrub import secrets_in

    args = {
        "url": "https://u:pass-word-1@api.example.com/x?api_key=k-12345678&page=22222222",
        "headers": {"Authorization": "Bearer tok-abcdefgh", "X-Trace": "trace-12345678"},
        "json": {"nested": [{"client_secret": "cs-12345678"}]},
    }
    assert sorted(secrets_in(args)) == sorted(
        ["pass-word-1", "k-12345678", "Bearer tok-abcdefgh", "tok-abcdefgh", "cs-12345678"]
    )


def test_a_scrubber_replaces_secrets_in_text_values_errors_and_encoded_forms() -> None:
    from openrooms.events import ErrorInfo
    from openrooms.scrub import Scrubber

    scrub = Scrubber(["sk-live/abc+123456", "tiny"])
    assert scrub.text("key sk-live/abc+123456 was refused") == f"key {REDACTED} was refused"
    assert scrub.text("?key=sk-live%2Fabc%2B123456") == f"?key={REDACTED}"  # as in a URL
    assert scrub.text("tiny stays") == "tiny stays"  # shorter than MIN_SECRET_LENGTH
    value = {"a": ["x", "sk-live/abc+123456"], "sk-live/abc+123456": 1, "n": 2.5}
    assert scrub.value(value) == {"a": ["x", REDACTED], REDACTED: 1, "n": 2.5}
    untouched = {"a": ["x"], "b": {"c": 1}}
    assert scrub.value(untouched) is untouched  # nothing copied when nothing changed
    info = ErrorInfo("E", "bad sk-live/abc+123456", "Traceback ... sk-live/abc+123456")
    assert scrub.error(info) == ErrorInfo("E", f"bad {REDACTED}", f"Traceback ... {REDACTED}")
    assert not Scrubber([]) and Scrubber([]).value(value) is value


@given(JSON)
def test_a_scrubber_without_matches_returns_values_unchanged(value: Any) -> None:
    from openrooms.scrub import Scrubber

    assert Scrubber(["\x00never-in-generated-text\x00"]).value(value) == value
