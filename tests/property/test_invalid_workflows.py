"""Broken workflows are refused whole, with paths and hints, and nothing of them is ever stored.

Each generated definition is a valid workflow (from ``tests.strategies.workflows``) with one
thing broken; it must be refused with a problem at the path of that thing, by the library,
the runtime and the CLI alike, and leave the database without a workflow, room or event.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from openrooms import (
    Workflow,
    WorkflowBuilder,
    WorkflowValidationError,
    load_workflow,
    open_runtime,
)
from openrooms.cli import cli
from openrooms.plan import MAX_DEFINITION_BYTES, MAX_NODES, MAX_TRANSITIONS
from openrooms.registries import validating_with
from tests.strategies import REGISTRIES, Broken, broken_workflows

TABLES = ("workflows", "rooms", "events", "leases")


@pytest.fixture(autouse=True)
def _registries() -> Iterator[None]:
    """Generated workflows may use ``test_review``, registered in the strategies' registries."""
    with validating_with(REGISTRIES):
        yield


def stored(db: Path) -> dict[str, int]:
    """Rows in each table of an OpenRooms SQLite file."""
    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def empty_db(folder: Path) -> tuple[Path, str]:
    """A database with OpenRooms' tables and no rows, and its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rooms.db"
    url = f"sqlite:///{path}"
    open_runtime(url).close()
    assert stored(path) == dict.fromkeys(TABLES, 0)
    return path, url


def assert_refused_for(broken: Broken, exc: WorkflowValidationError) -> None:
    found = [p for p in exc.problems if p.path == broken.path and broken.message in p.message]
    assert found, (broken.kind, broken.path, [str(p) for p in exc.problems])
    if broken.hinted:
        assert found[0].hint, found[0]
    assert str(found[0]) in str(exc)
    assert f"  {broken.path}: " in str(exc)


@given(broken_workflows())
def test_a_broken_workflow_is_refused_with_the_path_of_what_is_broken(broken: Broken) -> None:
    Workflow.from_dict(broken.original)  # the definition it came from is valid
    with pytest.raises(WorkflowValidationError) as info:
        Workflow.from_dict(broken.definition)
    assert_refused_for(broken, info.value)
    if isinstance(broken.definition["id"], str) and broken.kind != "bad workflow id":
        assert info.value.workflow_id == broken.definition["id"]


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One database for every generated example: it must stay empty through all of them."""
    return empty_db(tmp_path_factory.mktemp("invalid"))


@given(broken=broken_workflows(), command=st.sampled_from(["validate", "run"]))
def test_the_cli_stores_nothing_of_a_broken_file(
    broken: Broken, command: str, shared_db: tuple[Path, str]
) -> None:
    """A file (JSON, which is YAML) goes through the same reader as any workflow file."""
    path, url = shared_db
    wf_file = path.parent / "broken.json"
    wf_file.write_text(json.dumps(broken.definition))
    plugin = ["--plugin", "tests.strategies"]  # for test_review
    result = CliRunner().invoke(cli, ["--db", url, *plugin, command, str(wf_file)])
    assert result.exit_code == 2, (command, result.output)
    assert f"  {broken.path}: " in result.output
    assert "Traceback" not in result.output
    assert stored(path) == dict.fromkeys(TABLES, 0)


# --- the runtime --------------------------------------------------------------------------------

BROKEN_FILES = {
    "unknown target": (
        "id: w\nnodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n"
        "transitions:\n  - {from: a, to: c}\n",
        "transitions[0].to",
    ),
    "duplicate default": (
        "id: w\nnodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n  c: {type: end}\n"
        "transitions:\n  - {from: a, to: b}\n  - {from: a, to: c}\n",
        "transitions[1]",
    ),
    "not yaml": ("id: w\nnodes: {a: [\n", "line 3, column 1"),
    "not a mapping": ("- just\n- a list\n", ""),
}


@pytest.mark.parametrize(("text", "path"), BROKEN_FILES.values(), ids=list(BROKEN_FILES))
def test_the_runtime_stores_nothing_of_a_broken_file(text: str, path: str, tmp_path: Path) -> None:
    db, url = empty_db(tmp_path / "db")
    wf_file = tmp_path / "broken.yaml"
    wf_file.write_text(text)
    with open_runtime(url) as rt:
        for operation in (rt.register_workflow, rt.create_room):
            with pytest.raises(WorkflowValidationError) as info:
                operation(load_workflow(wf_file))
            assert any(p.path == path for p in info.value.problems), str(info.value)
    assert stored(db) == dict.fromkeys(TABLES, 0)


def chain() -> WorkflowBuilder:
    return WorkflowBuilder("chain", variables={"i": 0}).set("a", {"i": 1}).end("done")


