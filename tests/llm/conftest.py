"""Fixtures for the model layer: a FakeOpenAI server shared by a module, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from openrooms.llm.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One real OpenAI-compatible server on 127.0.0.1 for the whole module."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The module's server with an empty script and log, and a dummy OPENAI_API_KEY set."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openrooms-test-not-a-real-key")
    fake_openai_server.reset()
    fake_openai_server.default_reply = "ok"
    return fake_openai_server
