"""The runtime: backends opened from URLs, registries, and the operations on rooms.

::

    rt = open_runtime()                      # sqlite:///./.openrooms/openrooms.db
    room = rt.create_room(workflow, variables={"amount": 250})
    room = rt.run(room.id)                   # until completed, failed or waiting
    room = rt.send_input(room.id, {"approved": True})
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from openrooms import engine
from openrooms._wording import VARIABLE_NAME_HINT, is_variable_name
from openrooms.backends import EventLog, StateStore, StoredWorkflow, open_backend
from openrooms.backends.base import store_clock_ms
from openrooms.config import RuntimeConfig, worker_settings
from openrooms.errors import (
    BackendConfigError,
    CorruptRoomError,
    Problem,
    RoomExistsError,
    RoomNotFoundError,
    RoomStatusError,
    SchemaValidationError,
    StaleRoomError,
    WorkflowNotFoundError,
    WorkflowValidationError,
)
from openrooms.events import Event, EventType, Level
from openrooms.inputs import check_inputs
from openrooms.registries import Registries, configured, load_plugins, open_registries
from openrooms.room import RoomState, RoomStatus
from openrooms.runner import (
    DEFAULT_COMMIT_EVERY_MS,
    DEFAULT_COMMIT_EVERY_STEPS,
    DEFAULT_MAX_LEASED_SLEEP_S,
    NO_INPUT,
    EventCallback,
    Runner,
    commit,
    make_owner,
)
from openrooms.storable import check_storable, find_unstorable
from openrooms.types import RoomId
from openrooms.urls import ResolvedUrls, resolve_urls
from openrooms.workflow import Workflow, WorkflowBuilder

if TYPE_CHECKING:
    from openrooms.backends import BackendRegistry
    from openrooms.journal import RecordedCalls
    from openrooms.llm.registry import ModelRegistry
    from openrooms.nodes.registry import NodeRegistry
    from openrooms.rerun import RerunReport
    from openrooms.storeio import StoreIO
    from openrooms.tools.registry import ToolRegistry

__all__ = ["Runtime", "backend_urls", "open_runtime", "workflow_digest"]

_CAS_RETRIES: Final = 20
_FOLLOW_WAIT_S: Final = 5.0
"""Longest wait on a log's ``wait_for_events`` in :meth:`Runtime.follow` before it looks again."""
_CLOCK_NOISE_MS: Final = 10


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def workflow_digest(definition: Mapping[str, Any]) -> str:
    """SHA-256 of a definition's canonical JSON: equal content, equal digest."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_variables(variables: Mapping[str, Any]) -> None:
    problems = []
    for name, value in variables.items():
        if not is_variable_name(name):
            problems.append(
                Problem(f"variables.{name}", "not a valid variable name", VARIABLE_NAME_HINT)
            )
            continue
        found = find_unstorable(value, f"variables.{name}")
        if found is not None:
            problems.append(Problem(*found))
    if problems:
        raise SchemaValidationError("variables", problems)


MAX_TEXT_LENGTH: Final = 10_000
"""The longest room name or cancel reason, in characters."""


def _check_text(value: object, field: str, what: str) -> None:
    """A short text from a caller (a room's name, a cancel reason): a string, storable."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        got = (
            f"a {type(value).__name__}"
            if not isinstance(value, str)
            else f"{len(value):,} characters"
        )
        raise SchemaValidationError(
            what,
            [Problem(field, f"expected text of at most {MAX_TEXT_LENGTH:,} characters, got {got}")],
        )
    check_storable(value, what)


ROOM_ID: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,999}")
"""A room id given to :meth:`Runtime.create_room`: letters, digits and ``_ . : -``; a
sub-workflow's room adds ``.node.visit.attempt`` to its parent's."""


def _check_room_id(room_id: str) -> None:
    if not isinstance(room_id, str) or not ROOM_ID.fullmatch(room_id):
        shown = repr(room_id) if len(repr(room_id)) <= 60 else repr(room_id)[:57] + "..."
        raise SchemaValidationError(
            "room id",
            [
                Problem(
                    "room_id",
                    f"{shown} is not a valid room id",
                    "use 1 to 1,000 letters, digits and _ . : -, not starting with . : or -",
                )
            ],
        )


