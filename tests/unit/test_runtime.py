"""Whole rooms through the runtime, on every backend: waits, retries, timeouts, limits, replay."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from openrooms import (
    EventType,
    NodeContext,
    NodeExecutor,
    Outcome,
    RoomStatus,
    RoomStatusError,
    Runtime,
    SchemaValidationError,
    ToolContext,
    ToolRegistry,
    WorkflowBuilder,
    WorkflowConflictError,
    load_workflow,
    register_node_type,
    tool,
)
from openrooms.testing import ManualClock
from tests.conftest import BACKENDS, make_store

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    store = make_store(request.param, tmp_path)
    runtime = Runtime(store, store)
    yield runtime
    runtime.close()


def types_of(rt: Runtime, room_id: str) -> list[EventType]:
    return [e.type for e in rt.events(room_id)]


def test_small_order_completes_without_waiting(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 40})
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["total"] == 48.0
    assert state.variables["state"] == "fulfilled"
    assert EventType.ROOM_WAITING not in types_of(rt, room.id)


def test_large_order_waits_then_input_approves_it(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 250})
    waiting = rt.run(room.id)
    assert waiting.status is RoomStatus.WAITING
    assert waiting.current_node == "approval"
    prompt = rt.events(room.id, types=[EventType.ROOM_WAITING])[0].data["prompt"]
    assert prompt == "Approve the order of 300.0?"
    done = rt.send_input(room.id, {"approved": True, "by": "sam"})
    assert done.status is RoomStatus.COMPLETED
    assert done.variables["approved_by"] == "sam"
    assert done.variables["decision"] == {"approved": True, "by": "sam"}


def test_rejection_fails_the_room_with_the_end_nodes_reason(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 250})
    rt.run(room.id)
    state = rt.send_input(room.id, {"approved": False})
    assert state.status is RoomStatus.FAILED
    assert state.reason == "order of 300.0 was rejected"


def test_input_breaking_the_schema_is_refused_and_nothing_is_written(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 250})
    before = rt.run(room.id)
    with pytest.raises(SchemaValidationError, match="approved"):
        rt.send_input(room.id, {"approved": "yes please"})
    assert rt.get_room(room.id) == before
    assert len(rt.events(room.id)) == before.version


def test_input_to_a_room_that_is_not_waiting_is_refused(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "savings_loop.yaml"))
    rt.run(room.id)
    with pytest.raises(RoomStatusError, match="completed"):
        rt.send_input(room.id, {"x": 1})


def test_failing_step_is_retried_then_routed_by_on_error(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "safe_division.yaml"), {"denominator": 0})
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["used_fallback"] is True
    failed = rt.events(room.id, types=[EventType.NODE_FAILED])
    assert [e.data["attempt"] for e in failed] == [1, 2, 3]
    retries = rt.events(room.id, types=[EventType.RETRY_SCHEDULED])
    assert [e.data["delay_ms"] for e in retries] == [50, 100]
    keys = [e.data["idempotency_key"] for e in rt.events(room.id, types=[EventType.TOOL_CALLED])]
    assert len(set(keys)) == 3 and all(k.startswith(f"{room.id}:divide:1:") for k in keys)


def test_successful_step_is_not_retried(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "safe_division.yaml"), {"denominator": 4})
    state = rt.run(room.id)
    assert state.variables["result"] == 2.5
    assert EventType.RETRY_SCHEDULED not in types_of(rt, room.id)


def test_a_loop_runs_to_its_end_and_replay_equals_the_stored_state(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "savings_loop.yaml"))
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["balance"] >= 1500
    assert state.variables["year"] == len(state.variables["history"]) == 9
    assert rt.replay(room.id) == state == rt.get_room(room.id)


def test_the_step_limit_fails_a_runaway_loop(rt: Runtime) -> None:
    wf = (
        WorkflowBuilder("forever", max_steps=25, variables={"i": 0})
        .set("spin", {"i": "{{ vars.i + 1 }}"})
        .end("never")
        .transition("spin", "spin", when="true")
        .transition("spin", "never")
        .build()
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.FAILED
    assert state.reason is not None and "step limit of 25" in state.reason
    assert state.variables["i"] == 25


def test_a_sync_tool_that_overruns_times_out_and_its_late_result_is_dropped(rt: Runtime) -> None:
    release = threading.Event()
    tools = ToolRegistry()

    @tool(registry=tools)
    def stuck(value: int) -> int:
        release.wait(30)  # ignores cancellation, like real blocking code
        return value

    rt.tools = tools
    wf = (
        WorkflowBuilder("slow")
        .tool("call", "stuck", {"value": 1}, output="late", timeout_s=0.05)
        .set("fallback", {"timed_out": True})
        .end("done")
        .transition("call", "done")
        .transition("call", "fallback", on="timeout")
        .transition("fallback", "done")
        .build(registries=rt.registries)
    )
    state = rt.run(rt.create_room(wf).id)
    release.set()
    assert state.status is RoomStatus.COMPLETED
    assert state.variables == {"timed_out": True}
    failed = rt.events(state.id, types=[EventType.NODE_FAILED])
    assert failed[0].data["outcome"] == "timeout"


def test_timeout_without_a_timeout_route_falls_back_to_on_error(rt: Runtime) -> None:
    class Sleepy(NodeExecutor):
        async def execute(self, ctx: NodeContext) -> Outcome:
            import asyncio

            await asyncio.sleep(10)
            return Outcome.ok()

    rt.node_types.register("sleepy_for_test", Sleepy())
    wf = (
        WorkflowBuilder("sleepy")
        .node("nap", "sleepy_for_test", timeout_s=0.02)
        .end("ok")
        .end("bad", status="failed", reason="{{ 'took too long' }}")
        .transition("nap", "ok")
        .transition("nap", "bad", on="error")
        .build(registries=rt.registries)
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.FAILED and state.reason == "took too long"


def test_no_matching_transition_fails_the_room_naming_node_and_outcome(rt: Runtime) -> None:
    wf = (
        WorkflowBuilder("strict")
        .tool("calc", "calculator", {"expression": "1/0"})
        .end("done")
        .transition("calc", "done")
        .build()
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.FAILED
    assert state.reason is not None
    assert "node 'calc'" in state.reason and "outcome 'error'" in state.reason


def test_a_custom_node_type_registers_an_executor_and_routes_on_its_label(rt: Runtime) -> None:
    """The seed's "Adding New Node Types", in Python."""

    class Classify(NodeExecutor):
        async def execute(self, ctx: NodeContext) -> Outcome:
            text = str(ctx.variables["text"])
            return Outcome.ok(text.upper(), label="shout" if text.endswith("!") else "ok")

    register_node_type("classify_for_test", Classify(), registry=rt.node_types)
    wf = (
        WorkflowBuilder("custom", variables={"text": "hi!"})
        .node("c", "classify_for_test", output="said")
        .end("loud")
        .end("calm")
        .transition("c", "loud", on="shout")
        .transition("c", "calm")
        .build(registries=rt.registries)
    )
    state = rt.run(rt.create_room(wf).id)
    assert state.current_node == "loud"
    assert state.variables["said"] == "HI!"


