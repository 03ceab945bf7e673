"""Runtime config from a trusted file: the http allow-list, agents' endpoints, log limits."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openrooms import EventType, RoomStatus, Runtime, SchemaValidationError, serde
from openrooms.backends import SQLiteStore
from openrooms.cli import cli
from openrooms.config import RuntimeConfig, load_config

seen_headers: list[dict[str, str]] = []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen_headers.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps({"path": self.path, "blob": "x" * 2000}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    seen_headers.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


FETCH = """
id: fetch
variables: {base: ""}
nodes:
  get:
    type: tool
    tool: http
    args:
      method: GET
      url: "{{ vars.base }}/orders/7"
      headers: {Authorization: "Bearer sk-secret-value"}
    output: got
  done: {type: end}
transitions:
  - {from: get, to: done}
"""


def test_the_config_allow_list_opens_the_http_tool_and_secrets_stay_out_of_the_log(
    server: str, tmp_path: Path
) -> None:
    config = RuntimeConfig.from_dict(
        {"http": {"allow_networks": ["127.0.0.1/32"]}, "tool_results": {"max_logged_bytes": 512}}
    )
    store = SQLiteStore(tmp_path / "c.db")
    rt = Runtime(store, store, config=config)
    room = rt.create_room(serde.workflow_from_text(FETCH), {"base": server})
    state = rt.run(room.id)
    assert state.status is RoomStatus.COMPLETED, state.reason
    assert state.variables["got"]["json"]["path"] == "/orders/7"
    assert seen_headers[0]["authorization"] == "Bearer sk-secret-value"
    assert seen_headers[0]["idempotency-key"] == f"{room.id}:get:1:1"
    called = rt.events(room.id, types=[EventType.TOOL_CALLED])[0]
    assert called.data["args"]["headers"]["Authorization"] == "[redacted]"
    assert called.data["truncated"] is True  # 2 KB result, 512 B log limit
    assert "sk-secret-value" not in json.dumps(called.data)
    rt.close()


def test_without_config_the_http_tool_refuses_every_destination(
    server: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "d.db")
    rt = Runtime(store, store)
    state = rt.run(rt.create_room(serde.workflow_from_text(FETCH), {"base": server}).id)
    assert state.status is RoomStatus.FAILED
    assert "allow" in (state.reason or "")
    assert seen_headers == []
    rt.close()


def test_bad_config_files_list_every_problem_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "http: {allow_hostz: [x]}\nagents: {a: {api_base: ftp://x}, b: {model: y}}\n"
        "tool_results: {max_logged_bytes: 1}\nextra: 1\n"
    )
    with pytest.raises(SchemaValidationError) as info:
        load_config(bad)
    paths = {p.path for p in info.value.problems}
    assert paths == {
        "http.allow_hostz",
        "agents.a.api_base",
        "agents.b.model",
        "tool_results.max_logged_bytes",
        "extra",
    }
    result = CliRunner().invoke(cli, ["--config", str(bad), "rooms"])
    assert result.exit_code == 2
    assert "http.allow_hostz" in result.output


def test_an_agents_endpoint_comes_from_the_config_not_the_workflow(tmp_path: Path) -> None:
    from openrooms.llm import ChatRequest, ChatResponse, Message, Usage
    from openrooms.llm.registry import ModelRegistry

    asked: list[str | None] = []

    class Recorder:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            asked.append(request.api_base)
            return ChatResponse(Message("assistant", "hi"), Usage(), request.model)

    wf = serde.workflow_from_text(
        "id: ep\nagents:\n  a: {model: rec/x, api_base: 'http://workflow.example/v1'}\n"
        "nodes:\n  ask: {type: agent, agent: a}\n  done: {type: end}\n"
        "transitions:\n  - {from: ask, to: done}\n"
    )
    models = ModelRegistry()
    models.register_provider("rec", Recorder())
    config = RuntimeConfig.from_dict({"agents": {"a": {"api_base": "http://127.0.0.1:9/v1"}}})
    store = SQLiteStore(tmp_path / "e.db")
    rt = Runtime(store, store, models=models, config=config)
    rt.run(rt.create_room(wf).id)
    plain = Runtime(store, store, models=models)
    plain.run(plain.create_room(wf).id)
    assert asked == ["http://127.0.0.1:9/v1", "http://workflow.example/v1"]
    rt.close()


def test_the_cli_config_option_reaches_the_http_tool(server: str, tmp_path: Path) -> None:
    config = tmp_path / "openrooms.yaml"
    config.write_text("http:\n  allow_networks: [127.0.0.1/32]\n")
    flow = tmp_path / "fetch.yaml"
    flow.write_text(FETCH)
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    refused = runner.invoke(cli, ["--db", db, "run", str(flow), "--var", f"base={server}"])
    assert refused.exit_code == 1
    assert seen_headers == []
    allowed = runner.invoke(
        cli, ["--db", db, "--config", str(config), "run", str(flow), "--var", f"base={server}"]
    )
    assert allowed.exit_code == 0, allowed.output
    assert len(seen_headers) == 1
