"""Every exception OpenRooms raises.

Each error ends in ``Error`` and inherits :class:`OpenRoomsError`; where a built-in
fits, it inherits that too, so callers can catch either one. ``args`` mirror
``__init__`` so errors survive being pickled across process boundaries by
third-party tools (OpenRooms itself never pickles).

::

    OpenRoomsError
    ├── WorkflowValidationError (ValueError)   a bad workflow table, raised when it is built
    ├── ExpressionError (ValueError)           a guard, template or calculation that does not
    │                                          parse, or exceeds a static limit
    ├── EvaluationError (ValueError)           an expression failed at run time (missing name...)
    ├── SchemaValidationError (ValueError)     a value (input, variables, tool arguments) breaks
    │   │                                      its schema
    │   └── PatternTimeoutError                a schema's pattern ran out of its time budget
    ├── VariableSyntaxError (ValueError)       a ``--var`` that cannot be read
    ├── WorkflowNotFoundError (LookupError)
    ├── WorkflowConflictError                  other content under an existing id + version
    ├── RoomNotFoundError (LookupError)
    ├── RoomExistsError
    ├── RoomStatusError                        the room's status does not allow the operation
    ├── RoomLeasedError                        another runner holds the room's lease
    ├── TransitionNotAllowedError              no transition matches a node's outcome
    ├── InfrastructureError                    the stores or the lease failed, not a node: the
    │   │                                      runner stops and the room stays resumable
    │   ├── StaleRoomError                     lost a compare-and-set; reload and retry
    │   │   └── LeaseLostError                 the runner's lease expired or was taken over
    │   └── BackendError
    │       ├── BackendUnavailableError        refused connection, locked database, timeout
    │       │   └── WouldBlockError            a call made without waiting would have waited
    │       ├── BackendConfigError (ValueError)  a backend URL that cannot be opened
    │       │   └── SchemaOutdatedError          the database's schema is behind: run
    │       │                                    ``openrooms db upgrade``
    │       ├── DatabaseNotFoundError (LookupError)  a read-only command found no database
    │       └── CorruptDataError               a stored row does not decode (bad JSON, ...)
    │           └── CorruptRoomError           ... and it belongs to a room, named by id
    │               └── CorruptLogError        a room's events do not fold (a gap, a bad start)
    ├── RoomStoppedError                       the room was cancelled or stopped mid-node
    ├── MissingExtraError (ImportError)        an optional dependency is not installed
    ├── NodeTypeNotFoundError (LookupError)
    ├── ToolNotFoundError (LookupError)
    ├── ToolError                              a tool failed; its exception is the __cause__
    ├── UnsafeTemplateError (ValueError)       a template splices a value into a tool
    │                                          argument the tool parses as code
    ├── CompletionError                        the model provider failed or replied unusably
    │   └── MissingAPIKeyError                 the provider's API key is not in the environment
    ├── UnstorableValueError (ValueError)      a value no store can keep (inf, lone surrogate...)
    ├── RoomLimitError                         a sub-workflow tree went past its depth or rooms
    ├── PluginError (ValueError)               a plugin that cannot be imported, has no hook,
    │                                          or whose hook raised
    └── InputError (ValueError)                a file or text from outside that cannot be read:
                                               not UTF-8, too big, duplicate keys, too deep
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs

__all__ = [
    "BackendConfigError",
    "BackendError",
    "BackendUnavailableError",
    "CompletionError",
    "CorruptDataError",
    "CorruptLogError",
    "CorruptRoomError",
    "DatabaseNotFoundError",
    "EvaluationError",
    "ExpressionError",
    "InfrastructureError",
    "InputError",
    "LeaseLostError",
    "MissingAPIKeyError",
    "MissingExtraError",
    "NodeTypeNotFoundError",
    "OpenRoomsError",
    "PatternTimeoutError",
    "PluginError",
    "Problem",
    "RoomExistsError",
    "RoomLeasedError",
    "RoomLimitError",
    "RoomNotFoundError",
    "RoomStatusError",
    "RoomStoppedError",
    "SchemaOutdatedError",
    "SchemaValidationError",
    "StaleRoomError",
    "ToolError",
    "ToolNotFoundError",
    "TransitionNotAllowedError",
    "UnsafeTemplateError",
    "UnstorableValueError",
    "VariableSyntaxError",
    "WorkflowConflictError",
    "WorkflowNotFoundError",
    "WorkflowValidationError",
    "WouldBlockError",
]


class OpenRoomsError(Exception):
    """Base class of every error OpenRooms raises on purpose."""


@attrs.frozen
class Problem:
    """One thing wrong with a definition or a value, located by a dotted *path*.

    Attributes:
        path: where the problem is, e.g. ``transitions[3].to`` or ``nodes.review.retry``.
        message: what is wrong.
        hint: how to fix it, when there is something to say.
    """

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{where}{self.message}" + (f" — {self.hint}" if self.hint else "")


MAX_SHOWN_PROBLEMS: Final = 50
"""A message lists at most this many problems; ``problems`` on the error holds them all."""


def _render(problems: Sequence[Problem]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:MAX_SHOWN_PROBLEMS])
    more = len(problems) - MAX_SHOWN_PROBLEMS
    return shown if more <= 0 else f"{shown}\n  ... and {more} more"


class WorkflowValidationError(OpenRoomsError, ValueError):
    """A workflow definition is invalid; ``problems`` lists everything found at once."""

    def __init__(self, workflow_id: str, problems: Sequence[Problem]) -> None:
        super().__init__(workflow_id, list(problems))
        self.workflow_id = workflow_id
        self.problems = list(problems)

    def __str__(self) -> str:
        n = len(self.problems)
        noun = "problem" if n == 1 else "problems"
        return f"workflow {self.workflow_id!r} has {n} {noun}:\n{_render(self.problems)}"


class ExpressionError(OpenRoomsError, ValueError):
    """An expression does not parse, or exceeds a static limit (length, nesting, exponent)."""

    def __init__(self, source: str, message: str, position: int | None = None) -> None:
        super().__init__(source, message, position)
        self.source, self.message, self.position = source, message, position

    def __str__(self) -> str:
        shown = self.source if len(self.source) <= 80 else self.source[:77] + "..."
        at = f" at column {self.position + 1}" if self.position is not None else ""
        return f"{self.message}{at} in expression {shown!r}"


class EvaluationError(OpenRoomsError, ValueError):
    """An expression parsed but failed when evaluated (missing name, wrong type, ...)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, message)
        self.source, self.message = source, message

    def __str__(self) -> str:
        shown = self.source if len(self.source) <= 80 else self.source[:77] + "..."
        return f"{self.message} (in {shown!r})"


