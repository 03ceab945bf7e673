"""`import openrooms` stays light: litellm, starlette and uvicorn load only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("litellm", "openai", "starlette", "uvicorn")

PROBE = f"""
import json, sys
import openrooms, openrooms.llm, openrooms.llm.registry, openrooms.llm.litellm
import openrooms.llm.fake_openai, openrooms.testing
from openrooms.llm import LiteLLMModel, ModelRegistry
ModelRegistry().resolve("openai/gpt-4o-mini")
LiteLLMModel()
heavy = {HEAVY!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


@pytest.mark.slow
def test_importing_openrooms_and_its_model_layer_imports_no_heavy_dependency() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
