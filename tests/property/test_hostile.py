"""Hostile input, generated: mutations of the example workflows, wrong types in every field,
and hostile strings and numbers in every field, variable, input and tool result.

Properties: loading and validating raise only typed errors (``OpenRoomsError``); a workflow
that validates runs (offline: scripted model, no network) to a terminal or waiting state
with only typed errors; every stored room and event encodes as strict JSON and loads back;
no room is left ``running``.

The budget is fixed and small in every run (``OPENROOMS_HOSTILE_EXAMPLES``, default 25, in
the "hostile" profile of ``tests/conftest.py``); ``nox -s hostile`` runs it with 2,000.
"""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from openrooms import (
    OpenRoomsError,
    RoomStatus,
    Runtime,
    Workflow,
    default_tools,
    open_runtime,
    serde,
    tool,
)
from openrooms.llm import ModelRegistry
from openrooms.testing import ScriptedModel
from openrooms.tools import ToolRegistry
from tests.conftest import BACKENDS, drop_postgres_schema, postgres_url, redis_url

pytestmark = pytest.mark.timeout(600)

EXAMPLES = {
    p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
    for p in sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
}
HOSTILE = settings.get_profile("hostile")
MAX_STEPS = 60

# --- strategies ------------------------------------------------------------------------------

hostile_strings = st.one_of(
    st.sampled_from(
        [
            "\ud800",
            "a\udfffb",
            "\x00",
            "nul\x00inside",
            "\u202eevil\u202c",
            "{{",
            "}}",
            "{{ vars }}",
            "{{ vars.x }}",
            "{{ 1/0 }}",
            "{% if %}",
            "x" * 20_000,
            "é" * 5_000,
            "",
            " ",
            "\n",
            "NaN",
            "Infinity",
            "1e999",
        ]
    ),
    st.text(max_size=30),
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


hostile_numbers = st.sampled_from(
    [
        float("inf"),
        float("-inf"),
        float("nan"),
        1e308,
        -1e308,
        5e-324,
        2**63,
        -(2**63) - 1,
        10**400,
        10**1200,
        -1,
        0,
        True,
    ]
)
hostile_values = st.one_of(
    hostile_strings,
    hostile_numbers,
    st.just(nested(150)),
    st.just({"\ud800": 1}),
    st.just({"{{": "}}"}),
    st.lists(hostile_numbers, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "\x00"]), hostile_numbers, max_size=2),
)
wrong_types = st.sampled_from([None, True, False, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}])


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists (the root excluded), at most
    eight levels deep (deeper ones are inside hostile values already)."""
    found: list[tuple[Any, ...]] = []
    if len(prefix) >= 8:
        return found
    if isinstance(value, dict):
        for k, v in value.items():
            found.append((*prefix, k))
            found.extend(paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.append((*prefix, i))
            found.extend(paths(v, (*prefix, i)))
    return found


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    parent_of(doc, path)[path[-1]] = value


def _drop(doc: Any, path: tuple[Any, ...], _value: Any) -> None:
    parent = parent_of(doc, path)
    del parent[path[-1]]


def _duplicate(doc: Any, path: tuple[Any, ...], _value: Any) -> None:
    parent = parent_of(doc, path)
    if isinstance(parent, dict):
        parent[f"{path[-1]}_copy"] = copy.deepcopy(parent[path[-1]])
    else:
        parent.append(copy.deepcopy(parent[path[-1]]))


def _rename(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    parent = parent_of(doc, path)
    if isinstance(parent, dict):
        parent[value if isinstance(value, str) else str(value)] = parent.pop(path[-1])
    else:
        parent.reverse()


MUTATIONS: dict[str, Callable[[Any, tuple[Any, ...], Any], None]] = {
    "replace": _replace,
    "drop": _drop,
    "duplicate": _duplicate,
    "rename": _rename,
}


@st.composite
def mutated_examples(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[str, Any]:
    """An example workflow with one to three mutations, each at a drawn path."""
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    doc = copy.deepcopy(EXAMPLES[name])
    for _ in range(draw(st.integers(1, 3))):
        where = paths(doc)
        if not where:
            break
        path = draw(st.sampled_from(where))
        kind = draw(st.sampled_from(sorted(MUTATIONS)))
        MUTATIONS[kind](doc, path, copy.deepcopy(draw(values)))  # never mutate a shared one
    return name, doc


# --- running ---------------------------------------------------------------------------------


def hostile_tools(result: Any = None) -> ToolRegistry:
    """The default tools plus ``hostile``, which returns *result*."""
    registry = default_tools.copy()

    @tool(registry=registry, name="hostile")
    def hostile() -> Any:
        """Return the drawn hostile value."""
        return result

    return registry


async def _no_sleep(_seconds: float) -> None:
    """Retries are not waited out here: their delays may be days long."""


def runtime(kind: str, folder: str, tools: ToolRegistry, replies: list[Any]) -> Runtime:
    """A runtime on a fresh store of *kind*; close it with :func:`close`."""
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{folder}/hostile.db"
    elif kind == "postgres":
        url = postgres_url()  # a schema of its own, dropped by close()
    else:
        url = redis_url()  # a key prefix of its own, dropped when the test ends
    models = ModelRegistry(fallback=ScriptedModel(replies * 40))
    rt = open_runtime(url, tools=tools, models=models)
    rt.sleep = _no_sleep
    return rt


def close(rt: Runtime) -> None:
    rt.close()
    if rt.urls is not None and rt.urls.state.startswith("postgresql://"):
        drop_postgres_schema(rt.urls.state)


strict_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def assert_storable(rt: Runtime, room_id: str) -> None:
    """The room and its log encode as strict UTF-8 JSON and load back equal."""
    state = rt.get_room(room_id)
    text = strict_json(serde.state_to_dict(state))
    text.encode("utf-8")
    assert serde.state_from_dict(json.loads(text)) == state
    for event in rt.events(room_id):
        encoded = strict_json(serde.event_to_dict(event))
        encoded.encode("utf-8")
        assert serde.event_from_dict(json.loads(encoded)).seq == event.seq
    assert rt.replay(room_id) == state


def assert_none_running(rt: Runtime) -> None:
    stuck = rt.list_rooms(status="running", limit=10_000)
    assert stuck == [], [(r.room_id, r.current_node) for r in stuck]


def run_to_rest(rt: Runtime, wf: Workflow, inputs: list[Any]) -> None:
    """Create and run a room; feed it *inputs* while it waits. Only typed errors may escape."""
    room = rt.create_room(wf)
    state = rt.run(room.room_id)
    for data in inputs:
        if state.status is not RoomStatus.WAITING:
            break
        try:
            state = rt.send_input(room.room_id, data)
        except OpenRoomsError:
            state = rt.get_room(room.room_id)
    assert state.status in (
        RoomStatus.COMPLETED,
        RoomStatus.FAILED,
        RoomStatus.WAITING,
        RoomStatus.CANCELLED,
    ), state
    assert_storable(rt, room.room_id)
    assert_none_running(rt)


def load_typed(doc: Any, tools: ToolRegistry) -> Workflow | None:
    """Load *doc* from a dict and from JSON text: a workflow, or None after a typed error."""
    try:
        text = json.dumps(doc, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):  # not JSON text (the harness, not us)
        text = None
    if text is not None:
        with contextlib.suppress(OpenRoomsError):
            Workflow.from_yaml(text, tools=tools)
    try:
        wf = Workflow.from_dict(doc, tools=tools)
    except OpenRoomsError:
        return None
    assert Workflow.from_dict(wf.to_dict(), tools=tools) == wf
    if wf.max_steps > MAX_STEPS:  # keep each run short; loops still end at the step limit
        wf = attrs.evolve(wf, max_steps=MAX_STEPS)
    return wf


def exercise(doc: Any, kind: str, inputs: list[Any], replies: list[Any]) -> None:
    tools = hostile_tools()
    wf = load_typed(doc, tools)
    if wf is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        rt = runtime(kind, folder, tools, replies)
        try:
            run_to_rest(rt, wf, inputs)
        except OpenRoomsError:
            assert_none_running(rt)
        finally:
            close(rt)


backends = st.sampled_from(BACKENDS)  # memory, SQLite, Postgres and Redis
replies = st.lists(
    st.one_of(hostile_strings, st.just('{"label": "refund", "summary": "s"}')),
    min_size=1,
    max_size=3,
)


# --- the properties ----------------------------------------------------------------------------


@settings(HOSTILE)
@given(
    mutated_examples(st.one_of(hostile_values, wrong_types, st.sampled_from(["end", "wait"]))),
    backends,
    st.lists(st.one_of(hostile_values, st.just({"approved": True})), max_size=2),
    replies,
)
def test_mutated_examples_fail_typed_or_run_to_rest(
    example: tuple[str, Any], kind: str, inputs: list[Any], scripted: list[Any]
) -> None:
    exercise(example[1], kind, inputs, scripted)


@settings(HOSTILE)
@given(st.data())
def test_a_wrong_type_in_any_field_is_a_typed_error_or_runs(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(EXAMPLES)))
    doc = copy.deepcopy(EXAMPLES[name])
    path = data.draw(st.sampled_from(paths(doc)))
    _replace(doc, path, copy.deepcopy(data.draw(wrong_types)))
    exercise(doc, "memory", [{"approved": False}], ["ok"])


@settings(HOSTILE)
@given(st.data())
def test_a_hostile_value_in_any_field_is_a_typed_error_or_runs(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(EXAMPLES)))
    doc = copy.deepcopy(EXAMPLES[name])
    path = data.draw(st.sampled_from(paths(doc)))
    _replace(doc, path, copy.deepcopy(data.draw(hostile_values)))
    exercise(doc, data.draw(backends), [data.draw(hostile_values)], ["ok"])


FLOW = """
id: hostile_flow
variables: {given: 0}
nodes:
  call: {type: tool, tool: hostile, output: got}
  show: {type: set, assign: {shown: "{{ vars.got }}", again: "{{ vars.given }}"}}
  ask: {type: wait, prompt: "Saw {{ vars.shown }} and {{ vars.given }}", output: answer}
  echo: {type: set, assign: {said: "{{ vars.answer }}"}}
  done: {type: end, reason: "{{ vars.said }}"}
  failed: {type: end, status: failed, reason: refused}