class SchemaValidationError(OpenRoomsError, ValueError):
    """A value does not satisfy its JSON schema; ``problems`` says where and why."""

    def __init__(self, what: str, problems: Sequence[Problem]) -> None:
        super().__init__(what, list(problems))
        self.what = what
        self.problems = list(problems)

    def __str__(self) -> str:
        return f"{self.what} is invalid:\n{_render(self.problems)}"


class PatternTimeoutError(SchemaValidationError):
    """A schema's ``pattern`` took longer than its time budget on a value (it backtracks
    without end, like ``^(a|a)*$``); the value is refused, and ``problems`` names the pattern."""


class VariableSyntaxError(OpenRoomsError, ValueError):
    """A ``--var`` that cannot be read: no ``=``, ``NAME:=JSON`` that is not JSON, or
    ``NAME=TEXT`` that starts like JSON (``{``, ``[``, ``"``) and does not parse."""

    def __init__(self, given: str, message: str, hint: str = "") -> None:
        super().__init__(given, message, hint)
        self.given, self.message, self.hint = given, message, hint

    def __str__(self) -> str:
        shown = self.given if len(self.given) <= 80 else self.given[:77] + "..."
        tail = f" — {self.hint}" if self.hint else ""
        return f"--var {shown!r}: {self.message}{tail}"


