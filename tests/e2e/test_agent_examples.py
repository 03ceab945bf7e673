"""The agent examples run offline, as the README says, through the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def openrooms(*args: str, db: Path, script: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROOMS_", "OPENAI_"))}
    env["OPENROOMS_DB"] = f"sqlite:///{db}"
    if script:
        env["OPENROOMS_SCRIPT"] = str(EXAMPLES / "scripts" / script)
    return subprocess.run(
        [sys.executable, "-m", "openrooms.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_support_triage_classifies_looks_up_waits_for_approval_then_replies(
    tmp_path: Path,
) -> None:
    db = tmp_path / "triage.db"
    script = yaml.safe_load((EXAMPLES / "scripts" / "support_triage.yaml").read_text())
    waiting = openrooms(
        "run", str(EXAMPLES / "support_triage.yaml"), "--json", db=db, script="support_triage.yaml"
    )
    assert waiting.returncode == 3, waiting.stderr
    room = last_json(waiting.stdout)
    assert room["status"] == "waiting"
    assert room["current_node"] == "approve"
    triage = json.loads(script["models"]["triager"][0]["content"])
    assert room["variables"]["triage"] == triage
    assert room["variables"]["order"] == script["tools"]["http"][0]

    done = openrooms(
        "input",
        room["id"],
        "--data",
        '{"approved": true}',
        "--json",
        db=db,
        script="support_triage.yaml",
    )
    assert done.returncode == 0, done.stderr
    final = last_json(done.stdout)
    assert final["variables"]["reply"] == script["models"]["writer"][-1]["content"]
    assert final["usage"]["model_calls"] == 3

    same = openrooms("rerun", final["id"], db=db)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith("identical:")


def test_the_research_room_runs_its_branches_and_map_then_writes_a_brief(tmp_path: Path) -> None:
    db = tmp_path / "research.db"
    script = yaml.safe_load((EXAMPLES / "scripts" / "research.yaml").read_text())
    ran = openrooms("run", str(EXAMPLES / "research.yaml"), "--json", db=db, script="research.yaml")
    assert ran.returncode == 0, ran.stderr
    room = last_json(ran.stdout)
    by_match = {r["match"]: r["content"] for r in script["models"]["analyst"]}
    assert room["variables"]["benefits"] == by_match["benefits"]
    assert room["variables"]["risks"] == by_match["risks"]
    assert room["variables"]["costs"] == by_match["cost"]
    editor = script["models"]["editor"]
    assert room["variables"]["headlines"] == [r["content"] for r in editor[:3]]
    assert room["variables"]["brief"] == editor[3]["content"]
    tokens = sum(
        r.get("usage", {}).get("prompt_tokens", 0) + r.get("usage", {}).get("completion_tokens", 0)
        for r in script["models"]["analyst"] + editor
    )
    assert room["usage"]["prompt_tokens"] + room["usage"]["completion_tokens"] == tokens


def test_without_a_script_or_key_run_refuses_at_once_saying_so_once(tmp_path: Path) -> None:
    ran = openrooms("run", str(EXAMPLES / "research.yaml"), "--json", db=tmp_path / "nokey.db")
    assert ran.returncode not in (0, 3), ran.stdout
    said = ran.stdout + ran.stderr
    assert said.count("no API key: set OPENAI_API_KEY") == 1, said
    assert "--script" in ran.stderr
    assert "agents 'analyst', 'editor'" in ran.stderr
    assert "retrying" not in ran.stderr  # a missing key is not worth a retry
    listed = openrooms("rooms", "--json", db=tmp_path / "nokey.db")
    assert json.loads(listed.stdout or "[]") == []  # refused before any room was created
