"""The sweeper: queue the rooms nobody will otherwise run.

Two kinds of room need a run with no job queued for them:

- a room whose wake-up time has passed (a retry's backoff, a wait's timeout, a room left
  ``queued``) while no job for it is pending: its job was lost, or never queued (it was
  made by ``run --detach`` without a queue, or its worker died before queueing the next
  run): :meth:`StateStore.due_rooms <openrooms.backends.base.StateStore.due_rooms>`;
- a room whose runner died: ``running`` or ``queued`` under a lease that expired without
  being released (``expired_rooms``, see :mod:`openrooms.backends.base`).

Every worker sweeps every ``workers.sweep_every_s`` (the first to ask in each interval,
on RQ), and ``openrooms sweep`` makes one pass. Time is the store's clock, so a worker
whose clock is wrong does not take a live runner's room. Queueing a room that already has
a job pending adds nothing (the queue says so), and a room queued twice still has one
runner (its lease); the runner that takes a crashed runner's room counts it against the
recovery cap (``workers.max_recoveries``).
"""

from __future__ import annotations

import time
from typing import Final, Literal

import attrs

from openrooms.backends.base import JobQueue, StateStore, expired_rooms, store_clock_ms
from openrooms.types import RoomId

__all__ = ["DEFAULT_SWEEP_LIMIT", "Swept", "sweep"]

DEFAULT_SWEEP_LIMIT: Final = 1000
"""Rooms of each kind one pass queues at most (the next pass takes the rest)."""


@attrs.frozen(slots=True)
class Swept:
    """A room one sweep found.

    Attributes:
        room_id: the room.
        why: ``"due"`` (its wake-up time has passed) or ``"lease expired"`` (its runner
            died).
        queued: whether a new job was queued for it (False: one was already pending).
    """

    room_id: RoomId
    why: Literal["due", "lease expired"]
    queued: bool

    def to_dict(self) -> dict[str, object]:
        """``{"id", "why", "queued"}``, as ``openrooms sweep --json`` prints it."""
        return {"id": self.room_id, "why": self.why, "queued": self.queued}


def sweep(
    states: StateStore,
    queue: JobQueue,
    *,
    now: int | None = None,
    limit: int = DEFAULT_SWEEP_LIMIT,
) -> list[Swept]:
    """One pass: queue every room whose lease expired unreleased, then every due room.

    Args:
        states: where the rooms are.
        queue: where their runs go.
        now: the time to judge by (default: the store's clock, else this machine's).
        limit: rooms of each kind at most.

    Returns:
        Each room found, once (a room both expired and due is reported as expired).

    Raises:
        BackendUnavailableError: the store or the queue cannot be reached.
    """
    if now is None:
        clock = store_clock_ms(states)
        now = clock if clock is not None else time.time_ns() // 1_000_000
    found: list[Swept] = []
    seen: set[RoomId] = set()
    for room_id in expired_rooms(states, now, limit=limit):
        seen.add(room_id)
        found.append(Swept(room_id, "lease expired", bool(queue.enqueue(room_id))))
    for room_id in states.due_rooms(now, limit=limit):
        if room_id not in seen:
            seen.add(room_id)
            found.append(Swept(room_id, "due", bool(queue.enqueue(room_id))))
    return found