def test_tools_receive_the_attempts_idempotency_key(rt: Runtime) -> None:
    seen: list[str] = []

    @tool(name="remember_key_for_test", registry=rt.tools)
    def remember(note: str, ctx: ToolContext) -> str:
        seen.append(ctx.idempotency_key)
        return note

    wf = (
        WorkflowBuilder("keys")
        .tool("t", "remember_key_for_test", {"note": "x"}, output="n")
        .end("done")
        .transition("t", "done")
        .build(registries=rt.registries)
    )
    room = rt.create_room(wf)
    rt.run(room.id)
    assert seen == [f"{room.id}:t:1:1"]


def test_rooms_pin_their_workflow_version(rt: Runtime) -> None:
    v1 = (
        WorkflowBuilder("pinned", version=1)
        .set("a", {"v": 1})
        .end("e")
        .transition("a", "e")
        .build()
    )
    v2 = (
        WorkflowBuilder("pinned", version=2)
        .set("a", {"v": 2})
        .end("e")
        .transition("a", "e")
        .build()
    )
    room = rt.create_room(v1)
    rt.register_workflow(v2)
    assert rt.run(room.id).variables["v"] == 1
    assert rt.run(rt.create_room("pinned").id).variables["v"] == 2


def test_registering_other_content_under_the_same_version_is_refused(rt: Runtime) -> None:
    rt.register_workflow(WorkflowBuilder("same").set("a", {"v": 1}).end("e").transition("a", "e"))
    rt.register_workflow(WorkflowBuilder("same").set("a", {"v": 1}).end("e").transition("a", "e"))
    with pytest.raises(WorkflowConflictError, match="bump 'version'"):
        rt.register_workflow(
            WorkflowBuilder("same").set("a", {"v": 9}).end("e").transition("a", "e")
        )


def test_cancel_stops_a_waiting_room_and_a_second_cancel_is_refused(rt: Runtime) -> None:
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 500})
    rt.run(room.id)
    state = rt.cancel(room.id, reason="duplicate")
    assert state.status is RoomStatus.CANCELLED and state.reason == "duplicate"
    with pytest.raises(RoomStatusError):
        rt.cancel(room.id)


