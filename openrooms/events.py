"""The execution log: one :class:`Event` per thing that happened in a room."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from openrooms.types import RoomId

__all__ = ["ErrorInfo", "Event", "EventType", "Level"]


class EventType(enum.StrEnum):
    """What an event records. Values are stored, so they never change."""

    ROOM_CREATED = "ROOM_CREATED"
    ROOM_QUEUED = "ROOM_QUEUED"
    ROOM_STARTED = "ROOM_STARTED"
    ROOM_RESUMED = "ROOM_RESUMED"
    NODE_STARTED = "NODE_STARTED"
    NODE_COMPLETED = "NODE_COMPLETED"
    NODE_FAILED = "NODE_FAILED"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    TRANSITION = "TRANSITION"
    ROOM_WAITING = "ROOM_WAITING"
    INPUT_RECEIVED = "INPUT_RECEIVED"
    ROOM_COMPLETED = "ROOM_COMPLETED"
    ROOM_FAILED = "ROOM_FAILED"
    ROOM_CANCELLED = "ROOM_CANCELLED"
    TOOL_CALLED = "TOOL_CALLED"
    LLM_CALLED = "LLM_CALLED"
    MEMORY_SET = "MEMORY_SET"
    MESSAGES_ADDED = "MESSAGES_ADDED"
    BRANCH_COMPLETED = "BRANCH_COMPLETED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


class Level(enum.StrEnum):
    """Severity, ordered DEBUG < INFO < WARN < ERROR < FATAL."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"

    @property
    def rank(self) -> int:
        """Position in the severity order, for ``--level`` filters."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {level: i for i, level in enumerate(Level)}


@attrs.frozen(slots=True)
class ErrorInfo:
    """A failure as recorded in the log: exception type, message and traceback text."""

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, *, with_traceback: bool = True) -> ErrorInfo:
        """Describe *exc*, with its formatted traceback when *with_traceback* is true."""
        tb = None
        if with_traceback and exc.__traceback__ is not None:
            import traceback

            tb = "".join(traceback.format_exception(exc))
        return cls(type=type(exc).__name__, message=str(exc), traceback=tb)


@attrs.define(slots=True)
class Event:
    """One line of a room's execution log. Treat it as read-only.

    Not frozen on purpose: the engine builds three per step, and frozen attrs construction
    cost 1.6 µs of the 15 µs per-transition budget (``bench/engine.py``). Nothing in
    OpenRooms mutates an event after it is made.

    Attributes:
        room_id: the room it belongs to.
        seq: per-room sequence number, from 1, without gaps.
        type: what happened.
        level: severity.
        timestamp: milliseconds since the Unix epoch, as given by the runner's clock.
        node: the node it concerns, if any.
        data: structured details; for state-changing events, exactly what the fold needs.
        error: failure details, if any.
        duration_ms: how long the thing took, where that is meaningful.
    """

    room_id: RoomId
    seq: int
    type: EventType
    level: Level
    timestamp: int
    node: str | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict)
    error: ErrorInfo | None = None
    duration_ms: float | None = None

    @classmethod
    def make(
        cls,
        room_id: RoomId,
        seq: int,
        type: EventType,
        level: Level,
        timestamp: int,
        node: str | None,
        data: Mapping[str, Any],
        error: ErrorInfo | None = None,
        duration_ms: float | None = None,
    ) -> Event:
        """The same event as ``Event(...)`` with every field given, made faster: the engine
        makes three per transition. Nothing is checked or converted (nor is it by the
        constructor; attrs adds nothing to this class but the slots)."""
        e = _new(cls)
        e.room_id = room_id
        e.seq = seq
        e.type = type
        e.level = level
        e.timestamp = timestamp
        e.node = node
        e.data = data
        e.error = error
        e.duration_ms = duration_ms
        return e


_new = object.__new__
