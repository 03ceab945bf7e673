"""Re-running a room from its log: identical for deterministic rooms, and where not."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openrooms import (
    NodeContext,
    NodeExecutor,
    Outcome,
    RoomStatusError,
    Runtime,
    Workflow,
    WorkflowBuilder,
    register_node_type,
    serde,
    tool,
)
from openrooms.backends import MemoryStore, SQLiteStore
from openrooms.cli import cli
from openrooms.events import Event, EventType, Level
from openrooms.registries import Registries, validating_with
from openrooms.rerun import _in_branch_order, _key
from openrooms.room import RoomStatus
from openrooms.testing import memory_runtime
from openrooms.types import RoomId
from tests.conftest import BACKENDS, make_store

side_effects: Counter[str] = Counter()
ticks = itertools.count()


def rerun_charge(amount: int) -> dict[str, Any]:
    """A side effect that must not happen again in a re-run."""
    side_effects["charge"] += 1
    if side_effects["charge"] == 1:
        raise RuntimeError("card declined")  # the first attempt fails, then a retry works
    return {"charged": amount}


class Tick(NodeExecutor):
    """Not deterministic on purpose: a different number on every execution."""

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(next(ticks))


def register(registries: Registries) -> None:
    """The plugin hook: ``openrooms --plugin tests.unit.test_rerun`` knows this module's
    tool and node type."""
    tool(name="rerun_charge", registry=registries.tools)(rerun_charge)
    register_node_type("rerun_tick", Tick(), registry=registries.node_types)


REGISTRIES = Registries()
register(REGISTRIES)
PLUGIN = ["--plugin", __name__]


@pytest.fixture(autouse=True)
def _registries() -> Iterator[None]:
    with validating_with(REGISTRIES):
        yield


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    store = make_store(request.param, tmp_path)
    runtime = Runtime(store, store, registries=REGISTRIES)
    side_effects.clear()
    yield runtime
    runtime.close()


CHARGE = Workflow.from_yaml(
    """
id: charge
variables: {amount: 30}
nodes:
  approve: {type: wait, prompt: "charge {{ vars.amount }}?"}
  charge:
    type: tool
    tool: rerun_charge
    args: {amount: "{{ vars.amount }}"}
    retry: {max_attempts: 2, backoff_s: 0.01}
    output: receipt
  each:
    type: map
    items: [1, 2]
    node: {type: tool, tool: calculator, args: {expression: "x * 2", values: {x: "{{ item }}"}}}
    output: doubled
  done: {type: end}
transitions:
  - {from: approve, to: charge, when: "input.ok"}
  - {from: approve, to: done}
  - {from: charge, to: each}
  - {from: each, to: done}
""",
    source="charge.yaml",
    registries=REGISTRIES,
)


def test_a_deterministic_room_reruns_identically_without_repeating_side_effects(
    rt: Runtime,
) -> None:
    room = rt.run(rt.create_room(CHARGE).id)
    state = rt.send_input(room.id, {"ok": True})
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["doubled"] == [2, 4]
    assert side_effects["charge"] == 2
    report = rt.rerun(room.id)
    assert report.identical, report
    assert report.status == "completed"
    assert report.events == len(rt.events(room.id))
    assert side_effects["charge"] == 2  # answered from the log, not charged again


def test_a_nondeterministic_node_is_reported_where_it_diverges(rt: Runtime, tmp_path: Path) -> None:
    wf = serde.workflow_from_text(
        """
id: ticking
nodes:
  tick: {type: rerun_tick, output: n}
  done: {type: end}
transitions:
  - {from: tick, to: done}
"""
    )
    room = rt.run(rt.create_room(wf).id)
    report = rt.rerun(room.id)
    assert not report.identical
    completed = next(e for e in rt.events(room.id) if e.type.value == "NODE_COMPLETED")
    assert report.diverged_at == completed.seq
    assert report.expected is not None and report.got is not None
    assert report.expected["data"]["output"] != report.got["data"]["output"]


def test_the_cli_rerun_command_exits_by_the_verdict(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    flow = tmp_path / "loop.yaml"
    flow.write_text(
        "id: loop\nvariables: {i: 0}\nnodes:\n  inc: {type: set, assign: {i: '{{ vars.i + 1 }}'}}\n"
        "  done: {type: end}\ntransitions:\n  - {from: inc, to: inc, when: 'vars.i < 3'}\n"
        "  - {from: inc, to: done}\n"
    )
    runner = CliRunner()
    ran = runner.invoke(cli, ["--db", db, "run", str(flow), "--json"])
    assert ran.exit_code == 0, ran.output
    room_id = json.loads(ran.stdout.strip().splitlines()[-1])["id"]
    same = runner.invoke(cli, ["--db", db, *PLUGIN, "rerun", room_id])
    assert same.exit_code == 0, same.output
    assert same.stdout.startswith("identical:")
    wf = serde.workflow_from_text(
        "id: tick2\nnodes:\n  t: {type: rerun_tick, output: n}\n  done: {type: end}\n"
        "transitions:\n  - {from: t, to: done}\n"
    )
    store = SQLiteStore(tmp_path / "cli.db")
    other = Runtime(store, store, registries=REGISTRIES)
    ticking = other.run(other.create_room(wf).id)
    other.close()
    differs = runner.invoke(cli, ["--db", db, *PLUGIN, "rerun", ticking.id, "--json"])
    assert differs.exit_code == 1
    assert '"identical": false' in differs.stdout


def test_replay_is_a_hidden_deprecated_name_of_the_rerun_command(tmp_path: Path) -> None:
    """``openrooms replay`` (the old name) still re-runs, after a note; ``--help`` lists only
    ``rerun``, as ``replay`` in the Python API folds a log and never re-runs anything."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    flow = tmp_path / "one.yaml"
    flow.write_text("id: one\nnodes:\n  done: {type: end}\n")
    runner = CliRunner()
    ran = runner.invoke(cli, ["--db", db, "run", str(flow), "--json"])
    room_id = json.loads(ran.stdout.strip().splitlines()[-1])["id"]
    old = runner.invoke(cli, ["--db", db, "replay", room_id])
    new = runner.invoke(cli, ["--db", db, "rerun", room_id])
    assert old.exit_code == new.exit_code == 0, old.output
    assert old.stdout == new.stdout and new.stdout.startswith("identical:")
    assert "use `openrooms rerun`" in old.stderr and new.stderr == ""
    listed = runner.invoke(cli, ["--help"]).stdout
    assert "  rerun " in listed and "  replay " not in listed