class WorkflowNotFoundError(OpenRoomsError, LookupError):
    """No workflow is registered under this id (and version)."""

    def __init__(self, workflow_id: str, version: int | None = None) -> None:
        super().__init__(workflow_id, version)
        self.workflow_id, self.version = workflow_id, version

    def __str__(self) -> str:
        if self.version is None:
            return f"no workflow {self.workflow_id!r} is registered"
        return f"no workflow {self.workflow_id!r} version {self.version} is registered"


class WorkflowConflictError(OpenRoomsError):
    """Different content is already registered under the same workflow id and version."""

    def __init__(self, workflow_id: str, version: int) -> None:
        super().__init__(workflow_id, version)
        self.workflow_id, self.version = workflow_id, version

    def __str__(self) -> str:
        return (
            f"workflow {self.workflow_id!r} version {self.version} is already registered with "
            f"different content; bump 'version' to publish a change"
        )


class RoomNotFoundError(OpenRoomsError, LookupError):
    """No room has this id (in the database *where*, when the store names one)."""

    def __init__(self, room_id: str, where: str | None = None) -> None:
        super().__init__(room_id, where)
        self.room_id, self.where = room_id, where

    def __str__(self) -> str:
        return f"no room {self.room_id!r}" + (f" in {self.where}" if self.where else "")


class RoomExistsError(OpenRoomsError):
    """A room with this id already exists."""

    def __init__(self, room_id: str) -> None:
        super().__init__(room_id)
        self.room_id = room_id

    def __str__(self) -> str:
        return f"a room {self.room_id!r} already exists"


class RoomStatusError(OpenRoomsError):
    """The room's status does not allow the requested operation."""

    def __init__(self, room_id: str, status: str, action: str, allowed: str = "") -> None:
        super().__init__(room_id, status, action, allowed)
        self.room_id, self.status, self.action, self.allowed = room_id, status, action, allowed

    def __str__(self) -> str:
        tail = f" ({self.allowed})" if self.allowed else ""
        return f"room {self.room_id!r} is {self.status}; cannot {self.action}{tail}"


class RoomLeasedError(OpenRoomsError):
    """Another runner holds the room's lease; only one writer runs a room at a time."""

    def __init__(self, room_id: str, owner: str, expires_at_ms: int) -> None:
        super().__init__(room_id, owner, expires_at_ms)
        self.room_id, self.owner, self.expires_at_ms = room_id, owner, expires_at_ms

    def __str__(self) -> str:
        return (
            f"room {self.room_id!r} is being run by {self.owner!r} "
            f"({_lease_end(self.expires_at_ms)}); wait for it, or resume with --force if that "
            f"runner is gone"
        )


def _lease_end(ms: int) -> str:
    """When a lease ends, as an ISO time (UTC) and how far that is from now."""
    import datetime as dt
    import time

    try:
        at = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"its lease expires at {ms} ms since the epoch"
    seconds = round(ms / 1000 - time.time())
    span = abs(seconds)
    text = f"{span} s"
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if span >= size:
            amount = span // size
            text = f"{amount} {unit}" + ("s" if unit == "day" and amount != 1 else "")
            break
    if seconds >= 0:
        return f"its lease expires at {at}, in {text}"
    return f"its lease expired at {at}, {text} ago"


class TransitionNotAllowedError(OpenRoomsError):
    """A node finished with an outcome that no transition of the workflow accepts."""

    def __init__(self, room_id: str, node: str, outcome: str) -> None:
        super().__init__(room_id, node, outcome)
        self.room_id, self.node, self.outcome = room_id, node, outcome

    def __str__(self) -> str:
        return (
            f"room {self.room_id!r} is at node {self.node!r}; "
            f"no transition matches outcome {self.outcome!r}"
        )


class InfrastructureError(OpenRoomsError):
    """The stores or the lease failed, not the node that was running.

    Raised inside a node (from a journal commit, say), it is never the node's failure: it
    uses up no retry and takes no ``on: error`` branch. The runner stops and the room stays
    as it was last committed, to be resumed.
    """


