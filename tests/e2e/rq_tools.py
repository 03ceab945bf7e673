"""Tools for the RQ worker tests, loaded into their workers with
``OPENROOMS_PLUGINS=tests.e2e.rq_tools``.

``gate`` blocks on a loopback socket the test holds open: it tells the test which attempt
started where (its idempotency key and process id) and returns once the test answers, so a
test kills or stops a worker while a tool runs without sleeping for it. ``die`` kills the
process that runs it, every time.
"""

from __future__ import annotations

import os
import signal
import socket

from openrooms.registries import Registries
from openrooms.tools.base import ToolContext
from openrooms.tools.registry import tool


def register(registries: Registries) -> None:
    """The plugin hook: add ``gate`` and ``die`` to the runtime's tools."""

    @tool(registry=registries.tools)
    def gate(port: int, ctx: ToolContext) -> str:
        """Report ``KEY PID`` to the test's server on *port*, return its one-line answer."""
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(f"{ctx.idempotency_key} {os.getpid()}\n".encode())
            answer = conn.makefile("r", encoding="utf-8").readline().strip()
        if not answer:
            raise ConnectionError("the gate closed without an answer")
        return answer

    @tool(registry=registries.tools)
    def die() -> str:
        """Kill this process (a node that crashes its worker every time)."""
        os.kill(os.getpid(), signal.SIGKILL)
        return "not reached"
