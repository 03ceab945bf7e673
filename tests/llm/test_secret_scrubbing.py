"""A provider error that echoes the API key leaves no trace of it in the database or the CLI."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from openrooms import EventType, RoomStatus, Runtime, serde
from openrooms.backends import SQLiteStore
from openrooms.cli import cli
from openrooms.llm.fake_openai import FakeOpenAI

KEY = "sk-openrooms-test-not-a-real-key"  # what the fake_openai fixture puts in the environment


def database_bytes(db: Path) -> bytes:
    """The database file and its WAL and journal files, as stored on disk."""
    return b"".join(p.read_bytes() for p in db.parent.glob(f"{db.name}*") if p.is_file())


def test_a_provider_error_echoing_the_key_is_stored_and_shown_without_it(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.enqueue(
        {"status": 500, "message": f"upstream broke while checking key {KEY}"},
        {"status": 401, "message": f"Incorrect API key provided: {KEY}. Find yours online."},
    )
    wf = serde.workflow_from_text(
        f"""
id: echoes-the-key
agents:
  writer: {{model: openai/fake-model, api_base: "{fake_openai.base_url}"}}
nodes:
  write:
    type: agent
    agent: writer
    prompt: hello
    retry: {{max_attempts: 2, backoff_s: 0.001}}
  done: {{type: end}}
transitions:
  - {{from: write, to: done}}
"""
    )
    db = tmp_path / "rooms.db"
    store = SQLiteStore(db)
    rt = Runtime(store, store)
    room = rt.create_room(wf)
    state = rt.run(room.id)
    assert state.status is RoomStatus.FAILED
    assert KEY not in (state.reason or "")
    assert "Incorrect API key provided: [redacted]" in (state.reason or "")
    calls = rt.events(room.id, types=[EventType.LLM_CALLED])
    assert len(calls) == 2 and all(c.error is not None for c in calls)
    failed = rt.events(room.id, types=[EventType.NODE_FAILED])
    assert failed[-1].error is not None and failed[-1].error.traceback  # kept, but scrubbed
    assert KEY.encode() not in database_bytes(db)
    rt.close()
    assert KEY.encode() not in database_bytes(db)

    runner = CliRunner()
    for args in (
        ["show", room.id],
        ["show", room.id, "--json"],
        ["logs", room.id],
        ["logs", room.id, "--json"],
    ):
        shown = runner.invoke(cli, ["--db", f"sqlite:///{db}", *args], catch_exceptions=False)
        assert shown.exit_code == 0, shown.output
        assert "[redacted]" in shown.output
        assert KEY not in shown.output
