"""The rooms list's queries: a page of rooms and the counts per status.

This is the one place the dashboard asks the stores for lists of rooms. The state store
does the work: :meth:`Runtime.list_rooms <openrooms.runtime.Runtime.list_rooms>` with a
keyset cursor (``before``) and a search (``query``: a room matches when its id or its
workflow id starts with it, case-sensitive and literal), one store call per page however
deep; :meth:`Runtime.status_counts <openrooms.runtime.Runtime.status_counts>`, exact. Pages
are newest first by ``(created_at, id)``; the cursor is ``GET /api/rooms``'s.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

import attrs

from openrooms.errors import CorruptRoomError
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime
from openrooms_server.dashboard.http import whole_number

__all__ = [
    "RoomsPage",
    "decode_cursor",
    "encode_cursor",
    "rooms_page",
    "status_counts",
]

_STORABLE: Final = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]*")
"""Text a store can be asked about: no control character (Postgres refuses NUL) and no lone
surrogate (no UTF-8 for it). No room id or workflow id holds one, so a search that does
matches no room, and a cursor that does is not one we made."""


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
        when = whole_number(created)  # a time no store could hold is not one we made
        if when is None or not _STORABLE.fullmatch(room_id):
            return None
        return when, room_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def rooms_page(
    rt: Runtime,
    *,
    status: RoomStatus | None,
    query: str | None,
    before: tuple[int, str] | None,
    limit: int,
) -> RoomsPage:
    """Up to *limit* rooms older than *before* (newest first), with *status*, matching
    *query*; and the cursor of the next page. One store call."""
    if query and not _STORABLE.fullmatch(query):
        return RoomsPage([], None)
    skipped: list[CorruptRoomError] = []
    found = rt.list_rooms(
        status=status,
        query=query or None,
        before=before,
        limit=limit + 1,  # one more than the page: is there a next one?
        on_corrupt=skipped.append,  # left out of the list; `openrooms db check` names it
    )
    page = found[:limit]
    more = len(found) + len(skipped) > limit  # the store had more rows than the page
    return RoomsPage(page, encode_cursor(page[-1]) if more and page else None)


def status_counts(rt: Runtime, *, query: str | None = None) -> dict[str, int]:
    """How many rooms (matching *query*) have each status, exactly: every status is a key."""
    if query and not _STORABLE.fullmatch(query):
        return {s.value: 0 for s in RoomStatus}
    return rt.status_counts(query=query or None)