def test_bad_variables_are_refused_before_anything_is_stored(rt: Runtime) -> None:
    wf = load_workflow(EXAMPLES / "savings_loop.yaml")
    with pytest.raises(SchemaValidationError, match="not a JSON value"):
        rt.create_room(wf, {"x": object()})
    with pytest.raises(SchemaValidationError, match="variable name"):
        rt.create_room(wf, {"no good": 1})
    with pytest.raises(SchemaValidationError) as info:
        rt.create_room(wf, {"2x": 1})  # the hint names both rules, as a workflow's does
    assert info.value.problems[0].hint.endswith("not starting with a digit or _")
    assert rt.list_rooms() == []


def test_a_wait_times_out_on_the_runtimes_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    store = make_store("sqlite", tmp_path)
    rt = Runtime(store, store, clock=clock)
    room = rt.create_room(load_workflow(EXAMPLES / "order_approval.yaml"), {"amount": 500})
    assert rt.run(room.id).status is RoomStatus.WAITING
    clock.advance(86_399_000)
    assert rt.run(room.id).status is RoomStatus.WAITING
    clock.advance(2_000)
    state = rt.run(room.id)
    assert state.status is RoomStatus.FAILED
    assert state.current_node == "expired"
    rt.close()


def test_templates_read_room_fields_in_every_kind_of_node(rt: Runtime) -> None:
    wf = (
        WorkflowBuilder("roomy", variables={"n": 1})
        .set("one", {"id": "{{ room.id }}"})
        .set("many", {"n": "{{ vars.n + 1 }}", "where": "{{ room.workflow }}:{{ vars.n }}"})
        .end("done", status="failed", reason="{{ room.name }} ended after {{ room.steps }}")
        .transition("one", "many")
        .transition("many", "done", when="room.attempt == 1")
        .build()
    )
    room = rt.create_room(wf, name="my room")
    state = rt.run(room.id)
    assert state.variables == {"n": 2, "id": room.id, "where": "roomy:2"}
    assert state.reason == "my room ended after 3"


def test_a_class_based_tool_validates_its_arguments_and_gets_the_context(rt: Runtime) -> None:
    from openrooms.tools import BaseTool

    calls: list[tuple[dict[str, object], str]] = []

    class Refund(BaseTool):
        """Refund an order.

        More detail that is not part of the description."""

        name = "refund_for_test"
        parameters: ClassVar[dict[str, Any]] = {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["order_id", "amount"],
            "additionalProperties": False,
        }

        async def run(self, args: Any, ctx: ToolContext) -> dict[str, object]:
            calls.append((dict(args), ctx.idempotency_key))
            return {"refunded": args["amount"]}

    rt.tools.register(Refund())
    described = {d["name"]: d for d in rt.describe_tools()}
    assert described["refund_for_test"]["description"] == "Refund an order."
    assert described["refund_for_test"]["parameters"]["required"] == ["order_id", "amount"]
    wf = (
        WorkflowBuilder("refunds", variables={"amount": 5})
        .tool(
            "pay", "refund_for_test", {"order_id": "A1", "amount": "{{ vars.amount }}"}, output="r"
        )
        .tool("bad", "refund_for_test", {"order_id": 7, "amount": 1})
        .end("done")
        .end("failed_end", status="failed", reason="refused")
        .transition("pay", "bad")
        .transition("bad", "done")
        .transition("bad", "failed_end", on="error")
        .build(registries=rt.registries)
    )
    room = rt.create_room(wf)
    state = rt.run(room.id)
    assert state.variables["r"] == {"refunded": 5}
    assert calls == [({"order_id": "A1", "amount": 5}, f"{room.id}:pay:1:1")]
    assert state.current_node == "failed_end"  # bad arguments never reached run()
    failed = rt.events(room.id, types=[EventType.NODE_FAILED])
    assert "order_id" in failed[0].error.message  # type: ignore[union-attr]


def test_a_workflow_can_name_tools_that_live_only_in_the_runtimes_registry(
    tmp_path: Path,
) -> None:
    from openrooms import WorkflowValidationError
    from openrooms.backends import SQLiteStore

    mine = ToolRegistry()

    @tool(registry=mine)
    def private_double(n: int) -> int:
        """Only in this registry."""
        return n * 2

    def build(tools: ToolRegistry | None) -> Any:
        return (
            WorkflowBuilder("private-tools")
            .tool("t", "private_double", {"n": 21}, output="x")
            .end("done")
            .transition("t", "done")
            .build(tools=tools)
        )

    with pytest.raises(WorkflowValidationError) as info:
        build(None)  # the default registries have no such tool
    assert "nodes.t.tool" in [p.path for p in info.value.problems]
    store = SQLiteStore(tmp_path / "private.db")
    rt = Runtime(store, store, tools=mine)
    room = rt.create_room(build(mine))
    # a second runtime (another process, say) loads the stored definition with its tools
    other = SQLiteStore(tmp_path / "private.db")
    fresh = Runtime(other, other, tools=mine)
    assert fresh.run(room.id).variables == {"x": 42}
    fresh.close()
    rt.close()
