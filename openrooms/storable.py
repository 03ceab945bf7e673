"""What a store can keep: values from outside are checked where they enter a room.

A room's state and log are JSON. Python produces values JSON cannot hold, or that a
later read cannot parse back: ``float("inf")`` (Python's own ``json`` turns ``1e999``
into it), strings with lone surrogates (``"\\ud800"``: not encodable as UTF-8),
integers too long to parse back, and nesting too deep to encode. A tool result, a
model reply, wait input or a variable holding one of these would leave a room that can
never be saved again, so each is refused with :class:`UnstorableValueError`, naming
where the value sits::

    nodes.fetch output: $.items[3].price is inf

The limits (see :data:`MAX_INT_DIGITS` and :data:`MAX_DEPTH`) are far beyond what real
data needs; floats are any finite float.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

from openrooms.errors import UnstorableValueError
from openrooms.events import ErrorInfo, EventType

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "check_events",
    "check_storable",
    "find_unstorable",
]

MAX_INT_DIGITS: Final = 1_000
"""Integers may have at most this many decimal digits (Python parses 4,300 at most)."""
MAX_DEPTH: Final = 100
"""Lists and mappings may nest at most this many levels deep."""

_MAX_INT: Final = 10**MAX_INT_DIGITS


def _key_path(path: str, key: str) -> str:
    if key.isascii() and key.isidentifier():
        return f"{path}.{key}"
    shown = key if len(key) <= 40 else key[:37] + "..."
    return f"{path}[{json.dumps(shown, ensure_ascii=True)}]"


def _string_problem(s: str) -> str | None:
    if s.isascii():
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = s[exc.start]
        return (
            f"is a string with a lone surrogate (\\u{ord(bad):04x} at index {exc.start}), "
            f"which is not valid Unicode text"
        )
    return None


def find_unstorable(value: Any, path: str = "$") -> tuple[str, str] | None:
    """The first part of *value* that cannot be stored, as ``(json_path, problem)``.

    Returns:
        None when all of *value* can be stored.
    """
    return _find(value, path, 0)


def _find(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if value is None or value is True or value is False:
        return None
    kind = type(value)
    if kind is str:
        problem = _string_problem(value)
        return None if problem is None else (path, problem)
    if kind is float:
        return None if math.isfinite(value) else (path, f"is {value!r}")
    if kind is int:
        if -_MAX_INT < value < _MAX_INT:
            return None
        return (path, f"is an integer of more than {MAX_INT_DIGITS} digits")
    if depth >= MAX_DEPTH:
        return (path, f"nests lists or mappings more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):  # what the stores' JSON encoders take: not any Mapping
        for key, item in value.items():
            if not isinstance(key, str):
                return (path, f"has a key {key!r} that is not a string")
            problem = _string_problem(key)
            if problem is not None:
                return (path, f"has a key that {problem}")
            # the path is built only for a problem found: most values have none
            found = _find(item, "", depth + 1)
            if found is not None:
                return (_key_path(path, key) + found[0], found[1])
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _find(item, "", depth + 1)
            if found is not None:
                return (f"{path}[{i}]{found[0]}", found[1])
        return None
    if isinstance(value, str):  # subclasses (str enums) are stored as their text
        problem = _string_problem(value)
        return None if problem is None else (path, problem)
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, f"is {float(value)!r}")
    if isinstance(value, int):
        return None if -_MAX_INT < value < _MAX_INT else (path, "is an integer too large")
    return (path, f"is a {kind.__name__}, not a JSON value")


def check_storable(value: Any, where: str, *, depth: int = 0) -> None:
    """Raise unless *value* can be stored.

    Args:
        value: a value from outside (a tool result, input, a variable...).
        where: what holds it, for the message (``nodes.fetch output``).
        depth: how deep *value* sits in what is stored (1: a value of an event's data).

    Raises:
        UnstorableValueError: naming *where*, the JSON path inside it and the problem.
    """
    found = _find(value, "$", depth)
    if found is not None:
        raise UnstorableValueError(where, *found)


class _Logged(Protocol):
    """An :class:`~openrooms.events.Event`, or a record an executor asks to log."""

    @property
    def type(self) -> EventType: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def error(self) -> ErrorInfo | None: ...


# NODE_STARTED and TRANSITION, the events check_events skips unless they carry an error
_STARTED: Final = EventType.NODE_STARTED
_TRANSITION: Final = EventType.TRANSITION
"""Events whose data the engine makes from the workflow's own (validated) text and its
counters alone: the most frequent ones, skipped to keep a pure step cheap."""


def check_events(events: Iterable[_Logged], node: str | None = None) -> None:
    """Raise unless every event's (or log record's) data and error text can be stored.

    Args:
        events: events, or records of the node *node* about to become events.
        node: the node records belong to (events name their own).

    Raises:
        UnstorableValueError: naming the node, the event's field and the JSON path.
    """
    for e in events:  # written for speed: the runner checks every step's events
        err = e.error
        if err is None:
            t = e.type
            if t is _STARTED or t is _TRANSITION:
                continue
        for value in e.data.values():  # keys are ours; values may come from outside
            if value is None or (type(value) is str and value.isascii()):
                continue  # what _find passes at once, without the call (most values)
            if _find(value, "$", 1) is not None:
                _refuse(e, node)
        if err is not None:
            for field, text in (("message", err.message), ("traceback", err.traceback)):
                problem = None if text is None else _string_problem(text)
                if problem is not None:
                    raise UnstorableValueError(f"{_prefix(e, node)} error {field}", "$", problem)


def _refuse(e: _Logged, node: str | None) -> None:
    """Raise for the first value of *e*'s data that cannot be stored (check_events found
    one), naming the event's field."""
    for key, value in e.data.items():
        found = _find(value, "$", 1)
        if found is not None:
            prefix = _prefix(e, node)
            if e.type is EventType.NODE_COMPLETED and key in ("output", "assign"):
                where = f"{prefix} {key}"
            else:
                where = f"{prefix} {e.type.value.lower()} {key}"
            raise UnstorableValueError(where, *found)


def _prefix(e: _Logged, node: str | None) -> str:
    at = getattr(e, "node", node)
    return f"nodes.{at}" if at else "room"
