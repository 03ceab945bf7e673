"""``Event.make``, the engine's faster way to build an event, makes the same event."""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from openrooms import serde
from openrooms.events import ErrorInfo, Event, EventType, Level
from openrooms.types import RoomId


def test_make_takes_every_field_of_an_event_in_order() -> None:
    """A field added to Event must be added to make too (or make leaves it unset)."""
    parameters = list(inspect.signature(Event.make).parameters)
    assert parameters == [f.name for f in attrs.fields(Event)]


def test_make_builds_the_event_the_constructor_builds() -> None:
    args = (RoomId("r"), 3, EventType.NODE_COMPLETED, Level.INFO, 1_000, "a", {"outcome": "ok"})
    made = Event.make(*args, ErrorInfo("E", "m"), 1.5)
    assert made == Event(*args, ErrorInfo("E", "m"), 1.5)
    assert Event.make(*args) == Event(*args)
    assert type(made) is Event
    assert attrs.asdict(made) == attrs.asdict(Event(*args, ErrorInfo("E", "m"), 1.5))
    assert serde.event_from_dict(serde.event_to_dict(made)) == made


def test_the_field_dict_of_a_state_holds_every_field_in_order() -> None:
    """``state_fields`` spells RoomState's fields out: a field added to RoomState must be
    added there too (or the engine's states would lose it)."""
    from openrooms import engine
    from openrooms.room import RoomState, RoomStatus, state_fields

    values: list[Any] = [f"v{i}" for i in range(len(engine.FIELDS))]
    state = RoomState(**dict(zip(engine.FIELDS, values, strict=True)))
    fields = state_fields(state)
    assert list(fields) == list(engine.FIELDS) == [f.name for f in attrs.fields(RoomState)]
    assert list(fields.values()) == values
    assert RoomState(**fields) == state
    assert RoomStatus.RUNNING is engine._RUNNING