class Runtime:
    """Rooms over a state store and an event log.

    Args:
        states: where room states, leases and workflow definitions live.
        log: where events live (may be the same object as *states*).
        tools: the tools ``tool`` nodes may call, in place of those of *registries*.
        clock: milliseconds since the epoch (default: the system clock).
        lease_ttl_ms: how long a runner's lease lasts between renewals.
        config: trusted settings (the http allow-list, agents' endpoints); see
            :mod:`openrooms.config`.
        models: resolves agents' model strings, in place of the registry of *registries*
            (litellm answers any model string no registered provider claims).
        registries: node types, tools, models and backends (default: new ones copied
            from the process-wide defaults, the ``http`` tool following *config*'s
            allow-list); see :mod:`openrooms.registries`. They belong to this runtime:
            register on ``rt.tools``, ``rt.node_types``, ``rt.models``.
        commit_every_steps, commit_every_ms: a run commits chains of pure nodes (``set``,
            ``decision``) at least every this many node steps and this often (ms); IO
            nodes, waits and ends always commit first. A crash re-runs the pure steps since.
        renew_every_ms: how often a held lease is renewed (default: *config*'s
            ``workers.renew_every_s``, else a third of the lease time).
        max_recoveries: how many takeovers in a row from runners that never let go a room
            survives before the runner that takes it fails it (default: *config*'s
            ``workers.max_recoveries``).

    *lease_ttl_ms* defaults to *config*'s ``workers.lease_ttl_s``. With the default
    *clock*, the runtime tells time by its state store's clock where the store has one
    (``clock_ms``, see :mod:`openrooms.backends.base`): it keeps the offset of the store's
    clock from this machine's (when above 10 ms; :meth:`sync_clock` measures it again),
    so lease expiry means the same to every worker.
    """

    def __init__(
        self,
        states: StateStore,
        log: EventLog,
        *,
        tools: ToolRegistry | None = None,
        clock: Callable[[], int] = _now_ms,
        lease_ttl_ms: int | None = None,
        models: ModelRegistry | None = None,
        config: RuntimeConfig | None = None,
        registries: Registries | None = None,
        commit_every_steps: int = DEFAULT_COMMIT_EVERY_STEPS,
        commit_every_ms: float = DEFAULT_COMMIT_EVERY_MS,
        renew_every_ms: int | None = None,
        max_recoveries: int | None = None,
    ) -> None:
        self.config = config if config is not None else RuntimeConfig()
        workers = self.config.workers
        if registries is None:
            registries = configured(Registries(), config)
        if tools is not None or models is not None:
            registries = registries.replace(tools=tools, models=models)
        self.registries = registries
        """This runtime's node types, tools, models and backends."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the runner waits out a retry's backoff (a re-run fast-forwards instead)."""
        self.max_leased_sleep_s: float = DEFAULT_MAX_LEASED_SLEEP_S
        """The longest retry backoff a runner sleeps through holding the room's lease; for
        a longer one it lets the lease go (see :meth:`run`), so a worker can take the room."""
        self.recorded_calls: RecordedCalls | None = None
        """For a re-run: each attempt's calls from the original log, by idempotency key."""
        self.urls: ResolvedUrls | None = None
        """The URLs :func:`open_runtime` chose (the job queue's too), and where from; None
        for a runtime made from stores."""
        self.states = states
        self.log = log
        self.clock_offset_ms = 0
        """How far the state store's clock is ahead of this machine's (ms; see above)."""
        self.now: Callable[[], int] = clock
        if clock is _now_ms and hasattr(states, "clock_ms"):
            self.now = self._store_now
            with contextlib.suppress(Exception):  # unreachable now: its first call will say
                self.sync_clock()
        self.owner = make_owner()
        if renew_every_ms is None and workers.renew_every_s is not None:
            renew_every_ms = workers.renew_every_ms
        self._runner = Runner(
            self,
            lease_ttl_ms=lease_ttl_ms if lease_ttl_ms is not None else workers.lease_ttl_ms,
            commit_every_steps=commit_every_steps,
            commit_every_ms=commit_every_ms,
            renew_every_ms=renew_every_ms,
            max_recoveries=max_recoveries if max_recoveries is not None else workers.max_recoveries,
        )
        self._workflows: dict[tuple[str, int], Workflow] = {}
        # (id, version) -> digest of the definitions this runtime has stored
        self._stored: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()
        self._stop = False
        # the event loop of the sync API (run, send_input), kept between calls: a new loop
        # per call costs more than a short room's whole run (see _run_sync)
        self._aio: asyncio.Runner | None = None
        self._aio_close: weakref.finalize[Any, Any] | None = None  # closes it, once
        self._aio_pid = 0
        self._aio_lock = threading.Lock()

    def _store_now(self) -> int:
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    def sync_clock(self) -> int:
        """Measure the state store's clock against this machine's again (where the runtime
        tells time by it); the offset now in use (ms).

        Raises:
            BackendUnavailableError: the store cannot be reached.
        """
        if self.now != self._store_now:
            return 0
        before = time.time_ns() // 1_000_000
        at = store_clock_ms(self.states)
        after = time.time_ns() // 1_000_000
        if at is not None:
            offset = at - (before + after) // 2
            # within the measurement's own noise (same machine): no offset at all
            self.clock_offset_ms = offset if abs(offset) > _CLOCK_NOISE_MS else 0
        return self.clock_offset_ms

    @property
    def lease_ttl_ms(self) -> int:
        """How long this runtime's leases last without a renewal (ms)."""
        return self._runner.lease_ttl_ms

    @property
    def max_recoveries(self) -> int:
        """Takeovers in a row from runners that never let go, before a room fails."""
        return self._runner.max_recoveries

    @property
    def tools(self) -> ToolRegistry:
        """The tools ``tool`` nodes and agents of this runtime may call."""
        return self.registries.tools

    @tools.setter
    def tools(self, tools: ToolRegistry) -> None:
        self.registries.tools = tools

    @property
    def node_types(self) -> NodeRegistry:
        """The node types workflows of this runtime may use."""
        return self.registries.node_types

    @property
    def backends(self) -> BackendRegistry:
        """The URL schemes this runtime's registries open (see :func:`open_runtime`)."""
        return self.registries.backends

    @property
    def models(self) -> ModelRegistry:
        """The model registry agents resolve their model strings with."""
        return self.registries.models

    @property
    def model_registry(self) -> ModelRegistry:
        """The same as :attr:`models`."""
        return self.registries.models

    def load_workflow(self, path: str | Path) -> Workflow:
        """Load a workflow file, its node types and tools checked against this runtime's
        registries (see :func:`openrooms.load_workflow`).

        Raises:
            FileNotFoundError / WorkflowValidationError.
        """
        from openrooms.workflow import load_workflow

        return load_workflow(path, registries=self.registries)

    # --- workflows --------------------------------------------------------------------------

    @property
    def store_io(self) -> StoreIO:
        """How this runtime calls its stores from async code without stalling the event loop
        (:mod:`openrooms.storeio`): ``await rt.store_io.call(rt.states.find, room_id)``."""
        return self._runner.io

    def register_workflow(self, workflow: Workflow | WorkflowBuilder) -> Workflow:
        """Store a definition so rooms (in any process) can run it; identical content is a no-op.

        Raises:
            WorkflowConflictError: other content is registered under the same id and version.
            WorkflowValidationError: a builder whose workflow is invalid, or a sub-workflow
                cycle through the workflows registered before it.
        """
        if isinstance(workflow, WorkflowBuilder):
            wf = workflow.build(registries=self.registries)
        else:
            wf = workflow
        key = (wf.id, wf.version)
        if self._workflows.get(key) is wf and key in self._stored:
            return wf  # this very workflow, stored by this runtime: no write at all
        if key not in self._workflows:
            self._refuse_cycles(wf)
        definition = wf.to_dict()
        digest = workflow_digest(definition)
        if self._stored.get(key) != digest:  # identical content stored before is a no-op
            self.states.put_workflow(
                StoredWorkflow(wf.id, wf.version, digest, definition, self.now())
            )
        with self._lock:
            self._stored[key] = digest
            self._workflows[key] = wf
        return wf

    def _refuse_cycles(self, wf: Workflow) -> None:
        """Refuse *wf* if its sub-workflows, as registered, lead back to it (A -> B -> A).

        Raises:
            WorkflowValidationError: naming the cycle and the node that starts it.
        """
        from openrooms.nodes.fanout import subworkflow_calls

        seen: set[tuple[str, int | None]] = set()
        for path, target, version in subworkflow_calls(wf):
            todo = [(target, version, [wf.id, target])]
            while todo:
                wf_id, ver, chain = todo.pop()
                if wf_id == wf.id:
                    raise WorkflowValidationError(
                        wf.id,
                        [
                            Problem(
                                f"{path}.workflow",
                                f"sub-workflow cycle: {' -> '.join(chain)}; every room of it "
                                f"would start another, without end",
                                "break the cycle, or loop with a transition back to a node",
                            )
                        ],
                    )
                if (wf_id, ver) in seen:
                    continue
                seen.add((wf_id, ver))
                try:
                    called = self.get_workflow(wf_id, ver)
                except (WorkflowNotFoundError, WorkflowValidationError):
                    continue  # not registered (or no longer valid): the run-time limits hold
                for _, nxt, nxt_ver in subworkflow_calls(called):
                    todo.append((nxt, nxt_ver, [*chain, nxt]))

    def get_workflow(self, workflow_id: str, version: int | None = None) -> Workflow:
        """A registered workflow (the latest version when *version* is None).

        Raises:
            WorkflowNotFoundError: none is registered.
        """
        if version is not None:
            cached = self._workflows.get((workflow_id, version))
            if cached is not None:
                return cached
        stored = self.states.get_workflow(workflow_id, version)
        key = (stored.id, stored.version)
        wf = self._workflows.get(key)
        if wf is None:
            wf = Workflow.from_dict(stored.definition, registries=self.registries)
            with self._lock:
                self._workflows[key] = wf
        return wf

    def built_workflows(self) -> list[Workflow]:
        """The workflows this runtime has built (read and checked) so far."""
        with self._lock:
            return list(self._workflows.values())

    def adopt_workflows(self, workflows: Sequence[Workflow]) -> None:
        """Use *workflows*, built by another runtime with the same registries, without
        reading or building them again: how an RQ worker's forked work horses share the
        workflows their parent built (building one compiles its expressions)."""
        with self._lock:
            for wf in workflows:
                self._workflows.setdefault((wf.id, wf.version), wf)

    def list_workflows(self) -> list[StoredWorkflow]:
        """The latest version of every registered workflow."""
        return self.states.list_workflows()

    def describe_workflows(self) -> list[dict[str, Any]]:
        """The latest version of every registered workflow as a summary, sorted by id:
        ``{id, version, description, nodes, transitions, digest, registered_at}`` (node and
        transition counts; ``registered_at`` in ms since the epoch). What ``openrooms
        workflows`` prints and ``GET /api/workflows`` returns; definitions are not rebuilt,
        so it works without the plugins their tools come from.
        """
        out = []
        for stored in self.list_workflows():
            definition = stored.definition
            out.append(
                {
                    "id": stored.id,
                    "version": stored.version,
                    "description": str(definition.get("description") or ""),
                    "nodes": len(definition.get("nodes") or ()),
                    "transitions": len(definition.get("transitions") or ()),
                    "digest": stored.digest,
                    "registered_at": stored.created_at,
                }
            )
        return out

    def describe_tools(self) -> list[dict[str, Any]]:
        """The tools ``tool`` nodes of this runtime can call (plugins' and a script's too),
        as ``{name, description, parameters}`` sorted by name: what ``openrooms tools``
        prints and ``GET /api/tools`` returns."""
        return self.tools.describe()

    def workflow_for(self, state: RoomState) -> Workflow:
        """The workflow version *state* pinned when it was created.

        Raises:
            WorkflowNotFoundError: that version is not stored.
            CorruptRoomError: the state is at a node the workflow does not have.
        """
        wf = self.get_workflow(state.workflow_id, state.workflow_version)
        if state.current_node is not None and state.current_node not in wf.nodes:
            raise CorruptRoomError(
                state.room_id,
                "room state",
                f"its current node {state.current_node!r} is not a node of workflow "
                f"{wf.id!r} v{wf.version}",
            )
        return wf

    # --- rooms ------------------------------------------------------------------------------

    def create_room(
        self,
        workflow: Workflow | WorkflowBuilder | str,
        variables: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        room_id: str | None = None,
        lineage: Mapping[str, Any] | None = None,
    ) -> RoomState:
        """Create a room (status ``created``); it pins the workflow's current version.

        Args:
            workflow: a workflow (registered if new), or the id of a registered one.
            variables: overrides of the workflow's default variables.
            name: a label for people (default: the workflow id).
            room_id: an explicit id (default: a new time-ordered one).
            lineage: set by ``subworkflow`` nodes: where the room sits in its tree of rooms.

        Raises:
            SchemaValidationError: a variable name is invalid or a value is not JSON, or
                the variables break the workflow's ``inputs`` schema (an undeclared name,
                a wrong type, a required input left out).
            SchemaValidationError: *room_id* is not a valid id (see :data:`ROOM_ID`), or
                *name* is not text of at most 10,000 characters.
            UnstorableValueError: *name* cannot be stored (a lone surrogate, say).
            WorkflowNotFoundError / WorkflowConflictError / RoomExistsError.
        """
        variables = dict(variables or {})
        _check_variables(variables)
        if room_id is not None:
            _check_room_id(room_id)
        if name is not None:
            _check_text(name, "name", "the room's name")
        if isinstance(workflow, str):
            wf = self.get_workflow(workflow)
        else:
            wf = self.register_workflow(workflow)
        check_inputs(wf, variables)
        now = self.now()
        rid = RoomId(room_id or f"{now:012x}{secrets.token_hex(5)}")
        step = engine.create_room(wf, rid, now=now, variables=variables, name=name, lineage=lineage)
        commit(self.states, self.log, step.state, step.events, expected_version=None)
        return step.state

    def get_room(self, room_id: str) -> RoomState:
        """The room's current state; where the state store has lost the room (a Redis that
        restarted empty) but the log has it, the state folded from the log (nothing is
        written: :meth:`load_room` stores it again).

        Raises:
            RoomNotFoundError: there is none, in the state store or the log.
        """
        rid = RoomId(room_id)
        state = self.states.find(rid)
        if state is not None:
            return state
        events = self.log.read(rid)
        if not events:
            raise RoomNotFoundError(rid, getattr(self.states, "where", None))
        return engine.fold(events)

    def load_room(self, room_id: str) -> RoomState:
        """The room's state, first rolled forward over log events the state store missed.

        The log is the truth: its events were all accepted under the room's fence, so the
        state folded from them is the room's, whoever saves it (the save is compare-and-set
        on the version: it only ever moves the state store forward). A room the state store
        has lost (a Redis that restarted empty, say) but whose log has events is rebuilt
        from the log and stored again.

        Raises:
            RoomNotFoundError: no such room, in the state store or the log.
            StaleRoomError: the state store kept changing while it was rolled forward.
        """
        rid = RoomId(room_id)
        for _ in range(_CAS_RETRIES):
            found = self.states.find(rid)
            if found is None:
                events = self.log.read(rid)
                if not events:
                    raise RoomNotFoundError(rid, getattr(self.states, "where", None))
                rebuilt = engine.fold(events)
                try:
                    self.states.create(rebuilt)
                except RoomExistsError:
                    continue  # rebuilt (or created) by another process meanwhile: read again
                return rebuilt
            state = found
            tail = self.log.read(rid, after=state.version)
            if not tail:
                return state
            rolled = engine.apply(state, tail)
            try:
                self.states.replace(rolled, expected_version=state.version)
            except StaleRoomError:
                continue  # moved on meanwhile (rolled forward by another reader): read again
            return rolled
        raise StaleRoomError(rid, -1)

    def list_rooms(
        self,
        *,
        status: RoomStatus | str | None = None,
        workflow_id: str | None = None,
        query: str | None = None,
        before: tuple[int, str] | None = None,
        limit: int = 100,
        on_corrupt: Callable[[CorruptRoomError], None] | None = None,
    ) -> list[RoomState]:
        """Rooms, newest first (by ``created_at``, then id).

        Args:
            status: only rooms with this status.
            workflow_id: only rooms of this workflow.
            query: only rooms whose id or workflow id starts with it (case-sensitive,
                literal).
            before: ``(created_at, room_id)`` of the last room of the previous page: only
                rooms older than it (keyset pagination; see
                :meth:`~openrooms.backends.base.StateStore.list_rooms`).
            limit: at most this many.
            on_corrupt: see Raises.

        Raises:
            CorruptRoomError: a stored room does not decode, and *on_corrupt* is None; when
                it is given, each such room is passed to it and the others are listed.
        """
        # passed only when given: stores written before these options existed keep working
        extra: dict[str, Any] = {} if on_corrupt is None else {"on_corrupt": on_corrupt}
        if query:
            extra["query"] = query
        if before is not None:
            extra["before"] = (int(before[0]), str(before[1]))
        return self.states.list_rooms(
            status=RoomStatus(status) if status is not None else None,
            workflow_id=workflow_id,
            limit=limit,
            **extra,
        )

    def status_counts(
        self, *, query: str | None = None, workflow_id: str | None = None
    ) -> dict[str, int]:
        """How many rooms have each status (every status a key, 0 when none), filtered as
        :meth:`list_rooms`; exact, counted by the state store."""
        return self.states.status_counts(query=query or None, workflow_id=workflow_id)

    def events(
        self,
        room_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        min_level: Level | str | None = None,
        types: Sequence[EventType | str] | None = None,
    ) -> list[Event]:
        """A room's log (events with ``seq > after``), optionally filtered."""
        return self.log.read(
            RoomId(room_id),
            after=after,
            limit=limit,
            min_level=Level(min_level) if min_level is not None else None,
            types=[EventType(t) for t in types] if types is not None else None,
        )

    def follow(
        self,
        room_id: str,
        *,
        after: int = 0,
        poll_s: float = 0.2,
        min_level: Level | str | None = None,
        types: Sequence[EventType | str] | None = None,
        stop_when_idle: bool = True,
    ) -> Iterator[Event]:
        """Yield a room's events as they are written.

        Where the log can say when it grows (a ``wait_for_events(room_id, after_seq,
        timeout_s)`` method: Postgres' LISTEN/NOTIFY) it waits on that, and wakes as soon as
        a commit lands; otherwise it polls every *poll_s* seconds.

        Stops once the room is finished (or waiting, when *stop_when_idle*) and every
        event up to that point has been yielded.
        """
        cursor = after
        rid = RoomId(room_id)
        wait = getattr(self.log, "wait_for_events", None)
        while True:
            state = self.states.get(rid)
            for e in self.log.read(rid, after=cursor):
                cursor = e.seq
                if min_level is not None and e.level.rank < Level(min_level).rank:
                    continue
                if types is not None and e.type not in {EventType(t) for t in types}:
                    continue
                yield e
            if cursor >= state.version and (
                state.status.is_terminal or (stop_when_idle and state.status is RoomStatus.WAITING)
            ):
                return
            if wait is not None:
                # a state change always comes with events, so the log growing is the signal;
                # the timeout only bounds how long a lost notification could delay us
                wait(rid, cursor, _FOLLOW_WAIT_S)
            else:
                time.sleep(poll_s)

    def replay(self, room_id: str) -> RoomState:
        """Rebuild the room's state by folding its whole log (it equals the stored state)."""
        return engine.fold(self.log.read(RoomId(room_id)))

    def rerun(self, room_id: str) -> RerunReport:
        """Execute the room again in memory, answering every model and tool call from its
        log, and report whether the new log matches (see :mod:`openrooms.rerun`)."""
        from openrooms.rerun import rerun

        return rerun(self, room_id)

    # --- running ----------------------------------------------------------------------------

    async def _closing(self, work: Awaitable[RoomState]) -> RoomState:
        """Run *work*, then let model clients close what they opened on this event loop."""
        try:
            return await work
        finally:
            await self.models.aclose()

    async def arun(
        self,
        room_id: str,
        *,
        force: bool = False,
        on_event: EventCallback | None = None,
        hand_over: bool = False,
    ) -> RoomState:
        """Run a room until it completes, fails or waits (async).

        With *hand_over*, also return when the room must sleep longer than
        :attr:`max_leased_sleep_s` until a retry (it stays ``running``, due at ``wake_at``):
        what workers do. Without, such a backoff is slept with the lease released, and the
        room is taken back after it, or followed while another runner has it.

        Raises:
            RoomNotFoundError, RoomLeasedError (another live runner has it).
            LeaseLostError: the lease expired or was taken over mid-run; the node that was
                running was cancelled and nothing more was committed.
            InfrastructureError: a store failed (BackendUnavailableError, StaleRoomError,
                ...), also inside a node; the room stays resumable.
        """
        return await self._runner.run(
            RoomId(room_id), force=force, on_event=on_event, hand_over=hand_over
        )

    def run(
        self, room_id: str, *, force: bool = False, on_event: EventCallback | None = None
    ) -> RoomState:
        """Run a room until it completes, fails or waits; also resumes a crashed run.

        Runs on this runtime's own event loop, kept between calls until :meth:`close` (from
        inside a running event loop, await :meth:`arun` instead: this raises RuntimeError).

        Raises:
            RoomNotFoundError, RoomLeasedError (another live runner has it).
            LeaseLostError: the lease expired or was taken over mid-run; the node that was
                running was cancelled and nothing more was committed.
            InfrastructureError: a store failed (BackendUnavailableError, StaleRoomError,
                ...), also inside a node; the room stays resumable.
        """
        return self._run_sync(self.arun(room_id, force=force, on_event=on_event))

    resume = run

    def _run_sync(self, work: Coroutine[Any, Any, RoomState]) -> RoomState:
        """Run *work* to its end as ``asyncio.run`` would (model clients closed, tasks it left
        cancelled; RuntimeError from inside a running event loop), on this runtime's own
        event loop, kept open until :meth:`close`. A call made while another thread runs
        one gets a loop of its own, as does a forked child."""
        if _loop_running():
            work.close()  # never awaited: closed here, so no warning says so
            raise RuntimeError("cannot run a room synchronously inside a running event loop")
        if not self._aio_lock.acquire(blocking=False):  # another thread's run has the loop
            return asyncio.run(self._closing(work))
        try:
            aio = self._aio
            if aio is None or self._aio_pid != os.getpid():
                if self._aio_close is not None:  # a forked child: the parent's loop is its own
                    self._aio_close.detach()
                aio = self._aio = asyncio.Runner()
                self._aio_pid = os.getpid()
                # closed by close(), or when the runtime is collected
                self._aio_close = weakref.finalize(self, _close_loop, aio, aio.get_loop())
                first = True
            else:
                first = False
            try:
                return aio.run(self._closing(work))
            finally:
                _cancel_left(aio.get_loop())
                if first:  # as after asyncio.run: the thread has no current loop
                    asyncio.set_event_loop(None)
        finally:
            self._aio_lock.release()

    def request_stop(self) -> None:
        """Make every runner of this runtime stop at its next step boundary, now and later.

        Safe to call from a signal handler or another thread. The step in progress finishes
        and is committed; the room stays ``running`` (its lease released), so ``run`` or
        ``openrooms resume`` on another runtime goes on from there.
        """
        self._stop = True

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called."""
        return self._stop

    async def asend_input(
        self, room_id: str, data: Any, *, on_event: EventCallback | None = None
    ) -> RoomState:
        """Deliver input to a waiting room and run it on (async)."""
        if data is NO_INPUT:
            raise TypeError("no input given")
        return await self._runner.run(RoomId(room_id), on_event=on_event, input=data)

    def send_input(
        self, room_id: str, data: Any, *, on_event: EventCallback | None = None
    ) -> RoomState:
        """Deliver input to a waiting room and run it on until it finishes or waits again.

        Raises:
            RoomStatusError: the room is not waiting.
            SchemaValidationError: *data* breaks the wait node's schema (PatternTimeoutError
                when a pattern of it runs out of time); nothing is recorded.
            UnstorableValueError: *data* holds a value no store can keep (inf, a lone
                surrogate...); nothing is recorded.
            RoomNotFoundError / RoomLeasedError.
        """
        return self._run_sync(self.asend_input(room_id, data, on_event=on_event))

    def record_input(self, room_id: str, data: Any) -> RoomState:
        """Deliver input to a waiting room without running it on: the wait node completes
        and the room moves to its next node (``running``, no lease held), for a worker to
        run (``openrooms input --detach`` queues it).

        Raises:
            RoomStatusError: the room is not waiting.
            SchemaValidationError / UnstorableValueError: as :meth:`send_input`; nothing is
                recorded.
            RoomLeasedError: a live runner holds the room (a wait timeout being run, say).
            RoomNotFoundError.
        """
        if data is NO_INPUT:
            raise TypeError("no input given")
        rid = RoomId(room_id)
        lease = self.states.acquire_lease(
            rid, self.owner, ttl_ms=self._runner.lease_ttl_ms, now=self.now()
        )
        try:
            if cast(object, self.log) is not self.states:
                self.log.fence(rid, lease.token)
            state = self.load_room(room_id)
            step = engine.receive_input(self.workflow_for(state), state, data, now=self.now())
            commit(
                self.states,
                self.log,
                step.state,
                step.events,
                expected_version=state.version,
                lease=lease,
            )
            return step.state
        finally:
            self.states.release_lease(lease)

    def cancel(self, room_id: str, *, reason: str = "cancelled") -> RoomState:
        """Cancel an unfinished room; a runner working on it stops at its next commit.

        Raises:
            RoomStatusError: the room has already finished.
            SchemaValidationError: *reason* is not text, or longer than 10,000 characters.
            UnstorableValueError: *reason* cannot be stored (a lone surrogate, say).
            RoomNotFoundError.
        """
        _check_text(reason, "reason", "the cancel reason")
        return self._update(room_id, lambda s: engine.cancel(s, now=self.now(), reason=reason))

    def enqueue(self, room_id: str) -> RoomState:
        """Leave a created room for a worker: it is marked ``queued``, and a worker on the
        same stores (:class:`~openrooms.worker.Worker`, ``openrooms worker``) starts it.

        Raises:
            RoomStatusError: the room is not ``created`` (it has started, or is queued).
            RoomNotFoundError.
        """
        return self._update(room_id, lambda s: engine.queue(s, now=self.now()))

    def _update(self, room_id: str, change: Callable[[RoomState], engine.Step]) -> RoomState:
        """Apply an engine step compare-and-set, reloading on a lost race."""
        for _ in range(_CAS_RETRIES):
            state = self.load_room(room_id)  # the log may be ahead of a separate state store
            step = change(state)
            try:
                commit(
                    self.states, self.log, step.state, step.events, expected_version=state.version
                )
            except StaleRoomError:
                continue
            return step.state
        raise RoomStatusError(room_id, "busy", "update it", "it changed on every attempt")

    def close(self) -> None:
        """Stop the runner's threads and event loop, and close the backends."""
        # not while a run is on the loop (close() called from a node, or another thread):
        # then the loop is closed when the runtime is collected
        if self._aio_lock.acquire(blocking=False):
            try:
                close_loop, self._aio_close, self._aio = self._aio_close, None, None
            finally:
                self._aio_lock.release()
            if close_loop is not None:
                close_loop()
        self._runner.close()
        self.states.close()
        if cast(object, self.log) is not self.states:
            self.log.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _cancel_left(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks a run left on *loop* and let them end (as ``asyncio.run`` does)."""
    if loop.is_closed():
        return
    left = asyncio.all_tasks(loop)
    if not left:
        return
    for task in left:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))


def _close_loop(aio: asyncio.Runner, loop: asyncio.AbstractEventLoop) -> None:
    """Close a runtime's event loop; from a finalizer on a thread that runs another loop,
    only the loop itself (its async generators and executor are left to end)."""
    if _loop_running():
        loop.close()
    else:
        aio.close()


def backend_urls(
    db: str | None = None,
    *,
    state_url: str | None = None,
    log_url: str | None = None,
    config: RuntimeConfig | None = None,
) -> tuple[str, str]:
    """The state store's and the event log's URLs, by :func:`open_runtime`'s precedence
    (:func:`openrooms.urls.resolve_urls`), without opening them (``openrooms db upgrade``
    must not open a schema that is behind)."""
    urls = resolve_urls(os.environ, db=db, state_url=state_url, log_url=log_url, config=config)
    return urls.state, urls.log


def open_runtime(
    db: str | None = None,
    *,
    state_url: str | None = None,
    log_url: str | None = None,
    tools: ToolRegistry | None = None,
    clock: Callable[[], int] = _now_ms,
    lease_ttl_ms: int | None = None,
    models: ModelRegistry | None = None,
    config: RuntimeConfig | None = None,
    read_only: bool = False,
    plugins: Sequence[str] = (),
    registries: Registries | None = None,
    max_recoveries: int | None = None,
) -> Runtime:
    """Open a runtime from backend URLs, with its own registries and plugins.

    Precedence (:func:`openrooms.urls.resolve_urls`): explicit arguments (*state_url* /
    *log_url*, then *db* for both), then ``OPENROOMS_STATE_URL`` / ``OPENROOMS_LOG_URL``, then
    ``OPENROOMS_DB`` for both, then the config's ``backends`` section, then ``DATABASE_URL``,
    then ``REDIS_URL``, then ``sqlite:///./.openrooms/openrooms.db``. The runtime's ``urls``
    holds what was chosen, the job queue's URL too (``urls.queue``).

    The runtime's registries are *registries* if given (used as they are, with *plugins*
    loaded into them), else new ones from the process-wide defaults with the plugins
    loaded: those *config* names, then ``OPENROOMS_PLUGINS`` (comma-separated), then
    *plugins* (:func:`openrooms.registries.open_registries`). Plugins load before the backends
    open, so a plugin can add a backend scheme. *tools* and *models* replace those
    registries' tools and models.

    Lease time, renewal interval and recovery cap come from *lease_ttl_ms* and
    *max_recoveries* when given, else ``OPENROOMS_LEASE_TTL_S``, ``OPENROOMS_RENEW_EVERY_S``
    and ``OPENROOMS_MAX_RECOVERIES``, else *config*'s ``workers`` section
    (:func:`openrooms.config.worker_settings`).

    With *read_only*, the backends are opened for reading (see :func:`open_backend`):
    inspecting rooms then never creates a database, never waits for a writer's lock, and
    works on a file it may not write; operations that write raise BackendError.

    Raises:
        PluginError: a plugin cannot be imported, has no ``register`` hook, or its hook
            raised; the error names it.
        BackendConfigError: a URL that cannot be opened.
        DatabaseNotFoundError: *read_only* and a SQLite file that does not exist.
        SchemaValidationError: a worker setting from the environment is out of range.
    """
    settings = worker_settings(config, os.environ)
    if config is not None or settings != RuntimeConfig().workers:
        config = attrs.evolve(config or RuntimeConfig(), workers=settings)
    if registries is None:
        registries = open_registries(plugins, config=config)
    else:
        load_plugins(registries, plugins)
    urls = resolve_urls(os.environ, db=db, state_url=state_url, log_url=log_url, config=config)
    s_url, l_url = urls.state, urls.log
    backends = registries.backends

    def open_(url: str, role: str) -> Any:
        try:
            return open_backend(url, read_only=read_only, registry=backends)
        except BackendConfigError as exc:
            source = urls.sources.get(role, "")
            if not source.isupper() and not source.startswith("config"):
                raise  # given here (an argument, --db) or the default: nothing to add
            raise BackendConfigError(
                exc.backend, f"{exc.message} (the {role} URL was set by {source})"
            ) from exc.__cause__

    states = open_(s_url, "state")
    try:
        log = states if l_url == s_url else open_(l_url, "log")
    except BaseException:
        states.close()
        raise
    runtime = Runtime(
        states,
        log,
        tools=tools,
        clock=clock,
        lease_ttl_ms=lease_ttl_ms,
        models=models,
        config=config,
        registries=registries,
        max_recoveries=max_recoveries,
    )
    runtime.urls = urls
    return runtime
