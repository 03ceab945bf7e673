"""Values no store can keep (inf, NaN, lone surrogates, huge integers, deep nesting) are
refused where they enter a room: the node fails with UnstorableValueError, the room stays
saveable, and ``resume`` never shows a traceback. ``validate`` refuses numbers no run can use.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from openrooms import (
    ExpressionError,
    RoomStatus,
    SchemaValidationError,
    UnstorableValueError,
    Workflow,
    WorkflowValidationError,
    default_tools,
    open_runtime,
    tool,
)
from openrooms.cli import cli
from openrooms.config import RuntimeConfig
from openrooms.expressions import calculate, compile_expression
from openrooms.storable import MAX_DEPTH, check_storable, find_unstorable
from openrooms.tools import HttpPolicy, ToolRegistry

pytestmark = pytest.mark.timeout(60)

HOSTILE_IDS = ["inf", "-inf", "nan", "surrogate", "huge-int", "int-key", "surrogate-key", "set"]
HOSTILE: list[tuple[Any, str]] = [
    (float("inf"), "is inf"),
    (float("-inf"), "is -inf"),
    (float("nan"), "is nan"),
    ("ok \ud800", "lone surrogate (\\ud800 at index 3)"),
    (10**1000, "is an integer of more than 1000 digits"),
    ({1: "x"}, "has a key 1 that is not a string"),
    ({"\udfff": 1}, "has a key that is a string with a lone surrogate"),
    ({1, 2}, "is a set, not a JSON value"),
]


@pytest.fixture(params=["memory", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'r.db'}"


def tools_returning(value: Any) -> tuple[ToolRegistry, list[int]]:
    """A registry with a tool ``fetch`` that returns *value*, and its call counter."""
    registry = default_tools.copy()
    calls: list[int] = []

    @tool(registry=registry, name="fetch")
    def fetch() -> Any:
        """Return the hostile value."""
        calls.append(1)
        return value

    return registry, calls


ROUTED = """
id: routed
nodes:
  fetch: {type: tool, tool: fetch, output: got}
  done: {type: end}
  handled: {type: end, status: failed, reason: "handled: {{ vars.why }}"}
  note: {type: set, assign: {why: "stored"}}
transitions:
  - {from: fetch, to: done}
  - {from: fetch, to: note, on: error}
  - {from: note, to: handled}
"""


# --- the check itself ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), HOSTILE, ids=HOSTILE_IDS)
def test_each_unstorable_value_is_named_with_its_path(value: Any, problem: str) -> None:
    found = find_unstorable({"items": [{}, {"price": value}]})
    assert found is not None
    path, text = found
    assert path in ("$.items[1].price", "$.items[1]")
    assert problem in text


def test_the_message_names_where_and_the_json_path() -> None:
    with pytest.raises(UnstorableValueError) as caught:
        check_storable({"items": [0, 1, 2, {"price": float("inf")}]}, "nodes.fetch output")
    assert str(caught.value).startswith("nodes.fetch output: $.items[3].price is inf")
    assert isinstance(caught.value, ValueError)


def test_nesting_past_the_limit_is_refused_without_recursion_error() -> None:
    deep: Any = 1
    for _ in range(50_000):
        deep = [deep]
    found = find_unstorable(deep)
    assert found is not None and f"more than {MAX_DEPTH} levels" in found[1]
    shallow: Any = 1
    for _ in range(MAX_DEPTH - 1):
        shallow = {"a": shallow}
    assert find_unstorable(shallow) is None


def test_odd_keys_are_quoted_in_the_path() -> None:
    found = find_unstorable({"a b": {"é\udc80": 1}})
    assert found is not None and found[0] == '$["a b"]'


# --- tool results ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), HOSTILE[:5], ids=HOSTILE_IDS[:5])
def test_a_tool_result_that_cannot_be_stored_fails_the_node_and_routes_on_error(
    db: str, value: Any, problem: str
) -> None:
    """Before: the step's commit raised in the runner; the room stayed `running` for good."""
    registry, calls = tools_returning({"items": [{"price": value}]})
    with open_runtime(db, tools=registry) as rt:
        room = rt.create_room(Workflow.from_yaml(ROUTED, tools=registry))
        done = rt.run(room.room_id)
        assert done.status is RoomStatus.FAILED
        assert done.reason == "handled: stored"
        failed = [e for e in rt.events(room.room_id) if e.type == "NODE_FAILED"]
        assert len(failed) == 1 and failed[0].error is not None
        assert failed[0].error.type == "UnstorableValueError"
        message = failed[0].error.message
        assert "nodes.fetch tool 'fetch' result: $.items[0].price" in message
        assert problem in message
        called = [e for e in rt.events(room.room_id) if e.type == "TOOL_CALLED"]
        assert called[0].error is not None  # the call is logged, as an error
        assert rt.run(room.room_id).status is RoomStatus.FAILED
        assert calls == [1]
        assert rt.replay(room.room_id) == rt.get_room(room.room_id)


