"""Runtime configuration from a trusted file: what rooms may reach, never part of a room.

Endpoints and allow-lists come only from here (and provider keys only from the
environment), never from room variables or workflow input::

    # openrooms.yaml — pass with `openrooms --config openrooms.yaml ...` or OPENROOMS_CONFIG
    http:                                # the http tool's allow-list (default: nothing)
      allow_hosts: [orders.example.com]
      allow_networks: []                 # private ranges, e.g. 10.1.2.0/24
    agents:                              # per agent name, overriding the workflow
      triager: {api_base: "http://127.0.0.1:8000/v1"}
    tool_results:
      max_logged_bytes: 65536            # a bigger result is logged as a preview
    rooms:                               # sub-workflow trees, unless a workflow's budget says
      max_depth: 8                       # how deep child rooms may nest under a root room
      max_rooms: 1000                    # how many child rooms one root room may create
    plugins: [acme_plugin]               # modules whose register(registries) hook runs
    backends:                            # URLs, below flags and OPENROOMS_* (docs/backends.md)
      db: postgresql://db.internal/openrooms   # state and log; or state: / log: apart
      queue: redis://cache.internal:6379/0
    workers:                             # runners and workers (docs/workers.md)
      lease_ttl_s: 30                    # a runner's lease lasts this long unrenewed
      renew_every_s: 10                  # ... and is renewed this often (default: a third)
      sweep_every_s: 15                  # how often a worker's sweeper looks for lost rooms
      max_recoveries: 3                  # takeovers of a crashed runner's room, then it fails

Each ``workers`` setting can also come from the environment (``OPENROOMS_LEASE_TTL_S``,
``OPENROOMS_RENEW_EVERY_S``, ``OPENROOMS_SWEEP_EVERY_S``, ``OPENROOMS_MAX_RECOVERIES``),
which wins over the file; command-line options win over both (:func:`worker_settings`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from openrooms._wording import did_you_mean
from openrooms.errors import Problem, SchemaValidationError
from openrooms.tools.destination import HttpPolicy
from openrooms.workflow import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ROOMS,
    MAX_ROOM_DEPTH,
    MAX_ROOMS_PER_ROOT,
)

__all__ = [
    "DEFAULT_MAX_LOGGED_BYTES",
    "RuntimeConfig",
    "WorkerSettings",
    "load_config",
    "worker_settings",
]

DEFAULT_MAX_LOGGED_BYTES = 64 * 1024

_TOP = ("http", "agents", "tool_results", "rooms", "plugins", "backends", "workers")
_BACKENDS = ("db", "state", "log", "queue")


@attrs.frozen(slots=True)
class WorkerSettings:
    """How runners hold rooms and workers recover them (see docs/workers.md).

    Attributes:
        lease_ttl_s: how long a runner's lease lasts without a renewal; a crashed runner's
            room is taken over this long after its last renewal.
        renew_every_s: how often a runner renews its lease (None: a third of
            *lease_ttl_s*); below *lease_ttl_s*.
        sweep_every_s: how often a worker's sweeper looks for rooms whose lease expired
            and rooms whose wake-up time has passed, and queues them.
        max_recoveries: how many times in a row a room may be taken over from a runner
            that never let go (it crashed, or its process was killed) before the runner
            that takes it next fails it: "max recovery attempts exceeded".
        connect_timeout_s: how long a worker started with a job queue waits for its Redis
            to answer before it gives up (0: asks once); a worker started beside its Redis
            (a compose file, a reboot) waits for it instead of exiting.
    """

    lease_ttl_s: float = 30.0
    renew_every_s: float | None = None
    sweep_every_s: float = 15.0
    max_recoveries: int = 3
    connect_timeout_s: float = 30.0

    @property
    def lease_ttl_ms(self) -> int:
        """*lease_ttl_s* in ms."""
        return max(1, round(self.lease_ttl_s * 1000))

    @property
    def renew_every_ms(self) -> int:
        """The renewal interval in ms (a third of the lease when not set)."""
        if self.renew_every_s is None:
            return max(1, self.lease_ttl_ms // 3)
        return max(1, round(self.renew_every_s * 1000))


_WORKER_KEYS: Final = {
    "lease_ttl_s": "OPENROOMS_LEASE_TTL_S",
    "renew_every_s": "OPENROOMS_RENEW_EVERY_S",
    "sweep_every_s": "OPENROOMS_SWEEP_EVERY_S",
    "max_recoveries": "OPENROOMS_MAX_RECOVERIES",
    "connect_timeout_s": "OPENROOMS_CONNECT_TIMEOUT_S",
}


def _worker_value(key: str, value: Any, where: str, problems: list[Problem]) -> Any:
    """A checked ``workers`` setting, or None (a problem noted)."""
    if key == "max_recoveries":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
            problems.append(
                Problem(where, f"expected a whole number from 0 to 1000, got {value!r}")
            )
            return None
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    low = 0 if key == "connect_timeout_s" else 0.001
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 86_400:
        problems.append(Problem(where, f"expected seconds from {low:g} to 86400, got {value!r}"))
        return None
    return float(value)


def worker_settings(
    config: RuntimeConfig | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: float | int | None,
) -> WorkerSettings:
    """The worker settings in force: *overrides* (command-line options; None: not given)
    over the environment's ``OPENROOMS_*`` variables over *config*'s ``workers`` section
    over the defaults.

    Raises:
        SchemaValidationError: a value from the environment or an override is out of range,
            or the renewal interval is not below the lease time.
    """
    base = config.workers if config is not None else WorkerSettings()
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    env = environ if environ is not None else {}
    for key, var in _WORKER_KEYS.items():
        if env.get(var):
            checked = _worker_value(key, env[var], var, problems)
            if checked is not None:
                values[key] = checked
        override = overrides.pop(key, None)
        if override is not None:
            checked = _worker_value(key, override, key, problems)
            if checked is not None:
                values[key] = checked
    if overrides:
        raise TypeError(f"unknown worker settings: {', '.join(sorted(overrides))}")
    settings = attrs.evolve(base, **values)
    _check_renewal(settings, "", problems)
    if problems:
        raise SchemaValidationError("worker settings", problems)
    return settings


def _check_renewal(settings: WorkerSettings, prefix: str, problems: list[Problem]) -> None:
    if settings.renew_every_s is not None and settings.renew_every_s >= settings.lease_ttl_s:
        problems.append(
            Problem(
                f"{prefix}renew_every_s",
                f"{settings.renew_every_s:g} s is not below the lease time "
                f"({settings.lease_ttl_s:g} s): the lease would expire between renewals",
                "renew at most every third of the lease time",
            )
        )


_AGENT = ("api_base",)


@attrs.frozen(slots=True)
class RuntimeConfig:
    """Settings a deployment trusts; see the module docstring for the file format.

    Attributes:
        http: the ``http`` tool's destination policy.
        api_bases: agent name -> endpoint, overriding the workflow's ``api_base``.
        max_logged_bytes: tool results above this are logged as a truncated preview
            (and re-executed, not reused, if their attempt is resumed).
        max_depth: how deep sub-workflow rooms may nest under a root room whose workflow's
            ``budget`` does not say.
        max_rooms: how many sub-workflow rooms such a root room may create in all.
        plugins: modules loaded into the runtime's registries (see
            :mod:`openrooms.registries`), before ``OPENROOMS_PLUGINS`` and ``--plugin``.
        backends: backend URLs by role (``db``: state and log; ``state``, ``log``,
            ``queue``), below command-line flags and ``OPENROOMS_*`` variables and above
            ``DATABASE_URL`` / ``REDIS_URL`` (see :func:`openrooms.urls.resolve_urls`).
        workers: lease time, renewal and sweep intervals, the recovery cap.
    """

    http: HttpPolicy = attrs.field(factory=HttpPolicy)
    api_bases: Mapping[str, str] = attrs.field(factory=dict)
    max_logged_bytes: int = DEFAULT_MAX_LOGGED_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_rooms: int = DEFAULT_MAX_ROOMS
    plugins: tuple[str, ...] = ()
    backends: Mapping[str, str] = attrs.field(factory=dict)
    workers: WorkerSettings = attrs.field(factory=WorkerSettings)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> RuntimeConfig:
        """Build from a parsed file.

        Raises:
            SchemaValidationError: every problem, each with its path.
        """
        if data is None:
            return cls()
        problems: list[Problem] = []
        if not isinstance(data, Mapping):
            raise SchemaValidationError(source, [Problem("", "expected a mapping of sections")])
        for key in data:
            if key not in _TOP:
                problems.append(Problem(str(key), "unknown section", _suggest(key, _TOP)))
        http = HttpPolicy()
        try:
            http = HttpPolicy.from_dict(data.get("http"))
        except SchemaValidationError as exc:
            problems.extend(exc.problems)
        api_bases: dict[str, str] = {}
        agents = data.get("agents") or {}
        if not isinstance(agents, Mapping):
            problems.append(Problem("agents", "expected agent name -> settings"))
            agents = {}
        for name, settings in agents.items():
            if not isinstance(settings, Mapping):
                problems.append(Problem(f"agents.{name}", "expected a mapping of settings"))
                continue
            for key, value in settings.items():
                if key not in _AGENT:
                    problems.append(
                        Problem(f"agents.{name}.{key}", "unknown setting", _suggest(key, _AGENT))
                    )
                elif not isinstance(value, str) or not value.startswith(("http://", "https://")):
                    problems.append(
                        Problem(
                            f"agents.{name}.api_base", f"expected an http(s) URL, got {value!r}"
                        )
                    )
                else:
                    api_bases[str(name)] = value
        max_bytes = DEFAULT_MAX_LOGGED_BYTES
        results = data.get("tool_results") or {}
        if not isinstance(results, Mapping):
            problems.append(Problem("tool_results", "expected a mapping of settings"))
        else:
            for key, value in results.items():
                if key != "max_logged_bytes":
                    problems.append(
                        Problem(
                            f"tool_results.{key}",
                            "unknown setting",
                            _suggest(key, ("max_logged_bytes",)),
                        )
                    )
                elif isinstance(value, bool) or not isinstance(value, int) or value < 256:
                    problems.append(
                        Problem(
                            "tool_results.max_logged_bytes",
                            f"expected a whole number from 256, got {value!r}",
                        )
                    )
                else:
                    max_bytes = value
        limits = _room_limits(data.get("rooms"), problems)
        plugins = _plugins(data.get("plugins"), problems)
        backends = _backends(data.get("backends"), problems)
        workers = _workers(data.get("workers"), problems)
        if problems:
            raise SchemaValidationError(source, problems)
        return cls(
            http=http,
            api_bases=api_bases,
            max_logged_bytes=max_bytes,
            plugins=plugins,
            backends=backends,
            workers=workers,
            **limits,
        )


def _workers(section: Any, problems: list[Problem]) -> WorkerSettings:
    """The ``workers:`` section."""
    if section is None:
        return WorkerSettings()
    if not isinstance(section, Mapping):
        problems.append(Problem("workers", "expected a mapping of settings"))
        return WorkerSettings()
    values: dict[str, Any] = {}
    for key, value in section.items():
        if key not in _WORKER_KEYS:
            problems.append(
                Problem(f"workers.{key}", "unknown setting", _suggest(key, tuple(_WORKER_KEYS)))
            )
            continue
        if isinstance(value, str):  # numbers only, in a file
            value = [value]
        checked = _worker_value(key, value, f"workers.{key}", problems)
        if checked is not None:
            values[key] = checked
    settings = WorkerSettings(**values)
    _check_renewal(settings, "workers.", problems)
    return settings


def _plugins(section: Any, problems: list[Problem]) -> tuple[str, ...]:
    """The ``plugins:`` section: a list of module names."""
    if section is None:
        return ()
    if not isinstance(section, Sequence) or isinstance(section, str):
        problems.append(Problem("plugins", "expected a list of module names"))
        return ()
    names = []
    for i, name in enumerate(section):
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            problems.append(
                Problem(f"plugins[{i}]", f"{name!r} is not a module name", "e.g. acme_plugin")
            )
        else:
            names.append(name)
    return tuple(names)


def _backends(section: Any, problems: list[Problem]) -> dict[str, str]:
    """The ``backends:`` section: a URL per role (db, state, log, queue)."""
    urls: dict[str, str] = {}
    if section is None:
        return urls
    if not isinstance(section, Mapping):
        problems.append(Problem("backends", "expected a mapping of role -> URL"))
        return urls
    for key, value in section.items():
        if key not in _BACKENDS:
            problems.append(Problem(f"backends.{key}", "unknown role", _suggest(key, _BACKENDS)))
        elif not isinstance(value, str) or "://" not in value:
            # the value itself is not shown: it may hold a password
            problems.append(
                Problem(
                    f"backends.{key}",
                    "expected a URL with a scheme",
                    "e.g. postgresql://host/db, redis://host:6379/0 or sqlite:///./rooms.db",
                )
            )
        else:
            urls[key] = value
    return urls


def _room_limits(section: Any, problems: list[Problem]) -> dict[str, int]:
    """The ``rooms:`` section: limits on trees of sub-workflow rooms."""
    limits: dict[str, int] = {}
    if section is None:
        return limits
    if not isinstance(section, Mapping):
        problems.append(Problem("rooms", "expected a mapping of settings"))
        return limits
    tops = {"max_depth": MAX_ROOM_DEPTH, "max_rooms": MAX_ROOMS_PER_ROOT}
    for key, value in section.items():
        top = tops.get(key)
        if top is None:
            problems.append(
                Problem(f"rooms.{key}", "unknown setting", "known: max_depth, max_rooms")
            )
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            problems.append(
                Problem(f"rooms.{key}", f"expected a whole number from 0 to {top}, got {value!r}")
            )
        else:
            limits[key] = value
    return limits


def _suggest(key: object, known: Sequence[str]) -> str:
    """``did you mean 'x'?`` for a near miss, else the known keys."""
    return did_you_mean(key, known, f"known: {', '.join(known)}")


def load_config(path: str | Path) -> RuntimeConfig:
    """Read a YAML (or JSON) runtime config file.

    Raises:
        FileNotFoundError: no such file.
        InputError: it cannot be read or does not parse (see :mod:`openrooms.loading`).
        SchemaValidationError: it has bad settings (with their paths).
    """
    from openrooms import loading  # here: YAML is read only when a file is

    data = loading.load_file(path)
    return RuntimeConfig.from_dict(data, source=f"config {path}")
