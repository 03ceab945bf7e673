"""Keeping leases alive, off the event loop.

A runner holds a room's lease while it runs the room; the lease lasts ``ttl_ms`` and must
be renewed before that. The renewals are made by one thread per runtime, the
:class:`LeaseKeeper`, not by a task on the event loop: a slow store call or a node that
holds the loop (CPU-bound code, a blocking client) would delay a task, and a delayed
renewal loses the lease. The keeper renews every held lease its renewal interval (default
a third of its time to live; ``workers.renew_every_s``) after the last renewal was asked
for (a slow store's answer comes later, and the lease runs from the asking); a renewal
that the store refuses (the lease was taken over, or it expired and was taken) marks the
lease lost and tells its runner at once, which cancels the running node (see
:class:`~openrooms.runner.Runner`). A renewal that fails for another reason (the store is
unreachable) is tried again until the lease would have expired; then the lease counts as
lost too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from openrooms.backends.base import Lease, StateStore
from openrooms.errors import StaleRoomError

__all__ = ["HeldLease", "LeaseKeeper"]

_RETRY_S = 0.05
"""How soon a renewal that failed for a reason other than a lost lease is tried again."""
_IDLE_S = 5.0
"""A keeper with no lease to keep for this long ends (many short rooms in a row reuse one
thread; a runtime left open costs nothing)."""


class HeldLease:
    """A lease a runner holds, as the keeper keeps it.

    Attributes:
        lease: the lease as last renewed (its token never changes).
        lost: why the lease was lost (``None`` while it is held).
        released: whether the runner's last commit released it.
    """

    __slots__ = ("_due", "interval_s", "lease", "lost", "on_lost", "released", "ttl_ms")

    def __init__(
        self,
        lease: Lease,
        ttl_ms: int,
        on_lost: Callable[[], None] | None = None,
        *,
        age_ms: int = 0,
        renew_every_ms: int | None = None,
    ) -> None:
        self.lease = lease
        self.ttl_ms = ttl_ms
        self.interval_s = (renew_every_ms if renew_every_ms is not None else ttl_ms / 3) / 1000
        self.lost: str | None = None
        self.released = False
        self.on_lost = on_lost
        # counted from when the lease was asked for, not from when a slow store granted it
        age_s = min(max(age_ms, 0) / 1000, self.interval_s)
        self._due = time.monotonic() - age_s + self.interval_s


class LeaseKeeper:
    """Renews every lease a runtime's runners hold, from one daemon thread (running while a
    lease is held, and a few seconds after).

    Args:
        states: the store the leases are in.
        now: the runtime's clock (ms), for the new expiry times.
    """

    def __init__(self, states: StateStore, now: Callable[[], int]) -> None:
        self.states, self.now = states, now
        self._held: set[HeldLease] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def hold(
        self,
        lease: Lease,
        ttl_ms: int,
        on_lost: Callable[[], None] | None = None,
        *,
        renew_every_ms: int | None = None,
    ) -> HeldLease:
        """Keep *lease* renewed (every *renew_every_ms*, default a third of *ttl_ms*) until
        :meth:`drop`; *on_lost* is called (from the keeper's thread) if it is lost
        meanwhile."""
        age = self.now() - (lease.expires_at - ttl_ms)
        held = HeldLease(lease, ttl_ms, on_lost, age_ms=age, renew_every_ms=renew_every_ms)
        with self._wake:
            self._held.add(held)
            if self._thread is None:
                self._closed = False
                self._thread = threading.Thread(
                    target=self._keep, name="openrooms-lease-keeper", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        return held

    def drop(self, held: HeldLease) -> None:
        """Stop renewing *held* (the runner is done with it)."""
        with self._wake:
            self._held.discard(held)

    def close(self) -> None:
        """Stop the thread (leases still held are no longer renewed)."""
        with self._wake:
            thread, self._thread = self._thread, None
            self._closed = True
            self._wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _keep(self) -> None:
        idle_since = None
        while True:
            with self._wake:
                if self._closed:
                    return
                if not self._held:
                    # nothing to keep: wait a while for the next hold, then leave (the next
                    # hold after that starts another thread)
                    now = time.monotonic()
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= _IDLE_S:
                        self._thread = None
                        return
                    self._wake.wait(idle_since + _IDLE_S - now)
                    continue
                idle_since = None
                now = time.monotonic()
                due = [h for h in self._held if h._due <= now]
                if not due:
                    nxt = min((h._due for h in self._held), default=now + 3600)
                    self._wake.wait(nxt - now)
                    continue
            for held in due:
                self._renew(held)

    def _renew(self, held: HeldLease) -> None:
        started = time.monotonic()
        try:
            renewed = self.states.renew_lease(held.lease, ttl_ms=held.ttl_ms, now=self.now())
        except StaleRoomError:
            self._lose(held, "another runner took it over, or it expired and was taken")
            return
        except Exception as exc:  # unreachable store: try again while the lease still holds
            if self.now() >= held.lease.expires_at:
                self._lose(held, f"it could not be renewed before it expired: {exc}")
            else:
                held._due = time.monotonic() + _RETRY_S
            return
        held.lease = renewed
        held._due = started + held.interval_s

    def _lose(self, held: HeldLease, why: str) -> None:
        with self._wake:
            if held not in self._held:
                return  # dropped meanwhile: its runner is done, nobody to tell
            self._held.discard(held)
            held.lost = why
        if held.on_lost is not None:
            held.on_lost()