class StaleRoomError(InfrastructureError):
    """A compare-and-set save lost: the stored version is not the expected one."""

    def __init__(self, room_id: str, expected_version: int) -> None:
        super().__init__(room_id, expected_version)
        self.room_id, self.expected_version = room_id, expected_version

    def __str__(self) -> str:
        return (
            f"room {self.room_id!r} changed since version {self.expected_version}, "
            f"or its lease was lost; reload it and retry"
        )


class LeaseLostError(StaleRoomError):
    """The runner's lease expired or another runner took it over: its work on the room stopped.

    Nothing was committed by this runner after the loss; the room goes on with its new owner,
    or is resumed.
    """

    def __init__(self, room_id: str, owner: str, why: str) -> None:
        OpenRoomsError.__init__(self, room_id, owner, why)
        self.room_id, self.owner, self.why = room_id, owner, why
        self.expected_version = -1

    def __str__(self) -> str:
        return (
            f"room {self.room_id!r}: this runner ({self.owner}) lost its lease ({self.why}); "
            f"it stopped, and the room goes on with whoever holds the lease now"
        )


class RoomStoppedError(OpenRoomsError):
    """The room was cancelled, failed or taken over while a node was running; stop it."""

    def __init__(self, room_id: str, status: str) -> None:
        super().__init__(room_id, status)
        self.room_id, self.status = room_id, status

    def __str__(self) -> str:
        return f"room {self.room_id!r} is {self.status} now; the running node stops"


class BackendError(InfrastructureError):
    """A storage or queue backend failed."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(backend, message)
        self.backend, self.message = backend, message

    def __str__(self) -> str:
        return f"{self.backend}: {self.message}"


class BackendUnavailableError(BackendError):
    """The backend cannot be reached now (refused connection, locked database, timeout)."""


class WouldBlockError(BackendUnavailableError):
    """A store call made without waiting (``without_waiting()``) would have had to wait, for a
    lock held by another connection, say; nothing was done, and the call can be made again."""


class BackendConfigError(BackendError, ValueError):
    """A backend URL that names an unknown scheme or cannot be opened as given."""


class SchemaOutdatedError(BackendConfigError):
    """The database's schema is older than this OpenRooms needs; ``openrooms db upgrade``
    migrates it. Opening never migrates an existing schema on its own."""

    def __init__(self, backend: str, where: str, found: int, expected: int) -> None:
        OpenRoomsError.__init__(self, backend, where, found, expected)
        self.backend, self.where, self.found, self.expected = backend, where, found, expected
        self.message = (
            f"{where} has schema version {found}; this OpenRooms needs version {expected}. "
            "Run `openrooms db upgrade` with the same --db URL (or OPENROOMS_DB) to migrate it"
        )


class DatabaseNotFoundError(BackendError, LookupError):
    """A read-only opening found no database at *path* (read-only commands never create one)."""

    def __init__(self, path: str, detail: str = "", backend: str = "sqlite") -> None:
        OpenRoomsError.__init__(self, path, detail, backend)
        self.backend, self.message = backend, detail
        self.path, self.detail = path, detail

    def __str__(self) -> str:
        what = (
            f"no OpenRooms database at {self.path} ({self.detail})"
            if self.detail
            else (f"no database at {self.path}")
        )
        if self.backend != "sqlite":
            return (
                f"{what}; nothing has been stored there. Check --db (or OPENROOMS_DB), or "
                f"create it with `openrooms db upgrade`"
            )
        return (
            f"{what}; nothing has been stored there. Run from the folder where you ran "
            f"`openrooms run`, or pass --db URL (or set OPENROOMS_DB)"
        )


class CorruptDataError(BackendError):
    """A stored row cannot be decoded: bad JSON, a missing field, an unknown event type.

    Attributes:
        where: the database, table and row, e.g. ``rooms.db, table workflows, row id='w'``.
        problem: what is wrong with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(where, problem)
        self.where, self.problem = where, problem

    def __str__(self) -> str:
        return f"corrupt data in {self.where}: {self.problem} ({_CHECK_HINT})"


