"""The job queue on RQ: runs of rooms queued in Redis for ``openrooms worker`` (or ``rq worker``).

A queue URL names a Redis server and an RQ queue::

    rq://127.0.0.1:6379/0?queue=rooms       # rq:// is redis:// for a queue
    redis://127.0.0.1:6379/0?queue=rooms    # any URL given as the queue URL is one
    rediss://user:pass@host:6380/0          # TLS; queue "openrooms" when not named

There is no guessing which ``redis://`` URL is a queue: the one given as
``OPENROOMS_QUEUE_URL`` (or ``--queue-url``) is, and the state/log URLs are stores.

A job carries only the room's id, as JSON (RQ's ``JSONSerializer``; never pickle), and
names the entry point :func:`openrooms.rq_jobs.run_room` by its dotted path; the worker
rebuilds everything else from its own environment and stores. A run that must happen later
(a retry's backoff, a wait's timeout) is queued for its wake-up time (``enqueue_in``: RQ's
scheduler, which ``openrooms worker`` and ``rq worker --with-scheduler`` run, moves it to
the queue when due).

Queueing a room that already has a job waiting adds no second one: a marker key per room
(``openrooms:rq:{queue}:room:{id}``) holds the wake-up time and id of its pending job, set
and checked atomically (a Lua script, on Redis's clock); a job whose time is no later than
the new one's, and that is still queued or scheduled, makes the new enqueue a no-op. A job
clears its room's marker when it starts. Whatever slips past (the marker's job was lost),
the runner's lease still lets only one runner take the room.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from openrooms._extras import require
from openrooms.backends.base import JobQueue
from openrooms.errors import BackendConfigError, BackendUnavailableError
from openrooms.types import RoomId

if TYPE_CHECKING:
    import redis
    import rq

__all__ = [
    "DEFAULT_QUEUE",
    "JOB_FUNCTION",
    "QUEUE_SCHEMES",
    "RQJobQueue",
    "parse_queue_url",
]

DEFAULT_QUEUE: Final = "openrooms"
"""The RQ queue of a queue URL that names none."""
JOB_FUNCTION: Final = "openrooms.rq_jobs.run_room"
"""The entry point every job names (a module-level function taking the room id)."""
QUEUE_SCHEMES: Final = ("rq", "redis", "rediss")
_MARKER_TTL_MS: Final = 24 * 3600 * 1000
"""How long a room's marker outlives its job's wake-up time at most (a lost job's marker
is also replaced as soon as its job is seen to be gone)."""
_JUST_SET_MS: Final = 2_000
"""A marker whose job is not in Redis yet is its enqueuer's, for this long."""

