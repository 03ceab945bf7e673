"""How the runner calls its stores without ever stalling its event loop.

A store call is synchronous. Made on the event loop, a slow one (a network store, a
database another process has locked) would stall every coroutine of the process: other
rooms, the node that is running, the progress output. So the runner makes its store calls
through a :class:`StoreIO`, which picks one of three ways per runtime, once:

- *inline*, when no store of the pair may block (``may_block = False``, the memory store):
  a call costs nothing extra;
- *inline without waiting, else on the IO thread*, when every store that may block offers
  ``call_without_waiting`` (SQLite): the call is made inline and raises
  :class:`~openrooms.errors.WouldBlockError` at once where it would wait for a lock, and only
  then is it made again on the IO thread. A SQLite step's commit (50 µs with
  ``synchronous=NORMAL``) costs less than the hand-off to a thread;
- *on the IO thread*, for any other store (a network store, or a third-party one that does
  not say): one daemon thread per runtime (started on demand, ended when idle), fed by a
  :class:`queue.SimpleQueue`, answering the event loop with ``call_soon_threadsafe`` (about
  50 µs a round trip, a third of ``loop.run_in_executor``'s). One thread keeps a room's
  calls in order without locks; the runner awaits each call before it makes the next.

The lease is renewed by its own thread (:mod:`openrooms.lease`), so neither a slow store
call nor a node that holds the event loop delays a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from openrooms.errors import WouldBlockError

__all__ = ["StoreIO", "may_block"]

T = TypeVar("T")

_STOP: Final = object()
_IDLE_S: Final = 5.0
"""An IO thread with nothing to do for this long ends (a runtime left open costs nothing)."""


def may_block(store: object) -> bool:
    """Whether a call to *store* may wait on IO (True unless the store says otherwise)."""
    return bool(getattr(store, "may_block", True))


class StoreIO:
    """Makes a runtime's store calls from the event loop, off it where they may block.

    Args:
        stores: the runtime's state store and event log (the same object once if shared).
        name: the IO thread's name, for debuggers and ``threading.enumerate()``.
    """

    def __init__(self, *stores: object, name: str = "openrooms-io") -> None:
        blocking = [s for s in dict.fromkeys(stores, None) if may_block(s)]
        self.inline = not blocking
        """Whether every call is made inline (no store of the pair may block)."""
        tries = [getattr(s, "call_without_waiting", None) for s in blocking]
        self._tries: list[Callable[..., Any]] | None = (
            [t for t in tries if t is not None] if all(t is not None for t in tries) else None
        )
        self.try_now: Callable[..., Any] | None = (
            self._tries[0] if self._tries is not None and len(tries) == 1 else None
        )
        """The one store's ``call_without_waiting``, where there is one store to try (SQLite):
        call it directly on the hot path, and :meth:`off_loop` on WouldBlockError."""
        self._name = name
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, made where it cannot stall the event loop.

        Raises whatever *fn* raises. Cancelling the caller does not stop a call the IO
        thread has begun; its result is dropped (the stores' fences decide what it wrote).
        """
        if self.inline:
            return fn(*args, **kwargs)
        if self.try_now is not None:  # one store that can be tried (SQLite): the hot path
            try:
                return self.try_now(fn, *args, **kwargs)  # type: ignore[no-any-return]
            except WouldBlockError:
                return await self.off_loop(fn, *args, **kwargs)
        if self._tries is not None:
            try:
                return self._without_waiting(fn, args, kwargs)
            except WouldBlockError:
                pass
        return await self.off_loop(fn, *args, **kwargs)

    def _without_waiting(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        assert self._tries is not None
        call: Callable[..., T] = fn
        for attempt in self._tries:  # nested: every store of the pair refuses to wait
            call = _bind(attempt, call)
        return call(*args, **kwargs)

    async def off_loop(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the IO thread, whatever the stores say."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, kwargs, loop, future))
        self._start()  # after the put: a thread that saw an empty queue has left
        return await future

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread = thread
                thread.start()

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():  # idle: leave (the next call starts another)
                        self._thread = None
                        return
                continue
            if job is _STOP:
                return
            fn, args, kwargs, loop, future = job
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting coroutine, raised there
                _answer(loop, future.set_exception, future, exc)
            else:
                _answer(loop, future.set_result, future, result)

    def close(self) -> None:
        """Stop the IO thread once the calls queued before are made (it is a daemon thread:
        a process that exits without closing does not wait for it)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            if thread is not threading.current_thread():
                thread.join()


def _bind(attempt: Callable[..., Any], fn: Callable[..., T]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        result: T = attempt(fn, *args, **kwargs)
        return result

    return call


def _answer(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    def settle() -> None:
        if not future.done():  # the caller was cancelled meanwhile: nobody waits for it
            setter(value)

    with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits for it
        loop.call_soon_threadsafe(settle)
