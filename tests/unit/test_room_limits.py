"""Trees of sub-workflow rooms are bounded: static cycles are refused, and at run time a
depth limit and a limit on the rooms one root room creates fail the room cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openrooms import (
    EventType,
    RoomLimitError,
    RoomStatus,
    Runtime,
    Workflow,
    WorkflowValidationError,
    open_runtime,
)
from openrooms.backends import StoredWorkflow
from openrooms.cli import cli
from openrooms.config import RuntimeConfig
from openrooms.nodes.fanout import lineage_of
from openrooms.runtime import workflow_digest

pytestmark = pytest.mark.timeout(60)


def calling(wf_id: str, target: str, *, fan: int = 0, budget: str = "") -> Workflow:
    """A workflow whose first node runs *target* as a sub-workflow (*fan* times, in a map)."""
    if fan:
        call = (
            f"{{type: map, items: {list(range(fan))}, "
            f"node: {{type: subworkflow, workflow: {target}}}, concurrency: 4}}"
        )
    else:
        call = f"{{type: subworkflow, workflow: {target}}}"
    return Workflow.from_yaml(
        f"id: {wf_id}\n{budget}\nnodes:\n  call: {call}\n  done: {{type: end}}\n"
        "transitions:\n  - {from: call, to: done}\n"
    )


def store_unchecked(rt: Runtime, wf: Workflow) -> None:
    """Store a definition as another process (or an older version) could have: unchecked."""
    definition = wf.to_dict()
    rt.states.put_workflow(
        StoredWorkflow(wf.id, wf.version, workflow_digest(definition), definition, rt.now())
    )


def cycle(rt: Runtime, *, fan: int = 0, budget: str = "") -> None:
    """Store ``a`` (runs ``b``) and ``b`` (runs ``a``): a cycle no registration would accept."""
    store_unchecked(rt, calling("a", "b", fan=fan, budget=budget))
    store_unchecked(rt, calling("b", "a", fan=fan))


def assert_none_running(rt: Runtime) -> None:
    for status in ("running", "created", "queued"):
        assert rt.list_rooms(status=status, limit=10_000) == [], status


# --- static cycles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "path"),
    [
        ("{type: subworkflow, workflow: me}", "nodes.call.workflow"),
        (
            "{type: map, items: [1, 2], node: {type: subworkflow, workflow: me}}",
            "nodes.call.node.workflow",
        ),
        (
            "{type: parallel, branches: {x: {type: subworkflow, workflow: me, output: x}}}",
            "nodes.call.branches.x.workflow",
        ),
    ],
)
def test_a_workflow_that_runs_itself_as_a_subworkflow_is_refused(call: str, path: str) -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        Workflow.from_yaml(
            f"id: me\nnodes:\n  call: {call}\n  done: {{type: end}}\n"
            "transitions:\n  - {from: call, to: done}\n"
        )
    text = str(caught.value)
    assert f"{path}: workflow 'me' runs itself as a sub-workflow" in text


def test_registering_a_cycle_through_stored_workflows_is_refused_with_its_path(
    tmp_path: Path,
) -> None:
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}") as rt:
        rt.register_workflow(calling("a", "b"))
        rt.register_workflow(calling("b", "c"))
        with pytest.raises(WorkflowValidationError) as caught:
            rt.register_workflow(calling("c", "a"))
        assert "nodes.call.workflow: sub-workflow cycle: c -> a -> b -> c" in str(caught.value)
        with pytest.raises(WorkflowValidationError):  # also through create_room
            rt.create_room(calling("c", "a"))
        rt.register_workflow(calling("c", "d"))  # no cycle: fine


def test_a_new_version_closing_a_cycle_is_refused(tmp_path: Path) -> None:
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}") as rt:
        rt.register_workflow(calling("a", "b"))
        rt.register_workflow(
            Workflow.from_yaml("id: b\nnodes:\n  done: {type: end}\n")
        )  # b v1 runs nothing
        b2 = calling("b", "a").to_dict() | {"version": 2}
        with pytest.raises(WorkflowValidationError, match=r"cycle: b -> a -> b"):
            rt.register_workflow(Workflow.from_dict(b2))


# --- limits at run time -----------------------------------------------------------------------


def test_a_self_nesting_tree_stops_at_the_depth_limit_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """Before: each room started another until a RecursionError left one `running`."""
    config = RuntimeConfig(max_depth=3)
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}", config=config) as rt:
        cycle(rt)
        root = rt.create_room("a")
        done = rt.run(root.room_id)
        assert done.status is RoomStatus.FAILED
        assert "RoomLimitError" in (done.reason or "")
        rooms = rt.list_rooms(limit=1000)
        assert len(rooms) == 4  # the root and three levels below it
        assert {r.status for r in rooms} == {RoomStatus.FAILED}
        assert_none_running(rt)
        deepest = max(rooms, key=lambda r: len(r.room_id))
        lineage = lineage_of(rt, deepest.room_id)
        assert lineage is not None
        assert (lineage["depth"], lineage["root"]) == (3, root.room_id)
        reason = deepest.reason or ""
        assert "sub-workflow rooms nest at most 3 deep" in reason
        assert "budget.max_depth" in reason  # how to raise it
        failed = [e for e in rt.events(deepest.room_id) if e.type == "NODE_FAILED"]
        assert failed[0].error is not None and failed[0].error.type == "RoomLimitError"
        assert len(failed) == 1  # not retried


def test_the_default_depth_limit_is_eight() -> None:
    assert (RuntimeConfig().max_depth, RuntimeConfig().max_rooms) == (8, 1000)


def test_a_fanned_out_tree_stops_at_the_rooms_limit(tmp_path: Path) -> None:
    """Before: a map over its own workflow made 57,064 rooms in 90 s, 57,063 left running."""
    config = RuntimeConfig(max_rooms=10)
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}", config=config) as rt:
        cycle(rt, fan=3)
        root = rt.create_room("a")
        done = rt.run(root.room_id)
        assert done.status is RoomStatus.FAILED
        rooms = rt.list_rooms(limit=10_000)
        assert len(rooms) == 1 + 10
        assert_none_running(rt)
        texts = " ".join(r.reason or "" for r in rooms)
        assert "one root room may create at most 10 sub-workflow rooms" in texts
        assert "budget.max_rooms" in texts


def test_a_root_workflows_budget_sets_the_limits_for_its_whole_tree(tmp_path: Path) -> None:
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}") as rt:
        cycle(rt, budget="budget: {max_depth: 1}")
        root = rt.create_room("a")
        done = rt.run(root.room_id)
        assert done.status is RoomStatus.FAILED
        assert len(rt.list_rooms(limit=100)) == 2
        assert_none_running(rt)


def test_a_subworkflows_own_budget_only_lowers_its_trees_limits(tmp_path: Path) -> None:
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}") as rt:
        store_unchecked(rt, calling("a", "b", budget="budget: {max_depth: 2}"))
        store_unchecked(rt, calling("b", "a", budget="budget: {max_depth: 30}"))
        rt.run(rt.create_room("a").room_id)
        assert len(rt.list_rooms(limit=100)) == 3  # b's 30 did not raise a's 2


def test_max_depth_zero_forbids_subworkflows(tmp_path: Path) -> None:
    with open_runtime("memory://", config=RuntimeConfig(max_depth=0)) as rt:
        rt.register_workflow(Workflow.from_yaml("id: leaf\nnodes:\n  done: {type: end}\n"))
        room = rt.create_room(calling("top", "leaf"))
        done = rt.run(room.room_id)
        assert done.status is RoomStatus.FAILED
        assert "nest at most 0 deep" in (done.reason or "")


def test_a_legal_tree_within_its_limits_completes(tmp_path: Path) -> None:
    with open_runtime(f"sqlite:///{tmp_path / 'r.db'}") as rt:
        rt.register_workflow(Workflow.from_yaml("id: leaf\nnodes:\n  done: {type: end}\n"))
        rt.register_workflow(calling("mid", "leaf", fan=3))
        room = rt.create_room(calling("top", "mid", fan=2))
        assert rt.run(room.room_id).status is RoomStatus.COMPLETED
        assert len(rt.list_rooms(limit=100)) == 1 + 2 + 6


ASKS_THEN_CALLS = """
id: asker
budget: {max_rooms: 2}
nodes:
  ask: {type: wait, prompt: "again?"}
  call: {type: subworkflow, workflow: leaf}
