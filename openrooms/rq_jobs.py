"""RQ workers for OpenRooms: the job entry point, the worker class, and :func:`work`.

Every queued run of a room is an RQ job that calls :func:`run_room` with the room's id (JSON
serializer; see :mod:`openrooms.backends.rq`). :func:`run_room` opens a runtime from the
worker's environment, exactly as the command line does (``OPENROOMS_DB`` or
``OPENROOMS_STATE_URL``/``OPENROOMS_LOG_URL``, ``OPENROOMS_CONFIG``, ``OPENROOMS_PLUGINS``,
``OPENROOMS_SCRIPT``, the ``OPENROOMS_*`` worker settings), runs the room until it finishes,
waits or must sleep, and queues its next run where it has one: a retry's or a wait
timeout's wake-up time, or at once for a room stopped by a warm shutdown. It logs one line
per room run at INFO on the ``openrooms.worker`` logger: the room, how the run ended, and
how long it took.

:class:`OpenRoomsWorker` is an ``rq.Worker`` (a work horse forked per job) that also

- runs the sweeper (:mod:`openrooms.sweeper`) every ``workers.sweep_every_s``, while idle and
  while a job runs (one worker per interval does, whichever asks first);
- makes SIGTERM a warm shutdown of the room too: the horse is told to stop at its next
  step boundary (the step in progress finishes and is committed), the room is queued
  again for another worker, and the worker exits;
- forks its horses from a process that has imported OpenRooms and loaded the plugins.

``openrooms worker`` runs it (:func:`work`). Plain RQ works too::

    rq worker -u redis://127.0.0.1:6379/0 --serializer rq.serializers.JSONSerializer \\
        --with-scheduler openrooms
    rq worker ... -w openrooms.rq_jobs.OpenRoomsWorker ...   # with the sweeper

With RQ's own worker class a SIGTERM lets the running room finish its run (RQ's warm
shutdown), and nothing sweeps: run ``openrooms sweep`` from time to time, or one
``openrooms worker`` beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import rq
from rq.serializers import JSONSerializer

from openrooms.backends.rq import RQJobQueue
from openrooms.errors import LeaseLostError, RoomLeasedError, RoomNotFoundError
from openrooms.room import RoomState, RoomStatus
from openrooms.sweeper import sweep
from openrooms.types import RoomId

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.job import Job

    from openrooms.config import RuntimeConfig
    from openrooms.registries import Registries
    from openrooms.runtime import Runtime

__all__ = [
    "HOLD_OFF_S",
    "next_run_in",
    "open_worker_runtime",
    "OpenRoomsWorker",
    "prepare",
    "run_room",
    "work",
]

logger = logging.getLogger("openrooms.worker")

HOLD_OFF_S: Final = 30.0
"""When a room's run failed for a reason other than the room (a missing workflow, a store
that is unavailable), its next run is queued this many seconds later."""

_prepared: tuple[RuntimeConfig | None, Registries] | None = None
_current: Runtime | None = None  # the runtime of the room running in this process
_parent: Runtime | None = None  # an OpenRoomsWorker's own runtime (sweeps, warm-up)
_stop_requested = False


def prepare(config: RuntimeConfig | None = None, registries: Registries | None = None) -> None:
    """Load the runtime config and plugins once, for every job this process (and the horses
    forked from it) runs; by default from ``OPENROOMS_CONFIG`` and ``OPENROOMS_PLUGINS``.

    Raises:
        PluginError / SchemaValidationError / FileNotFoundError: as the command line.
    """
    global _prepared
    if config is None and os.environ.get("OPENROOMS_CONFIG"):
        from openrooms.config import load_config

        config = load_config(os.environ["OPENROOMS_CONFIG"])
    if registries is None:
        from openrooms.registries import open_registries

        registries = open_registries((), config=config)
    _prepared = (config, registries)


def open_worker_runtime() -> Runtime:
    """A runtime as the worker's environment describes it (see the module docstring)."""
    from openrooms.runtime import open_runtime

    if _prepared is None:
        prepare()
    assert _prepared is not None
    config, registries = _prepared
    script = os.environ.get("OPENROOMS_SCRIPT")
    if script:
        from openrooms.offline import load_script

        models, tools = load_script(script, registries.tools)
        return open_runtime(config=config, registries=registries, models=models, tools=tools)
    return open_runtime(config=config, registries=registries)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """In a work horse: stop the room at its next step boundary (a warm shutdown)."""
    global _stop_requested
    _stop_requested = True
    rt = _current
    if rt is not None:
        rt.request_stop()


