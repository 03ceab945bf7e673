"""Values printed by the CLI cannot drive the terminal: control characters are escaped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from openrooms.cli import cli
from openrooms.terminal import printable

ESCAPES = {
    "\x1b[2J": "\\x1b[2J",  # clear the screen
    "\x1b]0;pwned\x07": "\\x1b]0;pwned\\x07",  # retitle the window
    "\x1b]8;;https://evil.example\x1b\\": "\\x1b]8;;https://evil.example\\x1b\\",  # a link
    "\r": "\\x0d",  # overwrite the line
    "\x08\x7f": "\\x08\\x7f",
    "\x9b2J": "\\x9b2J",  # C1 CSI
    "\u202eevil": "\\u202eevil",  # right-to-left override
    "\u2066x\u2069": "\\u2066x\\u2069",
}


@pytest.mark.parametrize(("text", "shown"), ESCAPES.items(), ids=repr)
def test_control_characters_are_printed_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_ordinary_text_tabs_and_newlines_are_kept() -> None:
    text = "Approve 1,200.00 € for Zoë?\n\tline two — ok ✓ 日本"
    assert printable(text) == text


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(text: str) -> None:
    out = printable(text)
    assert not any(
        (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F or c in "\u202e\u2066"
        for c in out
    )


WORKFLOW = """
id: loud
variables: {who: sam}
nodes:
  ask: {type: wait, prompt: "Approve for {{ vars.who }}?"}
  stop: {type: end, status: failed, reason: "refused by {{ vars.who }}"}
transitions:
  - {from: ask, to: stop}
"""


def test_the_cli_escapes_values_in_prompts_reasons_show_and_logs(tmp_path: Path) -> None:
    path = tmp_path / "loud.yaml"
    path.write_text(WORKFLOW, encoding="utf-8")
    runner = CliRunner()
    db = f"sqlite:///{tmp_path / 't.db'}"
    who = "\x1b]0;pwned\x07\x1b[2J"

    def invoke(*args: str):
        return runner.invoke(cli, ["--db", db, *args], catch_exceptions=False)

    run = invoke("run", str(path), "--var", f"who={who}")
    assert run.exit_code == 3
    room_id = run.stdout.split()[1]
    done = invoke("input", room_id, "--data", "{}")
    assert done.exit_code == 1
    shown = invoke("show", room_id)
    logged = invoke("logs", room_id)
    for result in (run, done, shown, logged):
        assert "\x1b" not in result.output and "\x07" not in result.output
    assert "Approve for \\x1b]0;pwned\\x07\\x1b[2J?" in run.stderr
    assert "refused by \\x1b]0;pwned\\x07\\x1b[2J" in done.stdout
    assert "reason:    refused by \\x1b]0;pwned" in shown.stdout
    as_json = invoke("logs", room_id, "--json")
    waiting = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert any(e["data"].get("prompt") == f"Approve for {who}?" for e in waiting)  # data intact


def test_error_lines_escape_what_came_from_outside(tmp_path: Path) -> None:
    """A file name given on the command line is echoed in the error; its escapes stay inert."""
    db = f"sqlite:///{tmp_path / 'e.db'}"
    result = CliRunner().invoke(cli, ["--db", db, "run", str(tmp_path / "\x1b[31mred\u202e.yaml")])
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\u202e" not in result.output
    assert "\\x1b[31mred\\u202e" in result.output
