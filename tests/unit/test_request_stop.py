"""Runtime.request_stop: runners stop at the next step boundary and the room stays resumable
(what the CLI's first Ctrl-C calls; tests/e2e/test_cli_signals.py sends the real signal)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrooms import EventType, RoomStatus, Runtime, ToolRegistry, default_tools, serde, tool
from openrooms.tools.registry import validating_with
from tests.conftest import BACKENDS, make_store

CHILD = """
id: stopping_child
nodes:
  stop_here: {type: tool, tool: ask_to_stop, output: asked}
  after: {type: set, assign: {later: true}}
  done: {type: end}
transitions:
  - {from: stop_here, to: after}
  - {from: after, to: done}
"""

PARENT = """
id: stopping_parent
nodes:
  call_child: {type: subworkflow, workflow: stopping_child, output: child_vars}
  done: {type: end}
transitions:
  - {from: call_child, to: done}
"""

LOOP = """
id: stopping_loop
variables: {i: 0}
nodes:
  add: {type: set, assign: {i: "{{ vars.i + 1 }}"}}
  stop_here: {type: tool, tool: ask_to_stop, output: asked}
  check: {type: decision}
  done: {type: end}
transitions:
  - {from: add, to: stop_here}
  - {from: stop_here, to: check}
  - {from: check, to: add, when: "vars.i < 3"}
  - {from: check, to: done}
"""


@pytest.fixture(params=BACKENDS)
def runtimes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    """A runtime whose tool asks it to stop, and a fresh one on the same store to resume."""
    store = make_store(request.param, tmp_path)
    tools = default_tools.copy()
    first = Runtime(store, store, tools=tools)

    @tool(name="ask_to_stop", registry=tools, replace=True)
    def ask_to_stop() -> bool:
        """Ask the runtime running this room to stop after this step."""
        first.request_stop()
        return True

    yield first, Runtime(store, store, tools=tools)
    store.close()


def build(text: str, tools: ToolRegistry) -> Any:
    with validating_with(tools):
        return serde.workflow_from_text(text, source="test.yaml")


def test_a_stop_request_ends_the_run_after_the_step_in_progress(
    runtimes: tuple[Runtime, Runtime],
) -> None:
    first, second = runtimes
    room = first.create_room(build(LOOP, first.tools))
    assert not first.stop_requested
    stopped = first.run(room.id)
    assert first.stop_requested
    assert stopped.status is RoomStatus.RUNNING  # not failed: resumable
    assert stopped.variables == {"i": 1, "asked": True}  # the tool's step was committed
    again = first.run(room.id)  # still asked to stop: no node runs
    assert (again.current_node, again.variables) == (stopped.current_node, stopped.variables)

    final = second.run(room.id)
    assert final.status is RoomStatus.COMPLETED and final.variables["i"] == 3
    completed = [e.node for e in second.events(room.id) if e.type is EventType.NODE_COMPLETED]
    assert completed.count("add") == 3  # nothing committed ran twice


def test_a_stop_inside_a_child_room_leaves_the_parent_node_unfailed_and_resumable(
    runtimes: tuple[Runtime, Runtime],
) -> None:
    first, second = runtimes
    first.register_workflow(build(CHILD, first.tools))
    parent = first.create_room(build(PARENT, first.tools))
    stopped = first.run(parent.id)
    assert stopped.status is RoomStatus.RUNNING and stopped.current_node == "call_child"
    failures = [e for e in first.events(parent.id) if e.type is EventType.NODE_FAILED]
    assert failures == []  # the stop is not the child's failure
    (child,) = [r for r in first.list_rooms() if r.workflow_id == "stopping_child"]
    assert child.status is RoomStatus.RUNNING and child.current_node == "after"

    final = second.run(parent.id)
    assert final.status is RoomStatus.COMPLETED
    assert final.variables["child_vars"] == {"asked": True, "later": True}
    assert second.get_room(child.id).status is RoomStatus.COMPLETED