BUILDERS: dict[str, tuple[WorkflowBuilder, str, str]] = {
    "unknown target": (chain().transition("a", "dnoe"), "transitions[0].to", "did you mean"),
    "unknown source": (
        chain().transition("a", "done").transition("b", "done"),
        "transitions[1].from",
        "unknown node 'b'",
    ),
    "unknown node type": (
        chain().node("x", "teleport").transition("a", "x").transition("x", "done"),
        "nodes.x.type",
        "unknown node type",
    ),
    "unknown tool": (
        chain().tool("t", "calculater").transition("a", "t").transition("t", "done"),
        "nodes.t.tool",
        "did you mean 'calculator'",
    ),
    "unreachable node": (
        chain().end("orphan").transition("a", "done"),
        "nodes.orphan",
        "unreachable",
    ),
    "dead end": (
        chain().set("b", {"i": 2}).transition("a", "b"),
        "nodes.b",
        "no way out",
    ),
    "unparsable guard": (
        chain().transition("a", "done", when="vars.i >").transition("a", "done"),
        "transitions[0].when",
        "unexpected end of expression",
    ),
    "decision without default": (
        chain().decision("d").transition("a", "d").transition("d", "done", when="vars.i"),
        "nodes.d",
        "no default transition",
    ),
    "duplicate default": (
        chain().end("other").transition("a", "done").transition("a", "other"),
        "transitions[1]",
        "give one of them a 'when' condition",
    ),
    "bad id": (
        WorkflowBuilder("Not An Id").end("done"),
        "id",
        "not a valid workflow id",
    ),
}


@pytest.mark.parametrize(("builder", "path", "text"), BUILDERS.values(), ids=list(BUILDERS))
def test_the_runtime_refuses_an_invalid_builder_and_stores_nothing(
    builder: WorkflowBuilder, path: str, text: str, tmp_path: Path
) -> None:
    db, url = empty_db(tmp_path)
    with open_runtime(url) as rt:
        for operation in (rt.register_workflow, rt.create_room):
            with pytest.raises(WorkflowValidationError) as info:
                operation(builder)
            problem = next((p for p in info.value.problems if p.path == path), None)
            assert problem is not None, [str(p) for p in info.value.problems]
            assert text in str(problem)
        assert rt.list_rooms() == []
        assert rt.list_workflows() == []
    assert stored(db) == dict.fromkeys(TABLES, 0)


# --- size limits -------------------------------------------------------------------------------


def small() -> dict[str, Any]:
    return {
        "id": "sized",
        "nodes": {"a": {"type": "set", "assign": {"i": 1}}, "done": {"type": "end"}},
        "transitions": [{"from": "a", "to": "done"}],
    }


def too_many_nodes() -> dict[str, Any]:
    d = small()
    for i in range(MAX_NODES):
        d["nodes"][f"e{i}"] = {"type": "end"}
        d["transitions"].insert(0, {"from": "a", "to": f"e{i}", "when": f"vars.i == {i}"})
    return d


def too_many_transitions() -> dict[str, Any]:
    d = small()
    guarded = [
        {"from": "a", "to": "done", "when": f"vars.i == {i}"} for i in range(MAX_TRANSITIONS)
    ]
    d["transitions"] = guarded + d["transitions"]
    return d


def too_big() -> dict[str, Any]:
    d = small()
    d["variables"] = {"blob": "x" * MAX_DEFINITION_BYTES}
    return d


@pytest.mark.parametrize(
    ("make", "path", "text"),
    [
        (too_many_nodes, "nodes", f"exceed the limit of {MAX_NODES}"),
        (too_many_transitions, "transitions", f"exceed the limit of {MAX_TRANSITIONS}"),
        (too_big, "", f"the limit is {MAX_DEFINITION_BYTES}"),
    ],
    ids=["nodes", "transitions", "bytes"],
)
def test_size_limits_are_refused(make: Any, path: str, text: str) -> None:
    definition = make()
    with pytest.raises(WorkflowValidationError) as info:
        Workflow.from_dict(definition)
    assert any(p.path == path and text in p.message for p in info.value.problems), [
        str(p) for p in info.value.problems[:5]
    ]


def test_just_inside_the_size_limits_is_accepted() -> None:
    d = too_many_transitions()
    d["transitions"] = d["transitions"][1:]  # MAX_TRANSITIONS in all
    assert len(Workflow.from_dict(d).transitions) == MAX_TRANSITIONS


# --- the real command, in its own process ------------------------------------------------------

MANY_PROBLEMS = """
id: Bad Id
nodes:
  a: {type: set, assign: {x: 1}}
  b: {type: teleport}
  c: {type: decision}
  lonely: {type: end}
  d: {type: tool, tool: calculater}
transitions:
  - {from: a, to: c}
  - {from: a, to: c}
  - {from: c, to: zz, when: "vars.x >"}
  - {from: b, to: d}
"""


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_openrooms_command_exits_2_listing_every_path_and_stores_nothing(
    command: str, tmp_path: Path
) -> None:
    db, url = empty_db(tmp_path / "db")
    wf_file = tmp_path / "bad.yaml"
    wf_file.write_text(MANY_PROBLEMS)
    done = subprocess.run(
        [sys.executable, "-m", "openrooms.cli", command, str(wf_file)],
        env={**os.environ, "OPENROOMS_DB": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    for path in (
        "id:",
        "nodes.b.type:",
        "nodes.d.tool:",
        "nodes.lonely:",
        "transitions[1]:",
        "transitions[2].to:",
        "transitions[2].when:",
    ):
        assert f"  {path} " in done.stderr, path
    assert "Traceback" not in done.stderr
    assert stored(db) == dict.fromkeys(TABLES, 0)