def test_a_room_with_sub_workflows_reruns_identically(rt: Runtime) -> None:
    rt.register_workflow(
        serde.workflow_from_text(
            "id: rerun_child\nvariables: {n: 0}\nnodes:\n"
            "  charge: {type: tool, tool: rerun_charge, args: {amount: '{{ vars.n }}'},"
            " retry: {max_attempts: 2, backoff_s: 0}, output: r}\n"
            "  done: {type: end}\ntransitions:\n  - {from: charge, to: done}\n"
        )
    )
    parent = serde.workflow_from_text(
        """
id: rerun_parent
nodes:
  each:
    type: map
    items: [5]
    node: {type: subworkflow, workflow: rerun_child, input: {n: "{{ item }}"}}
    output: results
  done: {type: end}
transitions:
  - {from: each, to: done}
"""
    )
    room = rt.run(rt.create_room(parent).id)
    assert room.status is RoomStatus.COMPLETED
    assert room.variables["results"][0]["r"] == {"charged": 5}
    charged = side_effects["charge"]
    report = rt.rerun(room.id)
    assert report.identical, report
    assert side_effects["charge"] == charged


def test_a_room_that_has_not_finished_is_not_replayed() -> None:
    """Found by a hostile trial: a room stopped mid-run re-ran past the end of its log and
    was reported as diverged, as if something were not deterministic."""
    rt = memory_runtime()
    wf = (
        WorkflowBuilder("loop", variables={"n": 0})
        .set("a", {"n": "{{ vars.n + 1 }}"})
        .end("done")
        .transition("a", "done")
        .build()
    )
    room = rt.create_room(wf)
    with pytest.raises(RoomStatusError, match="cannot re-run it"):
        rt.rerun(room.room_id)
    rt.run(room.room_id)
    assert rt.rerun(room.room_id).identical


class ThreadedMemoryStore(MemoryStore):
    """A real MemoryStore that asks to be called from the runner's IO thread, as a network
    store does (``may_block``): the branches of a fan-out node then finish their calls in
    an order that depends on timing."""

    may_block = True


def test_branches_that_finish_in_another_order_still_rerun_identically() -> None:
    store = ThreadedMemoryStore()
    runtime = Runtime(store, store, registries=REGISTRIES)
    for _ in range(5):
        side_effects.clear()
        room = runtime.run(runtime.create_room(CHARGE).id)
        assert runtime.send_input(room.id, {"ok": True}).status is RoomStatus.COMPLETED
        report = runtime.rerun(room.id)
        assert report.identical, report
        assert side_effects["charge"] == 2
    runtime.close()


def _call(seq: int, node: str, scope: str | None, n: int) -> Event:
    data: dict[str, Any] = {"tool": "t", "result": n}
    if scope is not None:
        data["scope"] = scope
    return Event(RoomId("r"), seq, EventType.TOOL_CALLED, Level.INFO, 0, node, data)


def _done(seq: int, node: str, branch: str) -> Event:
    data = {"branch": branch, "ok": True}
    return Event(RoomId("r"), seq, EventType.BRANCH_COMPLETED, Level.INFO, 0, node, data)


def test_the_comparison_groups_the_calls_of_concurrent_branches_by_branch() -> None:
    started = Event(RoomId("r"), 1, EventType.NODE_STARTED, Level.INFO, 0, "each", {})
    # two runs of one map node whose branches 0 and 1 finished in different orders
    one = [started, _call(2, "each", "0", 1), _call(3, "each", "1", 2), _done(4, "each", "1")]
    one += [_done(5, "each", "0")]
    two = [started, _call(2, "each", "1", 2), _done(3, "each", "1"), _call(4, "each", "0", 1)]
    two += [_done(5, "each", "0")]
    assert [_key(e) for e in _in_branch_order(one)] == [_key(e) for e in _in_branch_order(two)]
    # within one branch the order still counts, and so does a call outside any branch
    swapped = [started, _done(2, "each", "0"), _call(3, "each", "0", 1)]
    kept = [started, _call(2, "each", "0", 1), _done(3, "each", "0")]
    assert [_key(e) for e in _in_branch_order(swapped)] != [_key(e) for e in _in_branch_order(kept)]
    plain = [started, _call(2, "agent", None, 1), _call(3, "agent", None, 2)]
    assert _in_branch_order(plain) == plain
    assert _in_branch_order(list(reversed(plain))) == list(reversed(plain))
