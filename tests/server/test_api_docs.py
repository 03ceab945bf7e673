"""docs/api.md is what docs/gen_api.py renders from /openapi.json's document now, and it
lists every operation with its parameters, body and responses."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from openrooms_server.errors import CODES
from openrooms_server.routes_openapi import OPENAPI

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def gen_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", DOCS / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_is_current() -> None:
    expected = gen_api().render()
    assert (DOCS / "api.md").read_text(encoding="utf-8") == expected, (
        "docs/api.md is stale: run `python docs/gen_api.py`"
    )


def check(script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), "--check"],
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_mode_fails_on_a_stale_page(tmp_path: Path) -> None:
    assert check(DOCS / "gen_api.py").returncode == 0
    script = tmp_path / "gen_api.py"  # writes (and checks) the api.md beside it
    script.write_text((DOCS / "gen_api.py").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "api.md").write_text("# stale\n", encoding="utf-8")
    done = check(script)
    assert done.returncode == 1 and "api.md is out of date" in done.stderr
    assert (tmp_path / "api.md").read_text(encoding="utf-8") == "# stale\n"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (path, method.upper())
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in ("get", "post")
    ],
)
def test_every_operation_is_on_the_page(path: str, method: str) -> None:
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    op = OPENAPI["paths"][path][method.lower()]
    section = page.split(f"### {method} {path}\n", 1)[1].split("\n### ", 1)[0]
    assert op["summary"] in section and op["operationId"] in section
    for p in op.get("parameters", []):
        assert f"| `{p['name']}` | {p['in']} |" in section
    if "requestBody" in op:
        assert "**Request body**" in section
    for status in op["responses"]:
        assert f"\n| {status} |" in section
    for code, meaning in CODES.items():
        if meaning.split(":")[0] in op["responses"]:
            assert f"`{code}`" in section, (code, path, method)


def test_linked_from_the_index_and_the_server_page() -> None:
    for page in ("index.md", "server.md"):
        assert "(api.md)" in (DOCS / page).read_text(encoding="utf-8"), page
