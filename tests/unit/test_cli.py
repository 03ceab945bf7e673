"""The CLI through click's runner: exit codes, output formats, one-line errors, help text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from openrooms.cli import cli

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def invoke(tmp_path: Path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    def call(*args: str, input: str | None = None):
        return runner.invoke(cli, ["--db", db, *args], input=input, catch_exceptions=False)

    return call


def room_id_of(result) -> str:
    found = re.search(r"room ([0-9a-f]{22})", result.output)
    assert found, result.output
    return found.group(1)


def test_validate_accepts_the_examples(invoke) -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 5
    result = invoke("validate", *map(str, files))
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == len(files)


def test_validate_exits_2_listing_the_problems(invoke, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: w\nnodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n"
        "transitions:\n  - {from: a, to: c}\n"
    )
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert "transitions[0].to: unknown node 'c'" in result.output
    assert "Traceback" not in result.output


def test_run_waits_then_input_completes(invoke) -> None:
    result = invoke("run", str(EXAMPLES / "order_approval.yaml"), "--var", "amount=250")
    assert result.exit_code == 3, result.output
    room = room_id_of(result)
    assert "wait approval: Approve the order of 300.0?" in result.output
    result = invoke("input", room, "--data", '{"approved": true}')
    assert result.exit_code == 0, result.output
    shown = json.loads(invoke("show", room, "--json").output)
    assert shown["status"] == "completed"
    assert shown["workflow"] == {"id": "order_approval", "version": 2}
    assert shown["variables"]["state"] == "fulfilled"
    assert shown["current_node"] == "done"


def test_run_exits_1_when_the_room_fails(invoke) -> None:
    result = invoke(
        "run", str(EXAMPLES / "savings_loop.yaml"), "--var", "max_years=2", "--var", "target=1e9"
    )
    assert result.exit_code == 1
    assert "not reached in 2 years" in result.output


def test_var_values_parse_as_json_or_stay_strings(invoke, tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.yaml"
    vars_file.write_text("rate: 0.5\n")
    result = invoke(
        "run",
        str(EXAMPLES / "savings_loop.yaml"),
        "--vars-file",
        str(vars_file),
        "--var",
        "target=2000",
        "--var",
        "label=hello world",
        "--json",
    )
    assert result.exit_code == 0, result.output
    final = json.loads(result.output.strip().splitlines()[-1])
    assert final["variables"]["rate"] == 0.5
    assert final["variables"]["target"] == 2000
    assert final["variables"]["label"] == "hello world"


def test_logs_json_lines_have_the_documented_fields(invoke) -> None:
    room = room_id_of(invoke("run", str(EXAMPLES / "safe_division.yaml")))
    lines = [json.loads(line) for line in invoke("logs", room, "--json").output.splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
    for line in lines:
        assert {"seq", "type", "level", "timestamp", "node", "data", "error"} <= set(line)
    failed = [x for x in lines if x["type"] == "NODE_FAILED"]
    # the tool's own exception type, so retry_on can name it
    assert failed and failed[0]["error"]["type"] == "EvaluationError"
    assert "tool 'calculator' failed" in failed[0]["error"]["message"]
    warn = invoke("logs", room, "--json", "--level", "WARN").output.splitlines()
    assert warn and all(json.loads(x)["level"] in ("WARN", "ERROR", "FATAL") for x in warn)
    only = invoke("logs", room, "--json", "--type", "TRANSITION").output.splitlines()
    assert only and all(json.loads(x)["type"] == "TRANSITION" for x in only)


def test_logs_follow_stops_when_the_room_has_finished(invoke) -> None:
    room = room_id_of(invoke("run", str(EXAMPLES / "savings_loop.yaml")))
    result = invoke("logs", room, "--follow")
    assert result.exit_code == 0
    assert "ROOM_COMPLETED" in result.output.splitlines()[-1]


def test_rooms_lists_and_filters(invoke) -> None:
    invoke("run", str(EXAMPLES / "savings_loop.yaml"))
    invoke("run", str(EXAMPLES / "order_approval.yaml"), "--var", "amount=900")
    listed = json.loads(invoke("rooms", "--json").output)
    assert [r["status"] for r in listed] == ["waiting", "completed"]
    waiting = json.loads(invoke("rooms", "--status", "waiting", "--json").output)
    assert [r["workflow"]["id"] for r in waiting] == ["order_approval"]
    assert "order_approval v2" in invoke("rooms").output


def test_cancel_then_input_is_a_one_line_error(invoke) -> None:
    room = room_id_of(invoke("run", str(EXAMPLES / "order_approval.yaml"), "--var", "amount=900"))
    assert invoke("cancel", room).exit_code == 0
    result = invoke("input", room, "--data", '{"approved": true}')
    assert result.exit_code == 2  # the room's status does not allow input: an input error
    assert result.output.startswith("Error: room") and "cancelled" in result.output
    assert "Traceback" not in result.output


def test_unknown_room_and_bad_json_are_clear_errors(invoke) -> None:
    invoke("run", str(EXAMPLES / "savings_loop.yaml"))  # the database exists
    result = invoke("show", "missing")
    assert result.exit_code == 2 and "no room 'missing' in " in result.output
    assert "cli.db" in result.output
    result = invoke("input", "missing", "--data", "{nope")
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = invoke("run", str(EXAMPLES / "savings_loop.yaml"), "--var", "novalue")
    assert result.exit_code == 2 and "NAME=TEXT or NAME:=JSON" in result.output


def test_graph_prints_mermaid_and_a_table(invoke) -> None:
    mermaid = invoke("graph", str(EXAMPLES / "order_approval.yaml")).output
    assert mermaid.startswith("stateDiagram-v2")
    assert "approval --> expired : timeout" in mermaid
    table = invoke("graph", str(EXAMPLES / "order_approval.yaml"), "--format", "table").output
    assert "check" in table and "vars.total > vars.approval_threshold" in table


def test_a_global_option_after_the_command_says_it_goes_before(invoke) -> None:
    for option in ("--script", "--db", "--config", "--plugin"):
        result = invoke("run", str(EXAMPLES / "savings_loop.yaml"), option, "x")
        assert result.exit_code == 2
        assert f"{option} is a global option: put it before the command" in result.output
        assert f"`openrooms {option} ... run ...`" in result.output
    other = invoke("run", str(EXAMPLES / "savings_loop.yaml"), "--nope")
    assert other.exit_code == 2 and "global option" not in other.output


def test_validate_counts_and_articles_read_as_english(invoke, tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(
        "id: w\nnodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n"
        "transitions:\n  - {from: a, to: b}\n"
    )
    assert "2 nodes, 1 transition\n" in invoke("validate", str(one)).output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "id: w\nbudget: {max_steps: 3, on_exceeded: b}\n"
        "nodes:\n  a: {type: set, assign: {x: 1}}\n  b: {type: end}\n"
        "transitions:\n  - {from: a, to: b}\n"
    )
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert "'b' is an 'end' node" in result.output


def test_counts_and_articles_follow_the_word() -> None:
    from openrooms._wording import article, plural

    assert [plural(n, "transition") for n in (0, 1, 2)] == [
        "0 transitions",
        "1 transition",
        "2 transitions",
    ]
    assert (
        plural(1, "branch", "branches") == "1 branch"
        and plural(3, "branch", "branches")[-8:] == "branches"
    )
    assert article("'end' node") == "an 'end' node"
    assert article("'set' node") == "a 'set' node"
    assert article("int") == "an int" and article("list") == "a list"


def test_config_keys_suggest_the_near_miss(invoke, tmp_path: Path) -> None:
    config = tmp_path / "openrooms.yaml"
    config.write_text(
        "htp: {}\nhttp: {allow_host: [a.example]}\nagents: {w: {apibase: 'http://x'}}\n"
        "tool_results: {max_logged_byte: 300}\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "rooms"])
    assert result.exit_code == 2
    for line in (
        "htp: unknown section — did you mean 'http'?",
        "http.allow_host: unknown setting — did you mean 'allow_hosts'?",
        "agents.w.apibase: unknown setting — did you mean 'api_base'?",
        "tool_results.max_logged_byte: unknown setting — did you mean 'max_logged_bytes'?",
    ):
        assert line in result.output


def test_workflows_lists_what_the_database_stores(invoke) -> None:
    assert "no database at" in invoke("workflows").output  # it looks; it creates nothing
    invoke("run", str(EXAMPLES / "savings_loop.yaml"))
    invoke("run", str(EXAMPLES / "order_approval.yaml"), "--var", "amount=900")
    listed = json.loads(invoke("workflows", "--json").output)
    assert [w["id"] for w in listed] == ["order_approval", "savings_loop"]
    savings = listed[1]
    assert savings["version"] == 1
    assert savings["nodes"] == 4 and savings["transitions"] == 4
    assert savings["description"].startswith("Grow a balance")
    assert len(savings["digest"]) == 64 and isinstance(savings["registered_at"], int)
    table = invoke("workflows").output.splitlines()
    assert table[0].split() == ["WORKFLOW", "VERSION", "NODES", "DESCRIPTION"]
    assert table[2].split()[:4] == ["savings_loop", "1", "4", "Grow"]


def test_tools_lists_names_parameters_and_descriptions(invoke) -> None:
    listed = json.loads(invoke("tools", "--json").output)
    by_name = {t["name"]: t for t in listed}
    assert {"calculator", "http", "memory_query"} <= set(by_name)
    assert by_name["memory_query"]["parameters"]["required"] == ["query"]
    text = invoke("tools").output
    assert "memory_query(query: string, [limit: integer])" in text
    assert "\n    Search this room's memory" in text


def commands() -> list[str]:
    return sorted(cli.commands)


@pytest.mark.parametrize("name", commands())
def test_every_command_has_help_with_an_example_and_is_in_the_docs(name: str) -> None:
    command = cli.commands[name]
    with click.Context(command, info_name=name) as ctx:
        text = command.get_help(ctx)
    assert "Example:" in text
    reference = (ROOT / "docs" / "cli.md").read_text()
    assert f"## openrooms {name}" in reference
    first_line = (command.help or "").strip().splitlines()[0]
    assert first_line in reference, "docs/cli.md is stale: run `nox -s docs`"
