"""The running attempt's deadline, so code cut off by it can say why it stopped.

The runner sets it around a node with ``timeout_s``; tasks the node starts (its branches)
inherit it through :mod:`contextvars`. An agent whose model call is cancelled asks
:func:`expired` whether the node's time ran out or the run was stopped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import attrs

__all__ = ["Deadline", "current", "expired", "within"]

_SLACK_S = 0.005  # the loop wakes a little early or late; a cancel this near the end is it


@attrs.frozen(slots=True)
class Deadline:
    """A node's ``timeout_s`` and when it ends, in the running loop's clock."""

    timeout_s: float
    at: float


_current: ContextVar[Deadline | None] = ContextVar("openrooms_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the attempt running in this context, if its node has one."""
    return _current.get()


def expired() -> Deadline | None:
    """The current deadline if it has passed (call it from inside a running loop)."""
    deadline = _current.get()
    if deadline is None or asyncio.get_running_loop().time() < deadline.at - _SLACK_S:
        return None
    return deadline


@contextlib.contextmanager
def within(timeout_s: float) -> Iterator[Deadline]:
    """Set the deadline ``timeout_s`` from now for the code (and tasks it starts) inside."""
    deadline = Deadline(timeout_s, asyncio.get_running_loop().time() + timeout_s)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