def _ensure_log_handler() -> None:
    """Under a plain ``rq worker`` nobody configured our logger: show its lines as RQ's."""
    root = logging.getLogger("openrooms")
    if not root.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def run_room(room_id: str) -> str:
    """The RQ job of one run of a room: run it, queue its next run, log one line.

    Returns:
        How the run ended, as logged (RQ keeps no result: ``result_ttl=0``).
    """
    _ensure_log_handler()
    started = time.perf_counter()
    job = rq.get_current_job()
    queue = RQJobQueue.for_job(job) if job is not None else None
    if queue is not None and job is not None:
        queue.claim(room_id, job.id)
    installed = False
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):  # the horse of a plain rq worker: SIGTERM to it is a warm stop too
        signal.signal(signal.SIGTERM, _on_sigterm)
        installed = True
    try:
        outcome = _run(room_id, queue)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logger.info("room %s %s (%.1f ms)", room_id, outcome, (time.perf_counter() - started) * 1000)
    return outcome


def _run(room_id: str, queue: RQJobQueue | None) -> str:
    global _current
    rt = open_worker_runtime()
    parent = _parent
    if parent is not None and parent is not rt:
        rt.adopt_workflows(parent.built_workflows())  # a horse: built before it was forked
    _current = rt
    if _stop_requested:  # SIGTERM came before the runtime was there
        rt.request_stop()
    try:
        try:
            state = asyncio.run(_arun(rt, room_id))
        except RoomLeasedError as exc:
            return f"left alone: another runner holds it ({exc.owner})"
        except LeaseLostError as exc:
            return f"stopped: its lease was lost ({exc})"
        except RoomNotFoundError:
            return "not found"
        except Exception as exc:  # the room's run failed, not the room: try it again later
            if queue is not None:
                queue.enqueue(room_id, delay_s=HOLD_OFF_S)  # type: ignore[arg-type]
            logger.warning("room %s not run: %s", room_id, exc)
            return f"not run: {type(exc).__name__}: {exc}; queued again in {HOLD_OFF_S:g} s"
        delay_s = next_run_in(state, rt.now())
        said = _ended(state)
        if delay_s is not None and queue is not None:
            queue.enqueue(state.room_id, delay_s=delay_s)
            said += " (queued again)" if delay_s == 0 else f" (next run in {delay_s:.3g} s)"
        return said
    finally:
        _current = None
        rt.close()


async def _arun(rt: Runtime, room_id: str) -> RoomState:
    try:
        return await rt.arun(room_id, hand_over=True)
    finally:
        if "openrooms.llm.registry" in sys.modules:
            await rt.models.aclose()


def next_run_in(state: RoomState, now: int) -> float | None:
    """Seconds until *state* needs its next run (0: at once), or None if it needs none
    until someone acts (it finished, or waits for input without a timeout)."""
    status = state.status
    if status.is_terminal:
        return None
    if status is RoomStatus.WAITING or status is RoomStatus.RUNNING:
        if state.wake_at is None:
            # waiting for input; or running with no timer: stopped by a warm shutdown
            return None if status is RoomStatus.WAITING else 0.0
        return max(0.0, (state.wake_at - now) / 1000)
    return 0.0  # created or queued: stopped before it started


