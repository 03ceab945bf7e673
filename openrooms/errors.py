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
    │                                          its schema
    ├── WorkflowNotFoundError (LookupError)
    ├── WorkflowConflictError                  other content under an existing id + version
    ├── RoomNotFoundError (LookupError)
    ├── RoomExistsError
    ├── RoomStatusError                        the room's status does not allow the operation
    ├── RoomLeasedError                        another runner holds the room's lease
    ├── TransitionNotAllowedError              no transition matches a node's outcome
    ├── StaleRoomError                         lost a compare-and-set; reload and retry
    ├── RoomStoppedError                       the room was cancelled or stopped mid-node
    ├── BackendError
    │   ├── BackendUnavailableError            refused connection, locked database, timeout
    │   └── BackendConfigError (ValueError)    a backend URL that cannot be opened
    ├── MissingExtraError (ImportError)        an optional dependency is not installed
    ├── NodeTypeNotFoundError (LookupError)
    ├── ToolNotFoundError (LookupError)
    ├── ToolError                              a tool failed; its exception is the __cause__
    └── CompletionError                        the model provider failed or replied unusably
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = [
    "BackendConfigError",
    "BackendError",
    "BackendUnavailableError",
    "CompletionError",
    "EvaluationError",
    "ExpressionError",
    "MissingExtraError",
    "NodeTypeNotFoundError",
    "OpenRoomsError",
    "Problem",
    "RoomExistsError",
    "RoomLeasedError",
    "RoomNotFoundError",
    "RoomStatusError",
    "RoomStoppedError",
    "SchemaValidationError",
    "StaleRoomError",
    "ToolError",
    "ToolNotFoundError",
    "TransitionNotAllowedError",
    "WorkflowConflictError",
    "WorkflowNotFoundError",
    "WorkflowValidationError",
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


def _render(problems: Sequence[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems)


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
    """No room has this id."""

    def __init__(self, room_id: str) -> None:
        super().__init__(room_id)
        self.room_id = room_id

    def __str__(self) -> str:
        return f"no room {self.room_id!r}"


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


class StaleRoomError(OpenRoomsError):
    """A compare-and-set save lost: the stored version is not the expected one."""

    def __init__(self, room_id: str, expected_version: int) -> None:
        super().__init__(room_id, expected_version)
        self.room_id, self.expected_version = room_id, expected_version

    def __str__(self) -> str:
        return (
            f"room {self.room_id!r} changed since version {self.expected_version}, "
            f"or its lease was lost; reload it and retry"
        )


class RoomStoppedError(OpenRoomsError):
    """The room was cancelled, failed or taken over while a node was running; stop it."""

    def __init__(self, room_id: str, status: str) -> None:
        super().__init__(room_id, status)
        self.room_id, self.status = room_id, status

    def __str__(self) -> str:
        return f"room {self.room_id!r} is {self.status} now; the running node stops"


class BackendError(OpenRoomsError):
    """A storage or queue backend failed."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(backend, message)
        self.backend, self.message = backend, message

    def __str__(self) -> str:
        return f"{self.backend}: {self.message}"


class BackendUnavailableError(BackendError):
    """The backend cannot be reached now (refused connection, locked database, timeout)."""


class BackendConfigError(BackendError, ValueError):
    """A backend URL that names an unknown scheme or cannot be opened as given."""


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
