"""Helpers for users' tests: in-memory runtimes and a clock the test moves."""

from __future__ import annotations

import threading

from openrooms.backends.memory import MemoryStore
from openrooms.runtime import Runtime
from openrooms.tools import ToolRegistry

__all__ = ["ManualClock", "memory_runtime"]


class ManualClock:
    """A millisecond clock that only moves when told to; pass it as ``clock=`` to a Runtime.

    Wait timeouts are decided by this clock, so a test can expire a wait without sleeping.
    """

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        """Move the clock forward by *ms*; returns the new time."""
        with self._lock:
            self._now += ms
            return self._now


def memory_runtime(
    *, tools: ToolRegistry | None = None, clock: ManualClock | None = None
) -> Runtime:
    """A runtime over a fresh in-memory store (state and log in one, committed atomically)."""
    store = MemoryStore()
    if clock is None:
        return Runtime(store, store, tools=tools)
    return Runtime(store, store, tools=tools, clock=clock)
