"""Every workflow in examples/ validates and runs through the ``openrooms`` command, and
every Python example runs as its docstring says.

Exit statuses are the documented ones (0 completed, 1 failed, 2 invalid, 3 waiting), and
final variables are checked against values computed here from the same inputs. Most flows
go through click's runner in this process; the README's own flow runs the installed command
in real processes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from openrooms import load_workflow
from openrooms.cli import cli as openrooms_cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_WAITING = 0, 1, 2, 3

# how each example ends when run with its defaults: (options of `openrooms`, exit status)
EXAMPLE_RUNS: dict[str, tuple[list[str], int]] = {
    "order_approval": ([], EXIT_COMPLETED),  # 40 * 1.2 is under the approval threshold
    "safe_division": ([], EXIT_COMPLETED),  # divides by 0, retries, then falls back
    "savings_loop": ([], EXIT_COMPLETED),
    # agents answer from a script: no key, no network
    "research": (["--script", str(EXAMPLES / "scripts" / "research.yaml")], EXIT_COMPLETED),
    "support_triage": (
        ["--script", str(EXAMPLES / "scripts" / "support_triage.yaml")],
        EXIT_WAITING,
    ),
}
GROUP_OPTIONS = {opt for param in openrooms_cli.params for opt in param.opts}

# the exit status of each offline command in an example's header comment, in order
HEADER_EXITS: dict[str, list[int]] = {
    "order_approval": [EXIT_WAITING, EXIT_COMPLETED],
    "safe_division": [EXIT_COMPLETED, EXIT_COMPLETED],
    "savings_loop": [EXIT_COMPLETED],
    "research": [EXIT_COMPLETED],
    "support_triage": [EXIT_WAITING, EXIT_COMPLETED],
}
# examples whose header commands are known not to work yet, with the reason
HEADER_BUGS: dict[str, str] = {}


def command() -> list[str]:
    """The installed console script when there is one, else the module."""
    script = Path(sys.executable).with_name("openrooms")
    if script.exists():
        return [str(script)]
    found = shutil.which("openrooms")
    return [found] if found else [sys.executable, "-m", "openrooms.cli"]


@attrs.frozen
class Done:
    code: int
    stdout: str
    stderr: str


class CLI:
    """``openrooms`` on one database: click's runner, or the installed command (*processes*)."""

    def __init__(self, tmp_path: Path, *, processes: bool = False) -> None:
        self.db = f"sqlite:///{tmp_path / 'examples.db'}"
        self.cwd = tmp_path  # nothing may land in the repository's ./.openrooms
        self.processes = processes

    def __call__(self, *args: str, expect: int) -> Done:
        if self.processes:
            proc = subprocess.run(
                [*command(), *args],
                env={**os.environ, "OPENROOMS_DB": self.db},
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=120,
            )
            done = Done(proc.returncode, proc.stdout, proc.stderr)
        else:
            result = CliRunner().invoke(openrooms_cli, ["--db", self.db, *args])
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            done = Done(result.exit_code, result.stdout, result.stderr)
        assert done.code == expect, (args, done.code, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done

    def run_json(self, *args: str, expect: int) -> dict[str, Any]:
        done = self(*args, "--json", expect=expect)
        final: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return final

    def logs(self, room_id: str) -> list[dict[str, Any]]:
        out = self("logs", room_id, "--json", expect=0).stdout
        lines = [json.loads(line) for line in out.splitlines()]
        assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))  # gapless
        return lines