def _ended(state: RoomState) -> str:
    at = repr(state.current_node)
    status = state.status
    if status is RoomStatus.WAITING:
        return f"waiting at {at}" + (" until its timeout" if state.wake_at is not None else "")
    if status is RoomStatus.RUNNING:
        if state.wake_at is not None:
            return f"sleeping until its retry of {at} is due"
        return f"stopped at {at} (warm shutdown)"
    if status.is_terminal:
        tail = f": {state.reason}" if state.reason else ""
        return f"{status.value} at {at}{tail}"
    return f"stopped before it started ({status.value})"


class OpenRoomsWorker(rq.Worker):
    """``rq.Worker`` with the sweeper, a warm shutdown that stops the room at a step
    boundary, and JSON as its serializer (see the module docstring).

    Args:
        sweep_every_s: how often to sweep (default: the ``workers.sweep_every_s`` in force,
            from ``OPENROOMS_SWEEP_EVERY_S`` or the config file).
        *args, **kwargs: as ``rq.Worker``.
    """

    def __init__(self, *args: Any, sweep_every_s: float | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        if sweep_every_s is None:
            from openrooms.config import worker_settings

            config = _prepared[0] if _prepared is not None else None
            sweep_every_s = worker_settings(config, os.environ).sweep_every_s
        self.sweep_every_s = float(sweep_every_s)  # before RQ's set-up, which reads it
        super().__init__(*args, **kwargs)
        # the horse is watched (and the sweeper run) at least this often while a job runs
        self.job_monitoring_interval = max(
            1, min(int(self.job_monitoring_interval), int(self.sweep_every_s))
        )
        self._next_sweep = 0.0
        self.swept = 0
        """How many rooms this worker's sweeps queued."""

    @property
    def dequeue_timeout(self) -> Any:  # RQ types it int; Redis takes seconds as a float
        """Wait for a job at most until the next sweep is due."""
        return max(0.05, min(super().dequeue_timeout, self.sweep_every_s))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or time.monotonic() >= self._next_sweep

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        self.sweep_if_due()

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        super().maintain_heartbeats(job, execution)
        self.sweep_if_due()

    def sweep_if_due(self) -> None:
        """Sweep, if this worker's interval has passed and no other worker has swept in it."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every_s
        queue = RQJobQueue.for_queue(self.queues[0])
        try:
            if not queue.take_sweep_turn(self.sweep_every_s):
                return
            for found in sweep(self.runtime().states, queue):
                if found.queued:
                    self.swept += 1
                    logger.info("sweeper queued room %s (%s)", found.room_id, found.why)
        except Exception as exc:  # a sweep that fails is tried again next interval
            logger.warning("sweep failed: %s", exc)

    def runtime(self) -> Runtime:
        """The worker's own runtime, opened once: its sweeps read the store through it, and
        it builds each job's workflow before the horse is forked, so horses share it. Its
        open connection also keeps the SQLite file's write-ahead log from being checkpointed
        and removed each time a horse closes the last one."""
        global _parent
        if _parent is None:
            _parent = open_worker_runtime()
        return _parent

    def execute_job(self, job: Job, queue: rq.Queue) -> None:
        """Build the room's workflow here, once, then run the job in a horse as RQ does."""
        self.prepare_job(job)
        super().execute_job(job, queue)

    def prepare_job(self, job: Job) -> None:
        """Build *job*'s room's workflow in this process (before a horse is forked)."""
        try:
            rt = self.runtime()
            args = job.args
            state = rt.states.find(RoomId(args[0])) if args and isinstance(args[0], str) else None
            if state is not None:
                rt.workflow_for(state)
        except Exception:  # noqa: S110 (the horse meets and reports whatever this is)
            pass

    def setup_work_horse_signals(self) -> None:
        """In the horse: Ctrl-C is the worker's to handle; SIGTERM stops the room at its
        next step boundary (see :meth:`handle_warm_shutdown_request`)."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _on_sigterm)

    def handle_warm_shutdown_request(self) -> None:
        """Tell the horse to stop its room at the next step boundary (it queues the room
        again), then stop once it has."""
        super().handle_warm_shutdown_request()  # type: ignore[no-untyped-call]
        pid = self.horse_pid
        if pid:
            with contextlib.suppress(ProcessLookupError):  # it has just ended
                os.kill(pid, signal.SIGTERM)

    def teardown(self) -> None:
        global _parent
        super().teardown()  # type: ignore[no-untyped-call]
        if _parent is not None and not self.is_horse:
            _parent.close()
            _parent = None


def work(
    queue_url: str,
    *,
    queues: Sequence[str] = (),
    burst: bool = False,
    sweep_every_s: float | None = None,
    config: RuntimeConfig | None = None,
    registries: Registries | None = None,
    name: str | None = None,
    worker_class: type[OpenRoomsWorker] = OpenRoomsWorker,
) -> bool:
    """Run an :class:`OpenRoomsWorker` on *queue_url*'s Redis, with RQ's scheduler, until
    SIGTERM or Ctrl-C (or, with *burst*, until the queues are empty).

    Args:
        queue_url: the queue URL (its queue is the one worked, unless *queues* names others).
        queues: queue names to work, in priority order.
        burst: exit once no job is waiting.
        sweep_every_s: the sweep interval (default: the settings in force).
        config, registries: the runtime config and plugins loaded (default: from the
            environment, see :func:`prepare`).
        name: the worker's name in RQ (default: a new one).
        worker_class: an :class:`OpenRoomsWorker` subclass to run instead.

    Returns:
        Whether any job ran.

    Raises:
        BackendConfigError: a bad queue URL.
        BackendUnavailableError: Redis did not answer within ``workers.connect_timeout_s``
            of the start (see :func:`_wait_for_redis`).
    """
    from openrooms.config import worker_settings

    prepare(config, registries)
    assert _prepared is not None
    settings = worker_settings(_prepared[0], os.environ)
    primary = RQJobQueue(queue_url)
    names = list(queues) or [primary.name]
    _wait_for_redis(primary, queue_url, settings.connect_timeout_s)
    worker = worker_class(
        [rq.Queue(n, connection=primary.redis, serializer=JSONSerializer) for n in names],
        connection=primary.redis,
        sweep_every_s=sweep_every_s,
        name=name,
    )
    _warm_up(worker.runtime())
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="INFO"))


def _wait_for_redis(queue: RQJobQueue, url: str, timeout_s: float) -> None:
    """Return once *queue*'s Redis answers a PING, asking again with a growing pause (0.1 s
    to 2 s) for up to *timeout_s*: a worker started beside its Redis (a compose file, a
    reboot) waits for it rather than exiting. Says so once, and again when it answers.

    Raises:
        BackendUnavailableError: no answer in time, naming the URL and the setting.
    """
    from openrooms.errors import BackendUnavailableError
    from openrooms.urls import display_url

    url = display_url(url)  # no password in a log line or an error
    deadline = time.monotonic() + timeout_s
    pause = 0.1
    said = False
    while True:
        try:
            queue.redis.ping()
        except Exception as exc:  # redis' errors, and OSError below them
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendUnavailableError(
                    "rq",
                    f"cannot reach {url} (waited {timeout_s:g} s; "
                    f"workers.connect_timeout_s or OPENROOMS_CONNECT_TIMEOUT_S): {exc}",
                ) from exc
            if not said:
                logger.warning("waiting up to %.3g s for Redis at %s: %s", left, url, exc)
                said = True
            time.sleep(min(pause, left))  # a retry's backoff, not synchronisation
            pause = min(pause * 2, 2.0)
            continue
        if said:
            logger.warning("Redis at %s answers; working", url)
        return


def _warm_up(rt: Runtime) -> None:
    """Import and build, once, what each forked horse would otherwise import and build again:
    the node executors, and the latest version of every registered workflow."""
    import openrooms.nodes.builtin  # noqa: F401

    if "http" in rt.tools.names():  # the http tool imports httpx on its first call
        with contextlib.suppress(ImportError):
            import httpx  # noqa: F401

    for stored in rt.list_workflows():
        with contextlib.suppress(Exception):  # a workflow that no longer builds: its rooms say
            rt.get_workflow(stored.id, stored.version)