class CorruptRoomError(CorruptDataError):
    """A room's stored state or one of its events cannot be decoded; the room is named by id."""

    def __init__(self, room_id: str, where: str, problem: str) -> None:
        OpenRoomsError.__init__(self, room_id, where, problem)
        self.backend, self.message = where, problem
        self.room_id, self.where, self.problem = room_id, where, problem

    def __str__(self) -> str:
        return f"room {self.room_id!r} is corrupt: {self.where}: {self.problem} ({_CHECK_HINT})"


class CorruptLogError(CorruptRoomError):
    """A room's events cannot be folded into a state: a sequence number is missing or
    repeated, or the log does not start with ``ROOM_CREATED``. Raised by
    :func:`openrooms.engine.apply` and :func:`~openrooms.engine.fold`.

    Attributes:
        room_id: the room whose log it is ("" when there were no events at all).
        problem: what is wrong with the log.
    """

    def __init__(self, room_id: str, problem: str) -> None:
        OpenRoomsError.__init__(self, room_id, problem)
        self.backend, self.message = "event log", problem
        self.room_id, self.where, self.problem = room_id, "event log", problem

    def __str__(self) -> str:
        if not self.room_id:
            return f"cannot fold the event log: {self.problem}"
        return f"room {self.room_id!r} is corrupt: its event log {self.problem} ({_CHECK_HINT})"


_CHECK_HINT = "`openrooms db check` lists every damaged row"


class MissingExtraError(OpenRoomsError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(feature, extra)
        self.feature, self.extra = feature, extra

    def __str__(self) -> str:
        return (
            f"to use {self.feature}, install the '{self.extra}' extra: "
            f"pip install 'openrooms[{self.extra}]'"
        )


class NodeTypeNotFoundError(OpenRoomsError, LookupError):
    """No executor is registered for a node type."""

    def __init__(self, node_type: str, known: Sequence[str]) -> None:
        super().__init__(node_type, list(known))
        self.node_type, self.known = node_type, list(known)

    def __str__(self) -> str:
        return f"unknown node type {self.node_type!r}; known types: {', '.join(sorted(self.known))}"


class ToolNotFoundError(OpenRoomsError, LookupError):
    """No tool is registered under this name."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name, list(known))
        self.name, self.known = name, list(known)

    def __str__(self) -> str:
        return f"unknown tool {self.name!r}; registered tools: {', '.join(sorted(self.known))}"


class ToolError(OpenRoomsError):
    """A tool failed while running; the tool's own exception is the ``__cause__``."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(tool, message)
        self.tool, self.message = tool, message

    def __str__(self) -> str:
        return f"tool {self.tool!r} failed: {self.message}"


class UnsafeTemplateError(OpenRoomsError, ValueError):
    """A template splices a value into the text of a tool argument the tool parses as code.

    Raised when a tool node runs with a tool that declares the argument ``code`` (see
    :data:`~openrooms.tools.base.ArgKind`) but the workflow was validated without it;
    validation refuses the same template up front.
    """

    def __init__(self, path: str, tool: str, argument: str) -> None:
        super().__init__(path, tool, argument)
        self.path, self.tool, self.argument = path, tool, argument

    @property
    def problem(self) -> Problem:
        """What is wrong, where, and the fix."""
        return Problem(
            self.path,
            f"tool {self.tool!r} parses {self.argument!r} as code, and this template splices "
            f"a value into its text (or builds the text), where the value could change the "
            f"code",
            "pass values as data and name them in the code (for the calculator: "
            "{expression: 'amount * 2', values: {amount: '{{ vars.amount }}'}}), "
            "or make the whole argument one reference to a value ('{{ vars.formula }}')",
        )

    def __str__(self) -> str:
        return str(self.problem)


class CompletionError(OpenRoomsError):
    """The model provider failed or replied with something unusable.

    Attributes:
        retryable: whether trying again may help (429, 5xx, timeouts, malformed tool-call
            JSON); a node's retry policy retries only these.
        retry_after_s: the provider's ``Retry-After``, when it sent one.
        status: the HTTP status, when there was one.
    """

    def __init__(
        self,
        model: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(model, message)
        self.model, self.message = model, message
        self.retryable, self.retry_after_s, self.status = retryable, retry_after_s, status

    def __str__(self) -> str:
        return f"model {self.model!r}: {self.message}"


class UnstorableValueError(OpenRoomsError, ValueError):
    """A value from outside (a tool result, a model reply, input, variables) that no store
    can keep: a non-finite number, a string that is not valid Unicode, an integer past the
    digit limit, nesting past the depth limit, or something that is not JSON at all.

    Attributes:
        where: what held the value, e.g. ``nodes.fetch output``.
        path: where inside it, as a JSON path (``$.items[3].price``).
        problem: what is wrong with it (``is inf``).
    """

    def __init__(self, where: str, path: str, problem: str) -> None:
        super().__init__(where, path, problem)
        self.where, self.path, self.problem = where, path, problem

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.path} {self.problem}; only JSON values can be stored "
            f"(finite numbers, valid Unicode text, limited integer size and nesting)"
        )