transitions:
  - {from: call, to: show}
  - {from: call, to: failed, on: error}
  - {from: show, to: ask}
  - {from: show, to: failed, on: error}
  - {from: ask, to: echo}
  - {from: echo, to: done}
  - {from: echo, to: failed, on: error}
"""


@settings(HOSTILE)
@given(hostile_values, hostile_values, hostile_values, backends)
def test_hostile_variables_input_and_tool_results_never_stick_a_room(
    variable: Any, result: Any, given_input: Any, kind: str
) -> None:
    tools = hostile_tools(result)
    wf = Workflow.from_yaml(FLOW, tools=tools)
    with tempfile.TemporaryDirectory() as folder:
        rt = runtime(kind, folder, tools, ["ok"])
        try:
            try:
                room = rt.create_room(wf, variables={"given": variable})
            except OpenRoomsError:
                return
            state = rt.run(room.room_id)
            if state.status is RoomStatus.WAITING:
                try:
                    state = rt.send_input(room.room_id, given_input)
                except OpenRoomsError:
                    state = rt.get_room(room.room_id)
            assert state.status is not RoomStatus.RUNNING
            assert_storable(rt, room.room_id)
            assert rt.run(room.room_id).status is state.status  # resume: no traceback, no change
            assert_none_running(rt)
        finally:
            close(rt)
