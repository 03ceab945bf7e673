"""The commands ``openrooms`` prints for a person to run next work when run as printed.

Each test runs the real command in a subprocess, takes the printed follow-up line, splits
it as a shell would (``shlex.split``) and runs exactly that.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"

PLUGIN = """
from openrooms import tool


def shout(text: str) -> str:
    '''Upper-case a text.'''
    return text.upper()


def register(registries):
    tool(registry=registries.tools)(shout)
"""

FLOW = """
id: shouting
nodes:
  loud:
    type: tool
    tool: shout
    args: {text: hello}
    output: loud
  approve:
    type: wait
    prompt: "Send {{ vars.loud }}?"
  done:
    type: end
transitions:
  - {from: loud, to: approve}
  - {from: approve, to: done}
"""


def environment(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    for name in ("OPENROOMS_DB", "OPENROOMS_SCRIPT", "OPENROOMS_CONFIG", "OPENROOMS_PLUGINS"):
        env.pop(name, None)
    return env


def openrooms(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert args[0] == "openrooms", args
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", *args[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def continue_command(stdout: str, data: str) -> list[str]:
    """The printed ``continue it with:`` command, its '<json>' placeholder filled in."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.endswith("continue it with:"))
    words = shlex.split(lines[at + 1])
    assert words.count("<json>") == 1, words
    return [data if w == "<json>" else w for w in words]


def test_the_continue_command_after_script_and_db_runs_as_printed(tmp_path: Path) -> None:
    """`--script` is repeated: without it the writer agent would call a real model and fail."""
    env = environment(tmp_path)
    script = tmp_path / "my script.yaml"  # a space, so the printed path must be quoted
    shutil.copy(EXAMPLES / "scripts" / "support_triage.yaml", script)
    db = f"sqlite:///{tmp_path / 'rooms.db'}"
    first = [
        "openrooms",
        "--db",
        db,
        "--script",
        "my script.yaml",
        "run",
        str(EXAMPLES / "support_triage.yaml"),
    ]
    ran = openrooms(first, env, tmp_path)
    assert ran.returncode == 3, ran.stderr
    follow = continue_command(ran.stdout, '{"approved": true}')
    assert follow[:5] == ["openrooms", "--db", db, "--script", "my script.yaml"]

    done = openrooms(follow, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completed" in done.stdout


def test_the_continue_command_after_plugin_and_config_runs_as_printed(tmp_path: Path) -> None:
    """`--plugin` is repeated: without it the stored workflow names a tool nobody registered."""
    env = environment(tmp_path)
    (tmp_path / "shout_plugin.py").write_text(PLUGIN)
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "settings.yaml").write_text("tool_results: {max_logged_bytes: 4096}\n")
    first = [
        "openrooms",
        "--plugin",
        "shout_plugin",
        "--config",
        "settings.yaml",
        "run",
        "flow.yaml",
    ]
    ran = openrooms(first, env, tmp_path)
    assert ran.returncode == 3, ran.stderr
    follow = continue_command(ran.stdout, "{}")
    assert follow[:5] == ["openrooms", "--plugin", "shout_plugin", "--config", "settings.yaml"]

    done = openrooms(follow, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    # the same input without the plugin: the workflow cannot even be loaded
    room_id = follow[follow.index("input") + 1]
    rerun = openrooms(["openrooms", "rerun", room_id], env, tmp_path)
    assert rerun.returncode == 2, rerun.stderr
    assert "unknown tool 'shout'" in rerun.stderr
    assert "openrooms --plugin MODULE rerun" in rerun.stderr
    rerun = openrooms(["openrooms", "--plugin", "shout_plugin", "rerun", room_id], env, tmp_path)
    assert rerun.returncode == 0, rerun.stderr


def test_tools_lists_a_plugins_tools(tmp_path: Path) -> None:
    env = environment(tmp_path)
    (tmp_path / "shout_plugin.py").write_text(PLUGIN)
    listed = openrooms(["openrooms", "--plugin", "shout_plugin", "tools"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "shout(text: string)\n    Upper-case a text.\n" in listed.stdout
    assert "shout(" not in openrooms(["openrooms", "tools"], env, tmp_path).stdout
