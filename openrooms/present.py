"""Rooms and events as lines for people: the progress of a run and the lines of a log.

The CLI prints these; the Python API and the server can show a room the same way. The
JSON shape of a room is :func:`openrooms.serde.room_to_dict`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from openrooms._wording import plural
from openrooms.events import Event, EventType

__all__ = ["ProgressPrinter", "log_line", "progress_line", "short"]


def short(value: Any, width: int = 60) -> str:
    """*value* as JSON, cut to *width* characters with ``...`` when longer."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def progress_line(e: Event, *, verbose: bool = False) -> str | None:
    """One line saying what *e* did, or None for an event not shown at this verbosity.

    Args:
        e: an event as a run commits it.
        verbose: also show node starts, transitions, tool calls, model turns and branches.
    """
    t, d = e.type, e.data
    ms = f" ({e.duration_ms:.1f} ms)" if e.duration_ms is not None else ""
    if t is EventType.NODE_STARTED:
        return f"  > {e.node} (attempt {d['attempt']})" if verbose or d["attempt"] > 1 else None
    if t is EventType.NODE_COMPLETED:
        out = f" -> {short(d['output'])}" if "output" in d else ""
        label = f" [{d['outcome']}]" if d["outcome"] != "ok" else ""
        return f"  ok   {e.node}{label}{out}{ms}"
    if t is EventType.NODE_FAILED:
        msg = e.error.message if e.error else d["outcome"]
        return f"  FAIL {e.node} [{d['outcome']}] {msg}{ms}"
    if t is EventType.RETRY_SCHEDULED:
        return f"  ...  retrying {e.node} in {d['delay_ms'] / 1000:g} s (attempt {d['attempt']})"
    if t is EventType.TRANSITION:
        return f"       {d['from']} --{d['on']}--> {d['to']}" if verbose else None
    if t is EventType.ROOM_WAITING:
        prompt = f": {d['prompt']}" if "prompt" in d else ""
        return f"  wait {e.node}{prompt}"
    if t is EventType.ROOM_RESUMED:
        return f"  resuming at {e.node} (attempt {d['attempt']})"
    if t is EventType.ROOM_FAILED:
        return f"  room failed: {d.get('reason')}"
    if t is EventType.ROOM_CANCELLED:
        return f"  room cancelled: {d.get('reason')}"
    if t is EventType.TOOL_CALLED and (verbose or d.get("refused")):
        refused = " REFUSED (not in the agent's tools)" if d.get("refused") else ""
        return f"       tool {d['tool']}({short(d.get('args'), 40)}){refused}{ms}"
    if t is EventType.LLM_CALLED:
        if e.error is not None:
            return f"       model {d.get('model')} failed: {e.error.message}"
        if not verbose:
            return None
        u = d.get("usage") or {}
        tokens = u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
        return f"       model {d.get('model')} turn {d.get('turn')}: {plural(tokens, 'token')}{ms}"
    if t is EventType.BRANCH_COMPLETED and verbose:
        return f"       branch {d['branch']} {'ok' if d.get('ok') else 'FAILED'}"
    if t is EventType.BUDGET_EXCEEDED:
        return f"  budget exceeded: {d['budget']} {d['used']:g} > {d['limit']:g}"
    return None


class ProgressPrinter:
    """An ``on_event`` callback that writes one line per thing that happened in a run.

    Args:
        write: called with each line (no newline), e.g. a function printing to stderr.
        verbose: see :func:`progress_line`.
    """

    def __init__(self, write: Callable[[str], object], *, verbose: bool = False) -> None:
        self.write = write
        self.verbose = verbose

    def __call__(self, e: Event) -> None:
        line = progress_line(e, verbose=self.verbose)
        if line:
            self.write(line)


def log_line(e: Event) -> str:
    """One event as a line of ``openrooms logs``: seq, UTC time, level, type, node, data."""
    when = dt.datetime.fromtimestamp(e.timestamp / 1000, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    data = short(dict(e.data), 80) if e.data else ""
    err = f" error={e.error.type}: {e.error.message}" if e.error else ""
    return (
        f"{e.seq:>5} {when} {e.level.value:<5} {e.type.value:<15} {e.node or '-':<16} {data}{err}"
    )
