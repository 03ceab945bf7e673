"""Helpers for the server tests: a gate a tool blocks on, polling with a deadline, and
checking answers against the OpenAPI document's schemas."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jsonschema

from openrooms_server.routes_openapi import OPENAPI

T = TypeVar("T")

DEADLINE_S = 20.0


def poll(check: Callable[[], T | None], what: str, deadline_s: float = DEADLINE_S) -> T:
    """Call *check* until it returns something other than None, or fail after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_schema(body: Any, name: str) -> None:
    """*body* matches ``#/components/schemas/NAME`` of the served OpenAPI document."""
    schema = {**OPENAPI, "$ref": f"#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema).validate(body)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """*response* is the error shape with *status* and *code*; its ``error`` object."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert_schema(body, "Error")
    assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


class Gate:
    """A loopback server the ``gate`` tool of tests/e2e/rq_tools.py connects to: each call
    of the tool blocks (its room is running) until the test answers it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        self.waiting: list[socket.socket] = []
        self.arrived = 0
        self._cond = threading.Condition()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.makefile("r").readline()
            with self._cond:
                self.waiting.append(conn)
                self.arrived += 1
                self._cond.notify_all()

    def wait(self, calls: int = 1, deadline_s: float = DEADLINE_S) -> None:
        """Until the tool has been called *calls* times in all (those rooms are running)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: self.arrived >= calls, deadline_s)
        assert ok, f"the gate tool was called {self.arrived} times, not {calls}"

    def answer(self, text: str = "opened") -> None:
        """Answer every call waiting now."""
        with self._cond:
            conns, self.waiting = self.waiting, []
        for conn in conns:
            with contextlib.suppress(OSError):  # its caller is gone (a killed server)
                conn.sendall(f"{text}\n".encode())
            conn.close()

    def close(self) -> None:
        self.server.close()
        with self._cond:
            conns, self.waiting = self.waiting, []
        for conn in conns:
            conn.close()


def gate_workflow(port: int, wf_id: str = "gated") -> dict[str, Any]:
    """gate -> after -> done: a room that runs until the test opens the gate."""
    return {
        "id": wf_id,
        "nodes": {
            "gate": {"type": "tool", "tool": "gate", "args": {"port": port}, "output": "opened"},
            "after": {"type": "set", "assign": {"finished": True}},
            "done": {"type": "end"},
        },
        "transitions": [{"from": "gate", "to": "after"}, {"from": "after", "to": "done"}],
    }
