"""The execution log: one :class:`Event` per thing that happened in a room."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

from openrooms.types import RoomId

__all__ = ["ErrorInfo", "Event", "EventBatch", "EventType", "Hop", "Level"]


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


Hop = tuple[int, int, str, dict[str, Any] | None, float | None, int, str, int | None]
"""One transition of a chain of pure nodes, as :func:`~openrooms.engine.advance` records
it: ``(seq, timestamp, node, assign, duration_ms, index, target, visit)``, the three events
``NODE_COMPLETED`` (at *seq*), ``TRANSITION`` (*seq* + 1) and, unless *visit* is None,
``NODE_STARTED`` of *target* (*seq* + 2)."""


class EventBatch(Sequence[Event]):
    """A room's events in order, a chain's transitions kept compact until they are read.

    A chain of pure nodes makes three events per transition; :func:`~openrooms.engine.advance`
    records each transition as one :data:`Hop` tuple instead, and the batch makes the events
    the first time it is read (indexed, iterated, compared), the same events the engine
    would have made one by one. A store that keeps events as objects keeps the batch unread
    until someone reads its log (:class:`~openrooms.backends.MemoryStore`); one that encodes
    them reads it at once. :attr:`first_seq`, :attr:`last_seq` and truth do not read it.
    """

    __slots__ = ("_events", "_items", "room_id")

    def __init__(self, room_id: RoomId, items: Iterable[Event | Hop] = ()) -> None:
        self.room_id = room_id
        self._items: list[Event | Hop] = list(items)
        self._events: tuple[Event, ...] | None = None

    def extend(self, events: Sequence[Event]) -> None:
        """Add *events* (another batch's items stay compact) after these."""
        if type(events) is EventBatch and events._events is None:
            self._items.extend(events._items)
        else:
            self._items.extend(events)
        self._events = None

    def take(self) -> EventBatch:
        """A batch of these events; this one is left empty."""
        batch = EventBatch(self.room_id, ())
        batch._items, self._items, self._events = self._items, [], None
        return batch

    @property
    def first_seq(self) -> int:
        """The first event's ``seq`` (the batch must not be empty)."""
        item = self._items[0]
        return item[0] if type(item) is tuple else item.seq  # type: ignore[union-attr]

    @property
    def last_seq(self) -> int:
        """The last event's ``seq`` (the batch must not be empty)."""
        item = self._items[-1]
        if type(item) is tuple:
            return item[0] + (1 if item[7] is None else 2)
        return item.seq  # type: ignore[union-attr]

    @property
    def read(self) -> bool:
        """Whether the events were made (someone read them)."""
        return self._events is not None

    def events(self) -> tuple[Event, ...]:
        """The events, made on first use."""
        events = self._events
        if events is None:
            events = self._events = tuple(_expand(self.room_id, self._items))
        return events

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self.events())

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Event, ...]: ...
    def __getitem__(self, index: int | slice) -> Event | tuple[Event, ...]:
        return self.events()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return self.events() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventBatch({list(self.events())!r})"


def _expand(room_id: RoomId, items: Iterable[Event | Hop]) -> Iterator[Event]:
    make = Event.make
    completed, transition, started = (
        EventType.NODE_COMPLETED,
        EventType.TRANSITION,
        EventType.NODE_STARTED,
    )
    info, debug = Level.INFO, Level.DEBUG
    for item in items:
        if type(item) is not tuple:
            yield item  # type: ignore[misc]
            continue
        seq, now, node, assign, duration, index, target, visit = item
        data = {"outcome": "ok"} if assign is None else {"outcome": "ok", "assign": assign}
        yield make(room_id, seq, completed, info, now, node, data, None, duration)
        route = {"from": node, "to": target, "on": "ok", "index": index}
        yield make(room_id, seq + 1, transition, debug, now, node, route)
        if visit is not None:
            yield make(room_id, seq + 2, started, info, now, target, {"attempt": 1, "visit": visit})
