"""The docs stay true: the CLI reference is current, examples run, workflows load, links work.

Conventions the docs follow so these tests can check them:

- The ```python blocks of a page run in order, in one fresh namespace per page, in a
  temporary directory with ``OPENROOMS_DB`` pointing at a temporary SQLite file. A block
  followed by the line "It prints:" and a ```text block must print exactly that text.
- A ```yaml block with a top-level ``id:`` must load as a valid workflow, unless its first
  line is ``# invalid``: then loading must fail, and a ```text block right after the next
  paragraph must be the error's message.
- A ```yaml block with a top-level ``models:`` or ``tools:`` and no ``id:`` is an offline
  script (``openrooms --script``) and must load with ``openrooms.offline.load_script``.
- A ```yaml block with a top-level ``http:`` or ``tool_results:`` is a runtime config file
  (``openrooms --config``) and must load with ``openrooms.config.load_config``.
- Every event type has a row in the event table of concepts.md, every built-in node type
  a heading in workflows.md, and every built-in tool a heading in tools.md.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import attrs
import click
import pytest

import openrooms.backends
from openrooms import EventType, Workflow, WorkflowValidationError
from openrooms.cli import cli
from openrooms.config import load_config
from openrooms.llm import default_models
from openrooms.nodes import node_types
from openrooms.offline import load_script
from openrooms.tools import default_tools

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
RUNNABLE = [
    "agents.md",
    "concepts.md",
    "extending.md",
    "memory.md",
    "nodes.md",
    "server-security.md",
    "tools.md",
]

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


@attrs.frozen
class Block:
    """A fenced code block: its language, text, and the prose just before it."""

    lang: str
    body: str
    before: str
    line: int


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    end = 0
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        found.append(Block(m["lang"], m["body"], text[end : m.start()].strip(), line))
        end = m.end()
    return found


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --- (a) the CLI reference is what docs/gen_cli.py generates now ------------------------------


def _gen_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current() -> None:
    expected = _gen_cli().render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == expected, (
        "docs/cli.md is stale: run `nox -s docs`"
    )


def test_cli_reference_does_not_depend_on_the_terminal_or_earlier_help(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gen = _gen_cli()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = gen.render()
    monkeypatch.setenv("COLUMNS", "250")
    assert gen.render() == narrow
    # click caches each command's help option on first use; a bare Context caches `--help`
    for command in cli.commands.values():
        with click.Context(command) as ctx:
            command.get_help(ctx)
    assert gen.render() == narrow


# --- (b) every python block runs ------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary cwd and database; the process-wide registries are restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROOMS_DB", f"sqlite:///{tmp_path / 'docs.db'}")
    for name in ("OPENROOMS_STATE_URL", "OPENROOMS_LOG_URL", "OPENROOMS_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    # docs show the module-level helpers (`@tool`, `register_provider`...), which register
    # into the process-wide defaults: put those back as they were afterwards
    backends = openrooms.backends.default_backends
    monkeypatch.setattr(default_tools, "_tools", dict(default_tools._tools))
    monkeypatch.setattr(node_types, "_executors", dict(node_types._executors))
    monkeypatch.setattr(default_models, "_providers", dict(default_models._providers))
    monkeypatch.setattr(backends, "_factories", dict(backends._factories))
    monkeypatch.setattr(backends, "_reads_only", set(backends._reads_only))
    return tmp_path


@pytest.mark.parametrize("page", RUNNABLE)
def test_python_examples_run(page: str, sandbox: Path) -> None:
    path = DOCS / page
    found = blocks(path)
    namespace: dict[str, object] = {"__name__": f"docs.{path.stem}"}
    ran = 0
    for i, block in enumerate(found):
        if block.lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = compile(block.body, f"{_name(path)}:{block.line}", "exec")
            exec(code, namespace)
        ran += 1
        nxt = found[i + 1] if i + 1 < len(found) else None
        if nxt is not None and nxt.lang == "text" and nxt.before == "It prints:":
            printed = [line.rstrip() for line in out.getvalue().splitlines()]
            assert printed == nxt.body.splitlines(), f"{_name(path)}:{nxt.line}"
    assert ran, f"{page} has no python examples"


# --- (c) every workflow in the docs validates -------------------------------------------------


def _workflows() -> list[tuple[str, Block, Block | None]]:
    cases = []
    for page in PAGES:
        found = blocks(page)
        for i, block in enumerate(found):
            if block.lang in ("yaml", "yml") and re.search(r"^id:", block.body, re.M):
                nxt = found[i + 1] if i + 1 < len(found) else None
                cases.append((f"{_name(page)}:{block.line}", block, nxt))
    return cases


@pytest.mark.parametrize(
    ("where", "block", "after"), _workflows(), ids=[c[0] for c in _workflows()]
)
def test_yaml_workflows_validate(where: str, block: Block, after: Block | None) -> None:
    if not block.body.startswith("# invalid"):
        wf = Workflow.from_yaml(block.body, source=where)
        assert Workflow.from_dict(wf.to_dict()) == wf
        return
    with pytest.raises(WorkflowValidationError) as caught:
        Workflow.from_yaml(block.body, source=where)
    if after is not None and after.lang == "text":
        assert str(caught.value) == after.body.rstrip("\n"), f"{where}: the shown error is stale"


def test_the_workflow_reference_has_examples() -> None:
    here = [c for c in _workflows() if c[0].startswith("docs/workflows.md")]
    assert len(here) >= 3


def _scripts() -> list[tuple[str, Block]]:
    cases = []
    for page in PAGES:
        for block in blocks(page):
            body = block.body
            if (
                block.lang in ("yaml", "yml")
                and re.search(r"^(models|tools):", body, re.M)
                and not re.search(r"^id:", body, re.M)
            ):
                cases.append((f"{_name(page)}:{block.line}", block))
    return cases


@pytest.mark.parametrize(("where", "block"), _scripts(), ids=[c[0] for c in _scripts()])
def test_offline_scripts_load(where: str, block: Block, tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(block.body, encoding="utf-8")
    load_script(path, default_tools)  # raises SchemaValidationError naming each problem


def test_agents_md_shows_an_offline_script() -> None:
    assert any(where.startswith("docs/agents.md") for where, _ in _scripts())


def _configs() -> list[tuple[str, Block]]:
    return [
        (f"{_name(page)}:{block.line}", block)
        for page in PAGES
        for block in blocks(page)
        if block.lang in ("yaml", "yml") and re.search(r"^(http|tool_results):", block.body, re.M)
    ]


@pytest.mark.parametrize(("where", "block"), _configs(), ids=[c[0] for c in _configs()])
def test_runtime_config_files_load(where: str, block: Block, tmp_path: Path) -> None:
    path = tmp_path / "openrooms.yaml"
    path.write_text(block.body, encoding="utf-8")
    load_config(path)  # raises SchemaValidationError naming each problem


def test_concepts_md_shows_a_runtime_config() -> None:
    assert any(where.startswith("docs/concepts.md") for where, _ in _configs())


# --- (d) every event type, built-in node type and built-in tool is documented -----------------


@functools.cache
def _builtins() -> dict[str, list[str]]:
    """The node types and tools that come with OpenRooms: what a fresh interpreter has
    registered (this process also holds the ones test modules register)."""
    code = (
        "import json; from openrooms.nodes import node_types; "
        "from openrooms.tools import default_tools; "
        "print(json.dumps({'nodes': node_types.names(), 'tools': default_tools.names()}))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    found: dict[str, list[str]] = json.loads(ran.stdout)
    return found


def _headings(page: str) -> set[str]:
    text = _FENCE.sub("", (DOCS / page).read_text(encoding="utf-8"))
    return {m[1].strip() for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, re.M)}


def test_every_event_type_is_in_the_event_table() -> None:
    concepts = (DOCS / "concepts.md").read_text(encoding="utf-8")
    missing = [t.value for t in EventType if f"| `{t.value}` |" not in concepts]
    assert not missing, f"docs/concepts.md's event table lacks {missing}"


def test_every_builtin_node_type_has_a_section_in_the_workflow_reference() -> None:
    names = _builtins()["nodes"]
    assert {"set", "agent", "parallel", "map", "subworkflow"} <= set(names)
    assert set(names) <= set(node_types.names())
    headings = _headings("workflows.md")
    missing = [n for n in names if f"`{n}`" not in headings]
    assert not missing, f"docs/workflows.md has no '### `name`' section for {missing}"


def test_every_builtin_tool_has_a_section_in_the_tools_page() -> None:
    names = _builtins()["tools"]
    assert {"calculator", "http", "memory_query"} <= set(names)
    headings = _headings("tools.md")
    missing = [n for n in names if f"`{n}`" not in headings]
    assert not missing, f"docs/tools.md has no section for {missing}"


def test_every_event_type_and_node_type_appears_in_the_docs() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    names = [t.value for t in EventType] + _builtins()["nodes"]
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"the docs never mention {missing}"


# --- (e) relative links resolve -------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading (it keeps underscores: `memory_query` -> memory_query)."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = _slug(m[1])
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        text = re.sub(r"`[^`\n]*`", "", text)
        for m in _LINK.finditer(text):
            target = m[1]
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            found.append((page, target))
    return found


@pytest.mark.parametrize(
    ("page", "target"), _links(), ids=[f"{_name(p)}->{t}" for p, t in _links()]
)
def test_relative_links_resolve(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{_name(page)} links to missing {target}"
    if anchor and resolved.suffix == ".md":
        assert anchor in _anchors(resolved), f"{_name(page)} links to missing anchor {target}"


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
