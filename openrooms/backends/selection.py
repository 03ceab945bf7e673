"""What an :class:`~openrooms.backends.base.EventLog` read returns: one filter for every store."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from openrooms.events import Event, EventType, Level

__all__ = ["select_events"]


def select_events(
    events: Iterable[Event],
    *,
    after: int = 0,
    limit: int | None = None,
    min_level: Level | None = None,
    types: Sequence[EventType] | None = None,
) -> list[Event]:
    """The events of *events* (in order) with ``seq > after``, at *min_level* or above and of
    one of *types*, at most *limit* of them: the arguments of ``EventLog.read``.

    *events* is consumed lazily, so a store can pass a generator that decodes rows as they
    are needed and stop decoding once *limit* events are chosen.
    """
    floor = 0 if min_level is None else min_level.rank
    wanted = None if types is None else frozenset(types)
    chosen = (
        e
        for e in events
        if e.seq > after and e.level.rank >= floor and (wanted is None or e.type in wanted)
    )
    return list(itertools.islice(chosen, limit))
