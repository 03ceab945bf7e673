"""The rooms list's queries: a page of rooms and the counts per status.

This is the one place the dashboard asks the stores for lists of rooms. Where the runtime's
stores page, search and count themselves (``Runtime.list_rooms(before=..., query=...)`` and
``Runtime.status_counts()``), it asks them; with a runtime that has no ``status_counts``
(stores before keyset pages), it reads a window of the newest rooms through
:meth:`Runtime.list_rooms <openrooms.runtime.Runtime.list_rooms>` and filters and counts it
here, as ``GET /api/rooms`` did. Either way the semantics are the stores': a room matches
*query* when its id or its workflow id starts with it; pages are newest first by
``(created_at, id)``.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Final

import attrs

from openrooms.errors import CorruptRoomError
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime

__all__ = [
    "COUNTED_ROOMS",
    "RoomsPage",
    "decode_cursor",
    "encode_cursor",
    "rooms_page",
    "status_counts",
]

COUNTED_ROOMS: Final = 100_000
"""The most rooms the fallback reads to filter and count (the newest)."""


@attrs.frozen
class RoomsPage:
    """A page of rooms, newest first, and the cursor of the next page (None: the last)."""

    rooms: list[RoomState]
    next_cursor: str | None


def encode_cursor(state: RoomState) -> str:
    """The keyset cursor of the page after *state*: its ``(created_at, id)``."""
    raw = f"{state.created_at}:{state.room_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str] | None:
    """The ``(created_at, id)`` a cursor holds, or None when it is not one we made."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        created, room_id = raw.split(":", 1)
        return int(created), room_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _matches(state: RoomState, query: str | None) -> bool:
    return not query or state.room_id.startswith(query) or state.workflow_id.startswith(query)


def _stores_page(rt: Runtime) -> bool:
    """Whether *rt*'s stores page by keyset, search and count by status themselves (the
    runtime has ``status_counts``, and its ``list_rooms`` takes ``before`` and ``query``).
    Looked up by name so this module works with runtimes from before and after."""
    return callable(getattr(rt, "status_counts", None))


def _skip(_exc: CorruptRoomError) -> None:
    """A room that does not decode is left out of the list (``openrooms db check`` names it)."""


def rooms_page(
    rt: Runtime,
    *,
    status: RoomStatus | None,
    query: str | None,
    before: tuple[int, str] | None,
    limit: int,
) -> RoomsPage:
    """Up to *limit* rooms older than *before* (newest first), with *status*, matching
    *query*; and the cursor of the next page."""
    if _stores_page(rt):
        found: list[RoomState] = getattr(rt, "list_rooms")(  # noqa: B009 (see _stores_page)
            status=status, query=query or None, before=before, limit=limit + 1, on_corrupt=_skip
        )
        page = found[:limit]
        return RoomsPage(page, encode_cursor(page[-1]) if len(found) > limit else None)
    window = limit + 1
    while True:
        found = rt.list_rooms(status=status, limit=window, on_corrupt=_skip)
        past = [
            s
            for s in found
            if (before is None or (s.created_at, s.room_id) < before) and _matches(s, query)
        ]
        if len(past) > limit or len(found) < window or window >= COUNTED_ROOMS:
            break
        window = min(window * 4, COUNTED_ROOMS)
    page = past[:limit]
    return RoomsPage(page, encode_cursor(page[-1]) if len(past) > limit else None)


def status_counts(rt: Runtime, *, query: str | None = None) -> dict[str, int]:
    """How many rooms (matching *query*) have each status: every status is a key."""
    if _stores_page(rt):
        counted: dict[str, int] = getattr(rt, "status_counts")(query=query or None)  # noqa: B009
        return {s.value: int(counted.get(s.value, 0)) for s in RoomStatus}
    counts = Counter(
        s.status.value
        for s in rt.list_rooms(limit=COUNTED_ROOMS, on_corrupt=_skip)
        if _matches(s, query)
    )
    return {s.value: counts.get(s.value, 0) for s in RoomStatus}
