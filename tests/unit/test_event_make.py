"""``Event.make``, the engine's faster way to build an event, makes the same event."""

from __future__ import annotations

import inspect

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