class RoomLimitError(OpenRoomsError):
    """A tree of sub-workflow rooms went past a limit: its depth, or the rooms one root room
    may create. The node that would have created the room fails; nothing is retried.

    Attributes:
        room_id: the room whose node would have created another room.
        limit: ``max_depth`` or ``max_rooms``.
        value: the limit in force.
    """

    def __init__(self, room_id: str, limit: str, value: int) -> None:
        super().__init__(room_id, limit, value)
        self.room_id, self.limit, self.value = room_id, limit, value

    def __str__(self) -> str:
        if self.limit == "max_depth":
            what = f"sub-workflow rooms nest at most {self.value} deep"
        else:
            what = f"one root room may create at most {self.value} sub-workflow rooms"
        return (
            f"room {self.room_id!r} cannot start another sub-workflow: {what}; raise "
            f"'budget.{self.limit}' in the root room's workflow (or 'rooms.{self.limit}' in "
            f"the runtime config), or check for a sub-workflow that calls itself"
        )


class InputError(OpenRoomsError, ValueError):
    """A file or text from outside (a workflow file, ``--data``, ``--vars-file``, ...) that
    cannot be read: not UTF-8, too big, not valid YAML or JSON, duplicate keys, nested too
    deeply.

    Attributes:
        source: what was read: a file name, ``--data``, ``--var NAME``.
        message: what is wrong.
        where: the place in it, e.g. ``line 12``, ``byte 57 (line 3)`` or ``$.items[2]``.
        hint: how to fix it, when there is something to say.
    """

    def __init__(self, source: str, message: str, where: str = "", hint: str = "") -> None:
        super().__init__(source, message, where, hint)
        self.source, self.message, self.where, self.hint = source, message, where, hint

    def __str__(self) -> str:
        at = f", {self.where}" if self.where else ""
        tail = f" — {self.hint}" if self.hint else ""
        return f"{self.source}{at}: {self.message}{tail}"


class MissingAPIKeyError(CompletionError):
    """A model's provider needs an API key that is not set in the environment.

    Raised before any request is made (and before litellm is imported), never retried.

    Attributes:
        key: the environment variable to set (``OPENAI_API_KEY``, ...).
        agents: the agents that use the model, when known (a workflow check names them).
    """

    def __init__(self, model: str, key: str, agents: Sequence[str] = ()) -> None:
        super().__init__(
            model,
            f"no API key: set {key} in the environment, or run offline with a script "
            f"(openrooms --script FILE ...; see docs/agents.md)",
            retryable=False,
        )
        self.args = (model, key, list(agents))
        self.key, self.agents = key, list(agents)

    def __str__(self) -> str:
        names = ", ".join(repr(a) for a in self.agents)
        who = f" (agent{'s' if len(self.agents) > 1 else ''} {names})" if self.agents else ""
        return f"model {self.model!r}{who}: {self.message}"


class PluginError(OpenRoomsError, ValueError):
    """A plugin cannot be loaded: its module does not import, has no ``register`` hook, or
    the hook raised (the exception is the ``__cause__``).

    Attributes:
        plugin: the module name as configured.
        problem: what went wrong.
    """

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(plugin, problem)
        self.plugin, self.problem = plugin, problem

    def __str__(self) -> str:
        return f"cannot load plugin {self.plugin!r}: {self.problem}"