@pytest.fixture
def cli(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def example(name: str) -> str:
    return str(EXAMPLES / f"{name}.yaml")


def defaults(name: str) -> dict[str, Any]:
    return dict(load_workflow(example(name)).variables)


ALL_EXAMPLES = sorted(EXAMPLES.glob("*.yaml"))


def test_the_openrooms_command_validates_every_example(tmp_path: Path) -> None:
    out = CLI(tmp_path, processes=True)("validate", *map(str, ALL_EXAMPLES), expect=0).stdout
    for path in ALL_EXAMPLES:
        wf = load_workflow(path)
        assert (
            f"{path}: ok — workflow {wf.id!r} v{wf.version}, {len(wf.nodes)} nodes, "
            f"{len(wf.transitions)} transitions"
        ) in out


@pytest.mark.parametrize("path", ALL_EXAMPLES, ids=lambda p: p.stem)
def test_every_example_runs_offline_with_its_defaults(path: Path, cli: CLI) -> None:
    assert path.stem in EXAMPLE_RUNS, f"add {path.name} to EXAMPLE_RUNS and test its flows here"
    options, expect = EXAMPLE_RUNS[path.stem]
    missing = [a for a in options if a.startswith("--") and a not in GROUP_OPTIONS]
    if missing:
        pytest.skip(f"`openrooms` has no {', '.join(missing)} option yet")
    wf = load_workflow(path)
    final = cli.run_json(*options, "run", str(path), expect=expect)
    assert final["workflow"] == {"id": wf.id, "version": wf.version}
    assert set(final["variables"]) >= set(wf.variables)
    cli.logs(final["id"])


def header_commands(path: Path) -> list[list[str]]:
    """The offline ``openrooms`` commands in a file's leading comment (before "For real")."""
    commands = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or "For real" in line:
            break
        text = line.lstrip("# ").split("  #")[0]
        if text.startswith("openrooms "):
            commands.append(shlex.split(text)[1:])
    return commands


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=HEADER_BUGS[p.stem]))
        if p.stem in HEADER_BUGS
        else p
        for p in ALL_EXAMPLES
    ],
    ids=lambda p: p.stem,
)
def test_the_commands_in_each_examples_header_work(
    path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the repository root, as written; ``<room-id>`` is the room the run made."""
    monkeypatch.chdir(ROOT)
    commands = header_commands(path)
    assert len(commands) == len(HEADER_EXITS[path.stem]), commands
    room_id = None
    for argv, expect in zip(commands, HEADER_EXITS[path.stem], strict=True):
        if "<room-id>" in argv:
            assert room_id is not None, "a command needs the room of an earlier one"
            argv = [room_id if a == "<room-id>" else a for a in argv]
        done = cli(*argv, expect=expect)
        found = re.search(r"room (\w+) ", done.stdout)
        assert found, done.stdout
        room_id = found.group(1)


# --- order_approval ----------------------------------------------------------------------------


def order_total(amount: float) -> float:
    rate: float = defaults("order_approval")["tax_rate"]
    return round(amount * (1 + rate), 2)


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "in-process"])
def test_a_large_order_waits_exit_3_then_input_completes_it(
    processes: bool, tmp_path: Path
) -> None:
    """The README's first command, then its ``openrooms input``."""
    cli = CLI(tmp_path, processes=processes)
    amount = 250
    total = order_total(amount)
    assert total > defaults("order_approval")["approval_threshold"]  # the premise
    run = cli("run", example("order_approval"), "--var", f"amount={amount}", expect=EXIT_WAITING)
    room_id = run.stdout.split()[1]
    assert f" input {room_id} --data" in run.stdout
    assert f"wait approval: Approve the order of {json.dumps(total)}?" in run.stderr

    decision = {"approved": True, "by": "sam"}
    final = cli.run_json("input", room_id, "--data", json.dumps(decision), expect=EXIT_COMPLETED)
    assert final["status"] == "completed"
    assert final["current_node"] == "done"
    assert final["variables"]["total"] == total
    assert final["variables"]["decision"] == decision
    assert final["variables"]["approved_by"] == decision["by"]
    assert final["variables"]["state"] == "fulfilled"

    shown = json.loads(cli("show", room_id, "--json", expect=0).stdout)
    assert shown == final
    types = [e["type"] for e in cli.logs(room_id)]
    assert types.count("ROOM_WAITING") == 1 and types.count("INPUT_RECEIVED") == 1
    assert types[-1] == "ROOM_COMPLETED"


def test_the_documented_input_completes_a_waiting_order(cli: CLI) -> None:
    """The README's exact command: ``--data '{"approved": true}'``."""
    run = cli("run", example("order_approval"), "--var", "amount=900", expect=EXIT_WAITING)
    room_id = run.stdout.split()[1]
    cli("input", room_id, "--data", '{"approved": true}', expect=EXIT_COMPLETED)
    shown = json.loads(cli("show", room_id, "--json", expect=0).stdout)
    assert shown["status"] == "completed"
    assert shown["variables"]["total"] == order_total(900)
    assert shown["variables"]["approved_by"] == "auto"  # no 'by' in the input


def test_a_rejected_order_fails_with_exit_1_and_the_end_nodes_reason(cli: CLI) -> None:
    amount = 321.5
    run = cli("run", example("order_approval"), "--var", f"amount={amount}", expect=EXIT_WAITING)
    room_id = run.stdout.split()[1]
    final = cli.run_json("input", room_id, "--data", '{"approved": false}', expect=EXIT_FAILED)
    assert final["status"] == "failed"
    assert final["reason"] == f"order of {json.dumps(order_total(amount))} was rejected"


def test_a_small_order_completes_without_waiting(cli: CLI) -> None:
    amount = 12.34
    final = cli.run_json(
        "run", example("order_approval"), "--var", f"amount={amount}", expect=EXIT_COMPLETED
    )
    assert final["variables"]["total"] == order_total(amount)
    assert final["variables"]["approved_by"] == "auto"
    assert "ROOM_WAITING" not in {e["type"] for e in cli.logs(final["id"])}


def test_input_that_breaks_the_wait_schema_is_refused_and_the_room_keeps_waiting(
    cli: CLI,
) -> None:
    run = cli("run", example("order_approval"), "--var", "amount=500", expect=EXIT_WAITING)
    room_id = run.stdout.split()[1]
    before = cli.logs(room_id)
    refused = cli("input", room_id, "--data", '{"approved": "yes"}', expect=EXIT_INVALID)
    assert "approved" in refused.stderr
    assert cli.logs(room_id) == before
    assert json.loads(cli("show", room_id, "--json", expect=0).stdout)["status"] == "waiting"


# --- safe_division -----------------------------------------------------------------------------


def test_division_by_zero_is_retried_with_backoff_then_routed_on_error(cli: CLI) -> None:
    v = defaults("safe_division")
    retry = load_workflow(example("safe_division")).nodes["divide"].retry
    assert retry is not None
    final = cli.run_json(
        "run", example("safe_division"), "--var", "denominator=0", expect=EXIT_COMPLETED
    )
    assert final["variables"]["used_fallback"] is True
    assert final["variables"]["result"] == v["fallback"]
    assert final["current_node"] == "done"

    log = cli.logs(final["id"])
    failed = [e for e in log if e["type"] == "NODE_FAILED"]
    assert [e["data"]["attempt"] for e in failed] == list(range(1, retry.max_attempts + 1))
    assert all("division by zero" in e["error"]["message"] for e in failed)
    delays = [e["data"]["delay_ms"] for e in log if e["type"] == "RETRY_SCHEDULED"]
    assert delays == [
        round(min(retry.backoff_s * retry.multiplier**k, retry.max_delay_s) * 1000)
        for k in range(retry.max_attempts - 1)
    ]
    keys = [e["data"]["idempotency_key"] for e in log if e["type"] == "TOOL_CALLED"]
    assert len(set(keys)) == retry.max_attempts


@pytest.mark.parametrize(("numerator", "denominator"), [(10, 4), (7, -2), (1, 3)])
def test_division_that_succeeds_is_not_retried(cli: CLI, numerator: int, denominator: int) -> None:
    final = cli.run_json(
        "run",
        example("safe_division"),
        "--var",
        f"numerator={numerator}",
        "--var",
        f"denominator={denominator}",
        expect=EXIT_COMPLETED,
    )
    assert final["variables"]["result"] == numerator / denominator
    assert "used_fallback" not in final["variables"]
    assert "RETRY_SCHEDULED" not in {e["type"] for e in cli.logs(final["id"])}


# --- savings_loop ------------------------------------------------------------------------------


def savings(balance: float, rate: float, target: float, max_years: int) -> dict[str, Any]:
    """examples/savings_loop.yaml, computed in Python."""
    history, year = [], 0
    while True:
        history.append(balance)
        year += 1
        balance = round(balance * (1 + rate), 2)
        if balance >= target or year >= max_years:
            return {"balance": balance, "year": year, "history": history}


def test_the_savings_loop_completes_with_the_computed_balance(cli: CLI) -> None:
    v = {**defaults("savings_loop"), "balance": 1234, "rate": 0.07}
    final = cli.run_json(
        "run",
        example("savings_loop"),
        "--var",
        f"balance={v['balance']}",
        "--var",
        f"rate={v['rate']}",
        expect=EXIT_COMPLETED,
    )
    expected = savings(v["balance"], v["rate"], v["target"], v["max_years"])
    assert expected["balance"] >= v["target"]  # the premise: it reaches the target
    assert {k: final["variables"][k] for k in expected} == expected
    assert final["current_node"] == "reached"
    visits = final["visits"]
    assert visits["grow"] == visits["check"] == expected["year"]


def test_the_savings_loop_fails_with_exit_1_when_the_years_run_out(cli: CLI) -> None:
    v = {**defaults("savings_loop"), "max_years": 3, "target": 1e9}
    final = cli.run_json(
        "run",
        example("savings_loop"),
        "--var",
        f"max_years={v['max_years']}",
        "--var",
        f"target={v['target']}",
        expect=EXIT_FAILED,
    )
    expected = savings(v["balance"], v["rate"], v["target"], v["max_years"])
    assert expected["balance"] < v["target"]
    assert final["variables"]["balance"] == expected["balance"]
    assert final["reason"] == (
        f"target {json.dumps(v['target'])} not reached in {v['max_years']} years"
    )


def test_an_invalid_file_exits_2(cli: CLI, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    text = Path(example("savings_loop")).read_text().replace("to: check}", "to: chekc}")
    broken.write_text(text)
    out = cli("run", str(broken), expect=EXIT_INVALID)
    assert "unknown node 'chekc'" in out.stderr and "did you mean 'check'" in out.stderr


# --- Python examples ---------------------------------------------------------------------------

PY_EXAMPLES = sorted(EXAMPLES.glob("*.py"))

# what each command in a Python example's docstring prints (regular expressions, in order)
PY_OUTPUTS: dict[str, list[str]] = {
    "python examples/embed.py": [
        r"room \w+: waiting at 'approval'",
        r"approved by sam: completed",
        r"total: 300\.0",
        r"replay matches: True",
    ],
    "python examples/embed.py 40": [
        r"room \w+: completed at 'done'",
        r"total: 48\.0",
        r"replay matches: True",
    ],
    "python examples/custom_tool.py": [
        r"room \w+: completed",
        r"ticket: \{'id': 'T-1', 'title': 'Printer on fire', 'priority': 'high'\}",
        r"logged call: open_ticket\(\{'title': 'Printer on fire', 'priority': 3\}\)",
        r"its idempotency key: \w+:open:1:1",
    ],
    "python examples/custom_node.py": [r"score 72: pass -> certify"],
    "python examples/custom_node.py 95": [r"score 95: distinction -> congratulate"],
    "python examples/plugin.py": [
        r"with the plugin: HELLO, WORLD -> 2 words",
        r"without it: nodes\.shout\.type: unknown node type 'shout'",
    ],
    "python examples/read_log.py": [
        r"room \w+: completed, order \{'id': 'A-17', 'status': 'shipped'\}",
        r" 4 ERROR TOOL_CALLED lookup",
        r" 6 WARN  RETRY_SCHEDULED lookup",
        r"12 INFO  ROOM_COMPLETED done",
        r"only warnings and errors:\n +4 TOOL_CALLED: ConnectionError: .*busy",
        r"key \w+:lookup:1:1: failed\n +key \w+:lookup:1:2: \{'id': 'A-17'",
        r"replaying the log gives the stored state: True",
    ],
}


def docstring_commands(path: Path) -> list[str]:
    """The ``python examples/...`` commands in a script's docstring, comments cut off."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    lines = (line.strip().split("  #")[0].strip() for line in doc.splitlines())
    return [line for line in lines if line.startswith("python examples/")]


def test_every_python_example_says_how_to_run_it_and_is_checked_here() -> None:
    assert {p.stem for p in PY_EXAMPLES} >= {
        "embed",
        "custom_tool",
        "custom_node",
        "plugin",
        "read_log",
    }
    for path in PY_EXAMPLES:
        commands = docstring_commands(path)
        assert commands, f"{path.name}: its docstring shows no `python examples/...` command"
        for text in commands:
            assert text in PY_OUTPUTS, f"add {text!r} and its output to PY_OUTPUTS"


@pytest.mark.parametrize(
    "text", [c for p in PY_EXAMPLES for c in docstring_commands(p)], ids=lambda c: c[7:]
)
def test_each_python_example_runs_offline_as_its_docstring_says(text: str, tmp_path: Path) -> None:
    """From the repository root, in a real process, with no key and no database set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROOMS_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HOME"] = str(tmp_path)  # nothing it writes may outlive the run
    argv = shlex.split(text)
    proc = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    position = 0
    for pattern in PY_OUTPUTS[text]:
        found = re.compile(pattern).search(proc.stdout, position)
        assert found, f"{pattern!r} not in (the rest of) {proc.stdout[position:]!r}"
        position = found.end()