def test_an_unstorable_result_is_not_retried(db: str) -> None:
    registry, calls = tools_returning(float("nan"))
    wf = Workflow.from_yaml(
        "id: r\nnodes:\n  fetch: {type: tool, tool: fetch, retry: {max_attempts: 3, "
        "backoff_s: 0}}\n  done: {type: end}\ntransitions:\n  - {from: fetch, to: done}\n",
        tools=registry,
    )
    with open_runtime(db, tools=registry) as rt:
        done = rt.run(rt.create_room(wf).room_id)
        assert done.status is RoomStatus.FAILED
        assert "UnstorableValueError" in (done.reason or "")
        assert calls == [1]


class _InfinityHandler(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b'{"items": [{"price": 1e999}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def infinity_server() -> Iterator[tuple[str, list[str]]]:
    _InfinityHandler.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InfinityHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/price", _InfinityHandler.hits
    server.shutdown()
    server.server_close()


def test_an_http_response_holding_1e999_is_text_and_resume_sends_nothing_again(
    tmp_path: Path, infinity_server: tuple[str, list[str]]
) -> None:
    """Before: the room stuck `running`, and every resume re-sent the request then crashed.
    A body the strict JSON reader refuses (1e999 is no finite number) is kept as text."""
    pytest.importorskip("httpx")
    url, hits = infinity_server
    db = f"sqlite:///{tmp_path / 'http.db'}"
    config = tmp_path / "openrooms.yaml"
    config.write_text("http: {allow_networks: [127.0.0.1/32]}\n")
    flow = tmp_path / "fetch.yaml"
    flow.write_text(
        "id: fetch_price\nnodes:\n"
        f"  fetch: {{type: tool, tool: http, args: {{url: '{url}'}}, output: r}}\n"
        "  done: {type: end}\ntransitions:\n  - {from: fetch, to: done}\n"
    )
    runner = CliRunner()
    args = ["--db", db, "--config", str(config)]
    first = runner.invoke(cli, [*args, "run", str(flow)])
    assert first.exit_code == 0, first.output
    assert "Traceback" not in first.output
    with open_runtime(
        db, config=RuntimeConfig(http=HttpPolicy(allow_networks=("127.0.0.1/32",)))
    ) as rt:
        (room,) = rt.list_rooms()
        assert room.status is RoomStatus.COMPLETED
        assert "json" not in room.variables["r"] and "1e999" in room.variables["r"]["text"]
    for command in ("resume", "show"):
        again = runner.invoke(cli, [*args, command, room.room_id])
        assert again.exception is None or isinstance(again.exception, SystemExit), again.output
        assert "Traceback" not in again.output
    assert len(hits) == 1


# --- templates, input, variables --------------------------------------------------------------


def test_a_template_yielding_a_lone_surrogate_is_refused_before_any_room(
    tmp_path: Path,
) -> None:
    """Before: every run and resume raised UnicodeEncodeError; the room never moved again.
    A ``\\ud800`` escape in an expression's string is now refused when the file is read."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    flow = tmp_path / "s.yaml"
    flow.write_text(
        "id: sur\nnodes:\n  s: {type: set, assign: {x: \"{{ '\\\\ud800' }}\"}}\n"
        "  done: {type: end}\n  bad: {type: end, status: failed, reason: refused}\n"
        "transitions:\n  - {from: s, to: done}\n  - {from: s, to: bad, on: error}\n"
    )
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", db, "run", str(flow)])
    assert first.exit_code == 2, first.output
    assert "nodes.s.assign.x" in first.output and "lone surrogate" in first.output
    assert not (tmp_path / "s.db").exists()


def test_an_unstorable_value_with_no_error_route_fails_the_room_cleanly(db: str) -> None:
    registry, _ = tools_returning({"name": "\udc00"})
    wf = Workflow.from_yaml(
        "id: sur\nnodes:\n  s: {type: tool, tool: fetch}\n"
        "  done: {type: end}\ntransitions:\n  - {from: s, to: done}\n",
        tools=registry,
    )
    with open_runtime(db, tools=registry) as rt:
        room = rt.create_room(wf)
        done = rt.run(room.room_id)
        assert done.status is RoomStatus.FAILED
        assert "UnstorableValueError" in (done.reason or "")
        assert rt.run(room.room_id).status is RoomStatus.FAILED


def test_an_end_reason_with_a_lone_surrogate_escape_is_refused_by_validation() -> None:
    with pytest.raises(WorkflowValidationError, match=r"nodes\.done\.reason: a \\u escape"):
        Workflow.from_yaml(
            "id: sur\nnodes:\n  s: {type: set, assign: {x: 1}}\n"
            "  done: {type: end, reason: \"{{ '\\\\ud800' }}\"}\n"
            "transitions:\n  - {from: s, to: done}\n"
        )


@pytest.mark.parametrize("status", ["completed", "failed"])
def test_a_reason_or_prompt_that_renders_a_mapping_is_stored_as_json_text(
    db: str, status: str
) -> None:
    """A whole-value template yields any JSON value; a room's reason and a wait's prompt are
    text, so they are written as JSON (a mapping here once made the stored room unreadable)."""
    wf = Workflow.from_yaml(
        "id: texts\nvariables: {said: {'{{': '}}'}}\nnodes:\n"
        "  ask: {type: wait, prompt: '{{ vars.said }}'}\n"
        f"  done: {{type: end, status: {status}, reason: '{{{{ vars.said }}}}'}}\n"
        "transitions:\n  - {from: ask, to: done}\n"
    )
    with open_runtime(db) as rt:
        room = rt.run(rt.create_room(wf).room_id)
        prompts = [e.data["prompt"] for e in rt.events(room.room_id) if "prompt" in e.data]
        assert prompts == ['{"{{": "}}"}']
        done = rt.send_input(room.room_id, {})
        assert done.status.value == status
        assert done.reason == '{"{{": "}}"}'
        assert rt.get_room(room.room_id) == done  # it reads back


WAITS = """
id: waits
nodes:
  ask: {type: wait, prompt: "Go on?", output: answer}
  done: {type: end}
transitions:
  - {from: ask, to: done}
"""


@pytest.mark.parametrize(
    "value", [float("inf"), float("nan"), "\ud800", 10**2000], ids=["inf", "nan", "sur", "int"]
)
def test_input_that_cannot_be_stored_is_refused_and_the_room_keeps_waiting(
    db: str, value: Any
) -> None:
    with open_runtime(db) as rt:
        room = rt.create_room(Workflow.from_yaml(WAITS))
        assert rt.run(room.room_id).status is RoomStatus.WAITING
        with pytest.raises(UnstorableValueError, match=r"input for wait node 'ask': \$\.v "):
            rt.send_input(room.room_id, {"v": value})
        assert rt.get_room(room.room_id).status is RoomStatus.WAITING
        assert rt.send_input(room.room_id, {"v": 1}).status is RoomStatus.COMPLETED


def test_cli_input_with_infinity_is_refused_without_traceback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    flow = tmp_path / "w.yaml"
    flow.write_text(WAITS)
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", db, "run", str(flow)])
    assert first.exit_code == 3, first.output
    with open_runtime(db) as rt:
        (room,) = rt.list_rooms()
    sent = runner.invoke(cli, ["--db", db, "input", room.room_id, "--data", '{"v": Infinity}'])
    assert sent.exit_code != 0
    assert "Traceback" not in sent.output
    assert "Infinity is not a JSON value" in sent.output
    with open_runtime(db) as rt:
        assert rt.get_room(room.room_id).status is RoomStatus.WAITING


@pytest.mark.parametrize(
    "value",
    [float("inf"), "\ud800", {"a": float("nan")}, 10**1001],
    ids=["inf", "sur", "nan", "int"],
)
def test_variables_that_cannot_be_stored_are_refused_at_create_room(db: str, value: Any) -> None:
    with open_runtime(db) as rt, pytest.raises(SchemaValidationError, match=r"variables\.x"):
        rt.create_room(Workflow.from_yaml(WAITS), variables={"x": value})


def test_a_room_name_that_cannot_be_stored_is_refused(db: str) -> None:
    with open_runtime(db) as rt, pytest.raises(UnstorableValueError, match="name"):
        rt.create_room(Workflow.from_yaml(WAITS), name="\ud800")


def test_a_model_reply_that_cannot_be_stored_fails_the_agent_node(db: str) -> None:
    from openrooms.llm import ModelRegistry
    from openrooms.testing import ScriptedModel

    models = ModelRegistry()
    models.register_provider("scripted", ScriptedModel(["bad \ud800 reply"]))
    wf = Workflow.from_yaml(
        "id: ag\nagents:\n  a: {model: scripted/x}\nnodes:\n"
        "  talk: {type: agent, agent: a, prompt: hi, output: said}\n"
        "  done: {type: end}\n  bad: {type: end, status: failed, reason: refused}\n"
        "transitions:\n  - {from: talk, to: done}\n  - {from: talk, to: bad, on: error}\n"
    )
    with open_runtime(db, models=models) as rt:
        room = rt.create_room(wf)
        done = rt.run(room.room_id)
        assert (done.status, done.reason) == (RoomStatus.FAILED, "refused")
        failed = [e for e in rt.events(room.room_id) if e.type == "NODE_FAILED"]
        assert failed[0].error is not None
        assert failed[0].error.type == "UnstorableValueError"


# --- validate refuses numbers no run can use ---------------------------------------------------


def node_flow(node: str, extra: str = "") -> str:
    return (
        f"id: w\n{extra}nodes:\n  n: {node}\n  done: {{type: end}}\n"
        "transitions:\n  - {from: n, to: done}\n  - {from: n, to: done, on: timeout}\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            node_flow("{type: wait, timeout_s: 1.0e+306}"),
            "nodes.n.timeout_s: expected a positive number of seconds up to 316,224,000",
        ),
        (node_flow("{type: wait, timeout_s: .inf}"), "nodes.n.timeout_s"),
        (
            node_flow("{type: tool, tool: calculator, args: {expression: '1'}, timeout_s: 4.0e+7}"),
            "(366 days)",
        ),
        (
            node_flow("{type: set, assign: {x: 1}, retry: {backoff_s: .nan}}"),
            "nodes.n.retry.backoff_s: expected 0 to 31,622,400 seconds",
        ),
        (node_flow("{type: set, assign: {x: 1}, retry: {max_delay_s: .inf}}"), "max_delay_s"),
        (node_flow("{type: set, assign: {x: 1}, retry: {multiplier: .nan}}"), "multiplier"),
        (node_flow("{type: set, assign: {x: 1}, retry: {multiplier: 1e300}}"), "multiplier"),
        (node_flow("{type: set, assign: {x: 1}, retry: {jitter: .nan}}"), "jitter"),
        (node_flow("{type: set, assign: {x: .nan}}"), "nodes.n.assign.x: the value is nan"),
        (
            node_flow("{type: tool, tool: calculator, args: {expression: '1', extra: [.inf]}}"),
            "nodes.n.args.extra[0]: the value is inf",
        ),
        (
            node_flow("{type: set, assign: {x: 1}}", "budget: {max_cost_usd: .inf}\n"),
            "budget.max_cost_usd: expected a positive, finite number",
        ),
        (node_flow("{type: set, assign: {x: 1}}", "budget: {max_wall_s: .nan}\n"), "max_wall_s"),
        (
            node_flow("{type: set, assign: {x: 1}}", "version: 9223372036854775808\n"),
            "version: expected a whole number from 1 to 2**63 - 1",
        ),
        (node_flow("{type: set, assign: {x: 1}}", "variables: {v: .inf}\n"), "variables.v"),
        (
            node_flow("{type: subworkflow, workflow: other, version: 99999999999999999999}"),
            "nodes.n.version: expected a whole number from 1 to 2**63 - 1",
        ),
    ],
)
def test_validate_refuses_numbers_no_run_can_use(text: str, message: str) -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        Workflow.from_yaml(text)
    assert message in str(caught.value)


def test_timeouts_at_the_maximum_still_validate() -> None:
    Workflow.from_yaml(node_flow("{type: wait, timeout_s: 316224000}"))
    Workflow.from_yaml(
        node_flow("{type: set, assign: {x: 1}, timeout_s: 31622400, retry: {backoff_s: 31622400}}")
    )


def test_the_cli_validate_refuses_a_wait_of_1e306_seconds(tmp_path: Path) -> None:
    """Before: validate said ok, and the first run crashed with an OverflowError for good."""
    flow = tmp_path / "w.yaml"
    flow.write_text(node_flow("{type: wait, timeout_s: 1.0e+306}"))
    result = CliRunner().invoke(cli, ["validate", str(flow)])
    assert result.exit_code == 2, result.output
    assert "nodes.n.timeout_s" in result.output


def test_a_huge_retry_multiplier_power_does_not_overflow() -> None:
    from openrooms import RetryPolicy

    assert RetryPolicy(multiplier=1e300, max_delay_s=5.0).delay_s(50) == 5.0


# --- constant-expression overflow ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source", ["10.0 ** 400", "2 ** 99999 * 1.0", "1e308 * 10", "2 ** 1023 * 4.0"]
)
def test_constant_overflow_is_a_typed_error_with_its_position(source: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source, names={"vars"})
    assert caught.value.position is not None
    assert source in str(caught.value)
    with pytest.raises(ExpressionError):
        calculate(source)


def test_a_guard_that_overflows_is_refused_by_validate_with_its_path() -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        Workflow.from_yaml(
            "id: g\nnodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n"
            "transitions:\n  - {from: a, to: b, when: '10.0 ** 400 > 1'}\n  - {from: a, to: b}\n"
        )
    assert "transitions[0].when: numeric result is too large" in str(caught.value)


def test_stored_rooms_stay_loadable_as_json(tmp_path: Path) -> None:
    """The rows the runner wrote parse back with a strict JSON reader."""
    import sqlite3

    registry, _ = tools_returning({"p": float("inf")})
    path = tmp_path / "j.db"
    with open_runtime(f"sqlite:///{path}", tools=registry) as rt:
        rt.run(rt.create_room(Workflow.from_yaml(ROUTED, tools=registry)).room_id)
    with sqlite3.connect(path) as con:
        for (body,) in con.execute("SELECT body FROM rooms UNION ALL SELECT body FROM events"):
            json.loads(body, parse_constant=lambda c: pytest.fail(f"stored {c}"))


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ('description: "\\ud800"\n', "description: the value is a string with a lone surrogate"),
        (
            'agents:\n  a: {model: x/y, system_prompt: "\\udfff"}\n',
            "agents.a.system_prompt: the value is a string",
        ),
    ],
)
def test_text_anywhere_in_a_workflow_must_be_valid_unicode(where: str, path: str) -> None:
    with pytest.raises(WorkflowValidationError, match=path):
        Workflow.from_dict(with_surrogates(node_flow("{type: set, assign: {x: 1}}", where)))
    with pytest.raises(WorkflowValidationError, match="invalid Unicode"):
        Workflow.from_yaml(node_flow("{type: set, assign: {x: 1}}", where))  # the file reader


def with_surrogates(text: str) -> Any:
    """*text* as a definition whose ``\\ud800``-style escapes are real lone surrogates, as a
    Python caller (or a JSON body) could pass them; the YAML reader refuses them itself."""
    from openrooms.loading import parse_yaml

    def put_back(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"<(u[0-9a-f]{4})>", lambda m: chr(int(m.group(1)[1:], 16)), value)
        if isinstance(value, list):
            return [put_back(v) for v in value]
        if isinstance(value, dict):
            return {k: put_back(v) for k, v in value.items()}
        return value

    return put_back(parse_yaml(re.sub(r"\\(u[0-9a-f]{4})", r"<\1>", text)))


def test_a_retry_label_with_a_lone_surrogate_is_refused() -> None:
    """Found by tests/property/test_hostile.py: the digest of the definition raised."""
    flow = node_flow('{type: set, assign: {x: 1}, retry: {retry_on: ["\\ud800"]}}')
    with pytest.raises(WorkflowValidationError, match=r"nodes\.n\.retry\.retry_on\[0\]"):
        Workflow.from_dict(with_surrogates(flow))


@pytest.mark.parametrize("field", ["timeout_s: ", "retry: {backoff_s: ", "retry: {jitter: "])
def test_an_integer_too_large_for_a_float_is_a_typed_problem(field: str) -> None:
    """Found by tests/property/test_hostile.py: reading it raised OverflowError."""
    close = "}" if field.startswith("retry") else ""
    node = "{type: set, assign: {x: 1}, " + field + "1" + "0" * 400 + close + "}"
    with pytest.raises(WorkflowValidationError, match="got one too large"):
        Workflow.from_yaml(node_flow(node))


def test_a_var_from_undecodable_argv_bytes_is_refused_without_traceback(tmp_path: Path) -> None:
    """Invalid UTF-8 on the command line reaches Python as a lone surrogate ("\\udcff")."""
    flow = tmp_path / "w.yaml"
    flow.write_text(WAITS)
    db = f"sqlite:///{tmp_path / 'v.db'}"
    result = CliRunner().invoke(cli, ["--db", db, "run", str(flow), "--var", "x=\udcff"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "--var x" in result.output  # refused by the reader, before a room exists
    assert "lone surrogate" in result.output


@pytest.mark.parametrize("usage", [(float("inf"), 1), (None, 10**1200)], ids=["cost", "tokens"])
def test_a_model_usage_that_cannot_be_stored_fails_the_agent_node(
    db: str, usage: tuple[Any, int]
) -> None:
    """Checked before the usage is added up (int(inf) would raise inside the engine)."""
    from openrooms.llm import ModelRegistry, Usage
    from openrooms.testing import ScriptedModel

    cost, tokens = usage
    reply = ScriptedModel.text("fine", usage=Usage(tokens, 0, cost))
    models = ModelRegistry()
    models.register_provider("scripted", ScriptedModel([reply]))
    wf = Workflow.from_yaml(
        "id: ag\nagents:\n  a: {model: scripted/x}\nnodes:\n"
        "  talk: {type: agent, agent: a, prompt: hi, output: said}\n"
        "  done: {type: end}\ntransitions:\n  - {from: talk, to: done}\n"
    )
    with open_runtime(db, models=models) as rt:
        room = rt.create_room(wf)
        done = rt.run(room.room_id)
        assert done.status is RoomStatus.FAILED
        assert "UnstorableValueError" in (done.reason or "")
        assert rt.replay(room.room_id) == rt.get_room(room.room_id)


@pytest.mark.parametrize("field", ["max_tokens", "max_cost_usd"])
def test_a_huge_integer_in_a_budget_is_a_typed_problem(field: str) -> None:
    """Found by tests/property/test_hostile.py: math.isfinite() of it raised OverflowError.
    A file is refused by its reader (integers of at most 1,000 digits); a definition built
    in Python by the workflow check."""
    huge = 10**1200
    with pytest.raises(WorkflowValidationError, match="an integer of 1,201 digits"):
        Workflow.from_yaml(
            node_flow("{type: set, assign: {x: 1}}", f"budget: {{{field}: {huge}}}\n")
        )
    definition = {
        "id": "w",
        "budget": {field: huge},
        "nodes": {"n": {"type": "set", "assign": {"x": 1}}, "done": {"type": "end"}},
        "transitions": [{"from": "n", "to": "done"}],
    }
    with pytest.raises(WorkflowValidationError, match=rf"budget\.{field}"):
        Workflow.from_dict(definition)


def test_a_huge_integer_retry_delay_from_python_is_a_typed_problem() -> None:
    from openrooms import RetryPolicy, WorkflowBuilder

    builder = WorkflowBuilder("w").set("n", {"x": 1}, retry=RetryPolicy(backoff_s=10**400))
    with pytest.raises(WorkflowValidationError, match=r"nodes\.n\.retry\.backoff_s"):
        builder.end("done").transition("n", "done").build()


def test_a_deeply_nested_result_fails_its_node_when_secrets_are_scrubbed(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a key in the environment every result is scrubbed first; a result nested
    3,000 deep once raised RecursionError there and left the room running for good."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    deep: Any = "sk-test-0123456789"
    for _ in range(3_000):
        deep = [deep]
    registry, calls = tools_returning(deep)
    with open_runtime(db, tools=registry) as rt:
        room = rt.run(rt.create_room(Workflow.from_yaml(ROUTED, tools=registry)).room_id)
        assert room.status is RoomStatus.FAILED and room.reason == "handled: stored"
        failed = [e for e in rt.events(room.room_id) if e.type.value == "NODE_FAILED"]
        assert failed[0].error is not None
        assert failed[0].error.type == "UnstorableValueError"
        assert f"more than {MAX_DEPTH} levels" in failed[0].error.message
    assert calls == [1]


def test_text_from_undecodable_argv_bytes_is_a_typed_error_in_every_command(
    tmp_path: Path,
) -> None:
    """Bytes that are not UTF-8 on the command line reach Python as lone surrogates; SQLite
    refused them with a UnicodeEncodeError traceback (found in review)."""
    flow = tmp_path / "w.yaml"
    flow.write_text(WAITS)
    db = f"sqlite:///{tmp_path / 'a.db'}"
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", db, "run", str(flow)])
    assert first.exit_code == 3, first.output
    with open_runtime(db) as rt:
        (room,) = rt.list_rooms()
    bad = "ab\udcff"
    for args in (
        ["show", bad],
        ["logs", bad],
        ["rooms", "--workflow", bad],
        ["cancel", room.room_id, "--reason", f"bad {bad}"],
    ):
        result = runner.invoke(cli, ["--db", db, *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "lone surrogate" in result.output, (args, result.output)
    with open_runtime(db) as rt:
        assert rt.get_room(room.room_id).status is RoomStatus.WAITING  # not cancelled


@pytest.mark.parametrize("room_id", ["", "a b", ".x", "\ud800", "x" * 1001, "a/b", "-a"])
def test_a_room_id_outside_the_alphabet_is_refused(db: str, room_id: str) -> None:
    with open_runtime(db) as rt, pytest.raises(SchemaValidationError, match="room_id"):
        rt.create_room(Workflow.from_yaml(WAITS), room_id=room_id)


def test_room_ids_of_sub_workflow_children_fit_the_alphabet() -> None:
    from openrooms.runtime import ROOM_ID

    assert ROOM_ID.fullmatch("01a2b3c4d5e6f7.call.1.1.items_3_.sub.2.1")


@pytest.mark.parametrize("template", ["{{ room }}", "{{ [room] }}", "{{ room or 1 }}"])
def test_the_room_view_in_a_set_node_fails_it_typed_and_the_room_stays_usable(
    db: str, template: str
) -> None:
    """``room`` is a read-only view, not a JSON value: stored, it made every commit and
    every resume of the room raise TypeError (found by a hostile trial)."""
    wf = Workflow.from_yaml(
        f'id: roomy\nnodes:\n  s: {{type: set, assign: {{r: "{template}"}}}}\n'
        "  done: {type: end}\ntransitions:\n  - {from: s, to: done}\n"
    )
    with open_runtime(db) as rt:
        room = rt.run(rt.create_room(wf).room_id)
        assert room.status is RoomStatus.FAILED
        assert "is a RoomView, not a JSON value" in (room.reason or "")
        assert rt.get_room(room.room_id) == room


def test_a_name_or_cancel_reason_that_is_not_short_text_is_refused(db: str) -> None:
    """Found by a hostile trial: name=5 and reason=5 were stored, and the store then
    reported its own rooms as corrupt."""
    with open_runtime(db) as rt:
        wf = Workflow.from_yaml(WAITS)
        for name in (5, "x" * 10_001):
            with pytest.raises(SchemaValidationError, match="name: expected text"):
                rt.create_room(wf, name=name)  # type: ignore[arg-type]
        room = rt.run(rt.create_room(wf).room_id)
        for reason in (5, {"a": 1}, "x" * 10_001):
            with pytest.raises(SchemaValidationError, match="reason: expected text"):
                rt.cancel(room.room_id, reason=reason)  # type: ignore[arg-type]
        assert rt.get_room(room.room_id).status is RoomStatus.WAITING
        assert [r.room_id for r in rt.list_rooms()] == [room.room_id]


@pytest.mark.parametrize(
    "args",
    [
        ["rooms", "--limit", "99999999999999999999999"],
        ["rooms", "--limit", "0"],
        ["rooms", "--limit", "-1"],
        ["logs", "r1", "--after", "99999999999999999999999"],
    ],
)
def test_out_of_range_numbers_on_the_command_line_are_usage_errors(
    tmp_path: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'n.db'}", *args])
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_a_plugin_that_raises_on_import_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "boom_plugin.py").write_text('raise RuntimeError("boom")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(cli, ["--plugin", "boom_plugin", "tools"])
    assert result.exit_code == 2, result.output
    assert "cannot load plugin 'boom_plugin': RuntimeError: boom" in result.output
