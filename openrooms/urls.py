"""Which backend URLs a runtime opens: flags, ``OPENROOMS_*``, the config file, then the
original design's ``DATABASE_URL`` / ``REDIS_URL``, then the embedded default.

Each role (the state store, the event log, the job queue) takes the first of its sources
that is set (an empty variable counts as unset):

=========  ==================================================================================
role       sources, first set wins
=========  ==================================================================================
state      ``state_url=`` argument, ``--db`` (``db=``), ``OPENROOMS_STATE_URL``,
           ``OPENROOMS_DB``, config ``backends.state``, config ``backends.db``,
           ``DATABASE_URL``, ``REDIS_URL``, ``sqlite:///./.openrooms/openrooms.db``
log        ``log_url=`` argument, ``--db`` (``db=``), ``OPENROOMS_LOG_URL``, ``OPENROOMS_DB``,
           config ``backends.log``, config ``backends.db``, ``DATABASE_URL``, ``REDIS_URL``,
           ``sqlite:///./.openrooms/openrooms.db``
queue      ``--queue-url`` (``queue_url=``), ``OPENROOMS_QUEUE_URL``, config ``backends.queue``,
           ``REDIS_URL``; none: rooms run in the process that asks (no worker queue)
=========  ==================================================================================

So with both ``DATABASE_URL`` and ``REDIS_URL``, state and log go to Postgres and the queue
to Redis (the original design); with ``REDIS_URL`` alone, Redis holds everything; with
``DATABASE_URL`` alone, there is no queue. :data:`PRECEDENCE` is this table, checked
against docs/backends.md by a test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

import attrs

from openrooms.backends import DEFAULT_DB_URL

if TYPE_CHECKING:
    from openrooms.config import RuntimeConfig

__all__ = ["PRECEDENCE", "ResolvedUrls", "display_url", "resolve_urls"]

PRECEDENCE: Final[Mapping[str, tuple[str, ...]]] = {
    "state": (
        "state_url",
        "--db",
        "OPENROOMS_STATE_URL",
        "OPENROOMS_DB",
        "config backends.state",
        "config backends.db",
        "DATABASE_URL",
        "REDIS_URL",
        "default",
    ),
    "log": (
        "log_url",
        "--db",
        "OPENROOMS_LOG_URL",
        "OPENROOMS_DB",
        "config backends.log",
        "config backends.db",
        "DATABASE_URL",
        "REDIS_URL",
        "default",
    ),
    "queue": ("--queue-url", "OPENROOMS_QUEUE_URL", "config backends.queue", "REDIS_URL"),
}
"""Each role's sources, first set wins: arguments (``--db`` is ``db=``, ``--queue-url``
``queue_url=``), environment variables (by name), ``config backends.<role>``, ``default``."""


@attrs.frozen(slots=True)
class ResolvedUrls:
    """The URLs a runtime opens, and where each came from (a source of :data:`PRECEDENCE`).

    Attributes:
        state, log: the state store's and the event log's URLs (the same URL: one store).
        queue: the job queue's URL, or None: no queue (rooms run where they are asked to).
        sources: role -> the source its URL came from, e.g. ``{"state": "DATABASE_URL"}``.
    """

    state: str
    log: str
    queue: str | None
    sources: Mapping[str, str]


def resolve_urls(
    env: Mapping[str, str],
    *,
    db: str | None = None,
    state_url: str | None = None,
    log_url: str | None = None,
    queue_url: str | None = None,
    config: RuntimeConfig | None = None,
) -> ResolvedUrls:
    """Choose the state, log and queue URLs by :data:`PRECEDENCE`.

    Args:
        env: the environment (``os.environ``).
        db: ``--db``: one URL for state and log.
        state_url, log_url: URLs for one role each, above *db*.
        queue_url: ``--queue-url``.
        config: the runtime config, whose ``backends`` section comes after the environment.

    Returns:
        The URLs; an unset queue is None.
    """
    given = {
        "state_url": state_url,
        "log_url": log_url,
        "--db": db,
        "--queue-url": queue_url,
        "default": DEFAULT_DB_URL,
    }
    backends = config.backends if config is not None else {}

    def value(source: str) -> str | None:
        if source in given:
            return given[source] or None
        if source.startswith("config backends."):
            return backends.get(source.rsplit(".", 1)[1]) or None
        return env.get(source) or None

    chosen: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for role, order in PRECEDENCE.items():
        chosen[role] = None
        for source in order:
            url = value(source)
            if url is not None:
                chosen[role], sources[role] = url, source
                break
    state, log = chosen["state"], chosen["log"]
    assert state is not None and log is not None  # "default" is always set
    return ResolvedUrls(state, log, chosen["queue"], sources)


def display_url(url: str) -> str:
    """*url* with its password (if any) replaced by ``***``: for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show its scheme only
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
