"""Rooms and events as people see them: progress lines, log lines, graphs, the room JSON shape;
and the small message helpers every module shares."""

from __future__ import annotations

import collections
import types
from typing import Any

import pytest

from openrooms import RoomStatus, WorkflowBuilder, open_runtime, serde
from openrooms._wording import closest, did_you_mean, is_variable_name, type_name
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.graph import render_graph
from openrooms.present import ProgressPrinter, log_line, progress_line, short
from openrooms.types import RoomId


def event(
    kind: EventType,
    data: dict[str, Any],
    *,
    error: ErrorInfo | None = None,
    duration_ms: float | None = None,
) -> Event:
    return Event(
        RoomId("r1"), 7, kind, Level.INFO, 0, "n", data, error=error, duration_ms=duration_ms
    )


@pytest.mark.parametrize(
    ("e", "quiet", "verbose"),
    [
        (event(EventType.NODE_STARTED, {"attempt": 1}), None, "  > n (attempt 1)"),
        (event(EventType.NODE_STARTED, {"attempt": 2}), "  > n (attempt 2)", "  > n (attempt 2)"),
        (
            event(EventType.NODE_COMPLETED, {"outcome": "ok", "output": 5}, duration_ms=1.25),
            "  ok   n -> 5 (1.2 ms)",
            "  ok   n -> 5 (1.2 ms)",
        ),
        (
            event(EventType.NODE_FAILED, {"outcome": "error"}, error=ErrorInfo("E", "boom")),
            "  FAIL n [error] boom",
            "  FAIL n [error] boom",
        ),
        (
            event(EventType.RETRY_SCHEDULED, {"delay_ms": 1500, "attempt": 2}),
            "  ...  retrying n in 1.5 s (attempt 2)",
            "  ...  retrying n in 1.5 s (attempt 2)",
        ),
        (
            event(EventType.TRANSITION, {"from": "a", "on": "ok", "to": "b"}),
            None,
            "       a --ok--> b",
        ),
        (
            event(EventType.ROOM_CANCELLED, {"reason": "dup"}),
            "  room cancelled: dup",
            "  room cancelled: dup",
        ),
        (
            event(EventType.TOOL_CALLED, {"tool": "t", "args": {"x": 1}}),
            None,
            '       tool t({"x": 1})',
        ),
        (
            event(EventType.TOOL_CALLED, {"tool": "t", "args": {}, "refused": True}),
            "       tool t({}) REFUSED (not in the agent's tools)",
            "       tool t({}) REFUSED (not in the agent's tools)",
        ),
        (
            event(EventType.LLM_CALLED, {"model": "m"}, error=ErrorInfo("E", "rate limited")),
            "       model m failed: rate limited",
            "       model m failed: rate limited",
        ),
        (
            event(
                EventType.LLM_CALLED,
                {"model": "m", "turn": 1, "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
            ),
            None,
            "       model m turn 1: 4 tokens",
        ),
        (
            event(EventType.BRANCH_COMPLETED, {"branch": "a", "ok": False}),
            None,
            "       branch a FAILED",
        ),
        (
            event(EventType.BUDGET_EXCEEDED, {"budget": "max_tokens", "used": 12, "limit": 10}),
            "  budget exceeded: max_tokens 12 > 10",
            "  budget exceeded: max_tokens 12 > 10",
        ),
    ],
)
def test_progress_lines_say_what_happened_at_each_verbosity(
    e: Event, quiet: str | None, verbose: str | None
) -> None:
    assert progress_line(e) == quiet
    assert progress_line(e, verbose=True) == verbose


def test_the_progress_printer_writes_the_lines_of_a_real_run() -> None:
    wf = (
        WorkflowBuilder("count", variables={"i": 0})
        .set("inc", {"i": "{{ vars.i + 1 }}"})
        .end("done")
        .transition("inc", "inc", when="vars.i < 2")
        .transition("inc", "done")
        .build()
    )
    lines: list[str] = []
    with open_runtime("memory://") as rt:
        room = rt.create_room(wf)
        state = rt.run(room.id, on_event=ProgressPrinter(lines.append, verbose=True))
        logged = [log_line(e) for e in rt.events(room.id)]
    assert state.status is RoomStatus.COMPLETED
    started = [line.split(" (")[0] for line in lines if line.startswith("  >")]
    assert started == ["  > inc", "  > inc", "  > done"]
    assert "       inc --ok--> done" in lines
    assert logged[0].split()[0] == "1" and " INFO  ROOM_CREATED    -  " in logged[0]
    assert serde.room_to_dict(state)["workflow"] == {"id": "count", "version": 1}
    assert serde.room_to_dict(state)["id"] == room.id
    table = render_graph(wf, "table").splitlines()
    assert table[0] == "workflow count v1; start: inc"
    assert table[3:] == ["0  inc   ok  vars.i < 2  inc", "1  inc   ok  (default)   done"]
    assert render_graph(wf).splitlines()[:2] == ["stateDiagram-v2", "    [*] --> inc"]


def test_short_cuts_long_json_with_an_ellipsis() -> None:
    assert short({"a": 1}) == '{"a": 1}'
    assert short("x" * 100, 10) == '"xxxxxx...'


class Score(int):
    pass


@pytest.mark.parametrize(
    ("value", "schema", "expression", "file"),
    [
        (None, "null", "null", "nothing"),
        (True, "boolean", "boolean", "a boolean"),
        (3, "integer", "number", "a number"),
        (2.5, "number", "number", "a number"),
        ("s", "string", "string", "a string"),
        ([1], "array", "list", "a list"),
        ({"k": 1}, "object", "object", "a mapping"),
        # outside what JSON decodes to: a file's reader names the Python type
        ((1,), "array", "list", "tuple"),
        (types.MappingProxyType({}), "object", "object", "mappingproxy"),
        (collections.OrderedDict(), "object", "object", "OrderedDict"),
        (Score(1), "integer", "number", "Score"),
        (b"x", "bytes", "bytes", "bytes"),
    ],
)
def test_type_names_keep_each_readers_words(
    value: object, schema: str, expression: str, file: str
) -> None:
    assert type_name(value) == schema
    assert type_name(value, "expression") == expression
    assert type_name(value, "file") == file


def test_did_you_mean_names_the_near_miss_or_falls_back() -> None:
    assert closest("stauts", ["status", "steps"]) == "status"
    assert closest(12, ["status"]) is None
    assert did_you_mean("stauts", ["status"], "known: status") == "did you mean 'status'?"
    assert did_you_mean("zzz", ["status"], "known: status") == "known: status"
    assert did_you_mean("zzz", ["status"]) == ""


@pytest.mark.parametrize(
    ("name", "ok"),
    [("total", True), ("_private", False), ("2x", False), ("a-b", False), (3, False), ("é", True)],
)
def test_a_variable_name_is_an_identifier_not_starting_with_an_underscore(
    name: object, ok: bool
) -> None:
    assert is_variable_name(name) is ok