transitions:
  - {from: ask, to: call}
  - {from: call, to: ask}
  - {from: call, to: ask, on: error}
"""


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_rooms_limit_holds_across_runtimes_and_processes(tmp_path: Path, kind: str) -> None:
    """The tree's rooms are counted in the store: a runtime that never saw the earlier
    children (another process, a worker, a restart) still counts them."""
    db = "memory://limit-tree" if kind == "memory" else f"sqlite:///{tmp_path / 'r.db'}"
    with open_runtime(db) as rt:
        rt.register_workflow(Workflow.from_yaml("id: leaf\nnodes:\n  done: {type: end}\n"))
        room = rt.run(rt.create_room(Workflow.from_yaml(ASKS_THEN_CALLS)).room_id)
    children = []
    for _ in range(3):
        with open_runtime(db) as fresh:  # nothing about the tree in this one's memory
            room = fresh.send_input(room.room_id, {})
            assert room.status is RoomStatus.WAITING
            children = [r for r in fresh.list_rooms() if r.workflow_id == "leaf"]
            errors = [e for e in fresh.events(room.room_id) if e.type is EventType.NODE_FAILED]
    assert len(children) == 2
    assert len(errors) == 1 and errors[0].error is not None
    assert errors[0].error.type == "RoomLimitError"
    assert "at most 2 sub-workflow rooms" in errors[0].error.message


def test_limits_come_from_the_runtime_config_file(tmp_path: Path) -> None:
    assert RuntimeConfig.from_dict({"rooms": {"max_depth": 2, "max_rooms": 50}}).max_rooms == 50
    from openrooms.errors import SchemaValidationError

    with pytest.raises(SchemaValidationError, match=r"rooms.max_depth: expected a whole number"):
        RuntimeConfig.from_dict({"rooms": {"max_depth": 10**9}})
    with pytest.raises(SchemaValidationError, match=r"rooms.depth: unknown setting"):
        RuntimeConfig.from_dict({"rooms": {"depth": 2}})


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("{max_depth: -1}", "budget.max_depth: expected a whole number from 0 to 32"),
        ("{max_rooms: 10000000000}", "budget.max_rooms: expected a whole number"),
        ("{max_depth: 2.5}", "budget.max_depth: expected a whole number"),
    ],
)
def test_budget_limits_are_validated(budget: str, message: str) -> None:
    with pytest.raises(WorkflowValidationError, match=message):
        Workflow.from_yaml(f"id: w\nbudget: {budget}\nnodes:\n  done: {{type: end}}\n")


def test_budget_limits_round_trip_through_the_file_format() -> None:
    wf = Workflow.from_yaml(
        "id: w\nbudget: {max_depth: 2, max_rooms: 5}\nnodes:\n  done: {type: end}\n"
    )
    assert wf.budget is not None and (wf.budget.max_depth, wf.budget.max_rooms) == (2, 5)
    assert Workflow.from_dict(wf.to_dict()) == wf


def test_the_cli_reports_the_limit_and_resume_does_not_traceback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "openrooms.yaml"
    config.write_text("rooms: {max_depth: 2}\n")
    with open_runtime(db) as rt:
        cycle(rt)
        room_id = rt.create_room("a").room_id
    runner = CliRunner()
    args: list[Any] = ["--db", db, "--config", str(config)]
    first = runner.invoke(cli, [*args, "resume", room_id])
    assert first.exit_code == 1, first.output
    assert first.exception is None or isinstance(first.exception, SystemExit)
    again = runner.invoke(cli, [*args, "resume", room_id])
    assert "Traceback" not in again.output
    assert again.exception is None or isinstance(again.exception, SystemExit)
    with open_runtime(db) as rt:
        assert_none_running(rt)


def test_room_limit_error_says_which_limit_and_how_to_raise_it() -> None:
    text = str(RoomLimitError("r1", "max_rooms", 7))
    assert "at most 7 sub-workflow rooms" in text
    assert "budget.max_rooms" in text and "rooms.max_rooms" in text