# KEYS[1]: the room's marker. ARGV: delay ms, new job id, RQ's job key prefix, ttl ms past
# the wake-up time, how long a marker whose job is not in Redis yet stays its enqueuer's.
# Returns 1 if the caller must queue its job (the marker now names it), else 0.
_OFFER: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now + tonumber(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local at, set_at, job = string.match(cur, '^(%d+):(%d+):(.+)$')
  if job == ARGV[2] then
    return 1  -- this very call, made again by a client that lost the first answer
  end
  if at and tonumber(at) <= due then
    local status = redis.call('HGET', ARGV[3] .. job, 'status')
    if status == 'queued' or status == 'scheduled' or status == 'deferred' then
      return 0
    end
    if (not status) and now - tonumber(set_at) < tonumber(ARGV[5]) then
      return 0
    end
  end
end
local ttl = tonumber(ARGV[1]) + tonumber(ARGV[4])
redis.call('SET', KEYS[1], due .. ':' .. now .. ':' .. ARGV[2], 'PX', ttl)
return 1
"""

# KEYS[1]: the room's marker. ARGV[1]: the starting job's id. Deletes the marker if it
# names that job or one already due (its run is this one).
_CLAIM: Final = """
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at, set_at, job = string.match(cur, '^(%d+):(%d+):(.+)$')
if (not at) or job == ARGV[1] or tonumber(at) <= now then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def parse_queue_url(url: str) -> tuple[str, str]:
    """The Redis URL and queue name of a queue URL (see the module docstring).

    Raises:
        BackendConfigError: not an ``rq://``, ``redis://`` or ``rediss://`` URL, an unknown
            option, or a queue name RQ cannot use.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in QUEUE_SCHEMES or not parts.hostname:
        raise BackendConfigError(
            url,
            "a queue URL is rq://HOST:PORT/DB?queue=NAME (or redis://, rediss://), e.g. "
            "rq://127.0.0.1:6379/0?queue=openrooms",
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    name = options.pop("queue", DEFAULT_QUEUE)
    if not name or not all(c.isalnum() or c in "_-.:" for c in name):
        raise BackendConfigError(url, f"queue name {name!r}: use letters, digits and _ - . : only")
    # the rest are redis-py's URL options (socket_timeout=..., and so on)
    redis_url = urlunsplit(
        ("redis" if scheme == "rq" else scheme, parts.netloc, parts.path, urlencode(options), "")
    )
    return redis_url, name


@contextlib.contextmanager
def _driver_errors() -> Iterator[None]:
    """Re-raise redis-py failures as OpenRooms errors, keeping the original as __cause__."""
    import redis

    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise BackendUnavailableError("rq", f"{type(exc).__name__}: {exc}") from exc


class RQJobQueue(JobQueue):
    """:class:`~openrooms.backends.base.JobQueue` on an RQ queue in Redis.

    Args:
        url: a queue URL (see the module docstring).
        connection: a redis-py client to use instead of one opened from *url* (an RQ job
            passes its own); its server must be the one *url* names.
        job_timeout: seconds a job may run before RQ kills it (-1: never; a room's run
            lasts as long as its nodes, whose own ``timeout_s`` bound them).

    Raises:
        BackendConfigError: a bad URL.
        MissingExtraError: redis or rq is not installed (the ``redis`` extra).
    """

    def __init__(
        self,
        url: str,
        *,
        connection: redis.Redis | None = None,
        job_timeout: int = -1,
    ) -> None:
        require("redis", feature="the RQ job queue", extra="redis")
        rq_module = require("rq", feature="the RQ job queue", extra="redis")
        import redis as redis_module
        from rq.serializers import JSONSerializer

        self.url = url
        redis_url, self.name = parse_queue_url(url)
        if connection is None:
            try:
                connection = redis_module.Redis.from_url(redis_url)
            except ValueError as exc:
                raise BackendConfigError(url, str(exc)) from None
        self.redis: redis.Redis = connection
        self.queue: rq.Queue = rq_module.Queue(
            self.name, connection=connection, serializer=JSONSerializer
        )
        self.job_timeout = job_timeout
        self._job_prefix = rq_module.job.Job.redis_job_namespace_prefix
        self._offer = connection.register_script(_OFFER)
        self._claim = connection.register_script(_CLAIM)

    @classmethod
    def for_job(cls, job: rq.job.Job) -> RQJobQueue:
        """The queue a running job came from, on the job's own connection."""
        return cls(f"redis://localhost/0?queue={job.origin}", connection=job.connection)

    @classmethod
    def for_queue(cls, queue: rq.Queue) -> RQJobQueue:
        """The RQ queue *queue*, on its own connection."""
        return cls(f"redis://localhost/0?queue={queue.name}", connection=queue.connection)

    def marker_key(self, room_id: str) -> str:
        """The Redis key of *room_id*'s marker (its pending job)."""
        return f"openrooms:rq:{self.name}:room:{room_id}"

    def sweep_lock_key(self) -> str:
        """The key one worker's sweeper holds per sweep interval."""
        return f"openrooms:rq:{self.name}:sweep"

    def enqueue(self, room_id: RoomId, *, delay_s: float = 0.0) -> bool:
        """Queue a run of *room_id* after *delay_s* seconds, unless its pending job starts
        no later (then False).

        Raises:
            BackendUnavailableError: Redis cannot be reached or refused the job.
        """
        from datetime import timedelta

        delay_ms = max(0, round(delay_s * 1000))
        job_id = uuid.uuid4().hex
        with _driver_errors():
            fresh = self._offer(
                keys=[self.marker_key(room_id)],
                args=[delay_ms, job_id, self._job_prefix, _MARKER_TTL_MS, _JUST_SET_MS],
            )
            if not fresh:
                return False
            options: dict[str, Any] = {
                "args": (str(room_id),),
                "job_id": job_id,
                "result_ttl": 0,
                "failure_ttl": 24 * 3600,
                "job_timeout": self.job_timeout,
                "description": f"room {room_id}",
            }
            try:
                if delay_ms > 0:
                    self.queue.enqueue_in(timedelta(milliseconds=delay_ms), JOB_FUNCTION, **options)
                else:
                    self.queue.enqueue(JOB_FUNCTION, **options)
            except BaseException:
                with contextlib.suppress(Exception):  # the job is not there: free the room
                    self.redis.delete(self.marker_key(room_id))
                raise
        return True

    def claim(self, room_id: str, job_id: str) -> None:
        """A job for *room_id* is starting: clear the room's marker if it names this job
        (or one already due), so the room can be queued again while it runs."""
        with _driver_errors():
            self._claim(keys=[self.marker_key(room_id)], args=[job_id])

    def take_sweep_turn(self, every_s: float) -> bool:
        """Whether this caller sweeps now: at most one sweeper per *every_s* seconds per
        queue, whichever worker asks first."""
        ttl = max(1, round(every_s * 1000) - 50)
        with _driver_errors():
            return bool(self.redis.set(self.sweep_lock_key(), "1", nx=True, px=ttl))

    def __len__(self) -> int:
        """Jobs waiting in the queue now (not those scheduled for later)."""
        with _driver_errors():
            return int(self.queue.count)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.close()

    def __enter__(self) -> RQJobQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_queue(url: str) -> RQJobQueue:
    """The :class:`RQJobQueue` a queue URL names.

    Raises:
        BackendConfigError / MissingExtraError, as :class:`RQJobQueue`.
    """
    return RQJobQueue(url)
