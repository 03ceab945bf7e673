"""The server's settings: where it listens, which backends it opens, how much it runs.

A :class:`Settings` holds what was *given* (flags, arguments); the backend URLs are resolved
when the app starts, by the same precedence as every other command
(:func:`openrooms.urls.resolve_urls`: ``--db``, ``OPENROOMS_*``, the config file,
``DATABASE_URL`` / ``REDIS_URL``, then the embedded SQLite default).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping

import attrs

from openrooms.urls import ResolvedUrls, resolve_urls

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Settings", "is_loopback"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3001


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


@attrs.frozen(slots=True)
class Settings:
    """What ``openrooms serve`` (or :func:`openrooms_server.create_app`) is given.

    Attributes:
        host, port: where uvicorn listens (127.0.0.1:3001 by default).
        db: ``--db``: one URL for the state store and the event log (None: by precedence).
        queue_url: ``--queue-url``: an RQ queue URL; with one (or ``OPENROOMS_QUEUE_URL``,
            config ``backends.queue``, ``REDIS_URL``) runs are queued for ``openrooms
            worker`` processes, without one they run in the server's own process.
        plugins: ``--plugin`` modules, loaded after the config's and ``OPENROOMS_PLUGINS``.
        config_file: ``--config``: a runtime config file (:mod:`openrooms.config`).
        script: ``--script``: canned model replies and tools (:mod:`openrooms.offline`).
        concurrency: in-process mode: how many rooms run at the same time, at most.
        insecure: serve on a non-loopback address without API keys (see :func:`is_loopback`).
        shutdown_grace_s: on shutdown, how long running rooms get to reach a step boundary
            before they are cancelled (either way each stays resumable).
        cors_origins: origins a browser may call the API from (none: CORS is off).
        max_body_bytes: the largest request body (413 ``payload_too_large`` above it).
        requests_per_minute: per API key (or per client without keys), on every route.
        room_writes_per_minute: per room, on ``run`` and ``input``.
        trust_forwarded_proto: behind a TLS-terminating proxy: ``X-Forwarded-Proto: https``
            counts as TLS (for HSTS).
        env: the environment the URLs and API keys are read from (``os.environ``).
    """

    host: str = DEFAULT_HOST
    port: int = attrs.field(default=DEFAULT_PORT)
    db: str | None = None
    queue_url: str | None = None
    plugins: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    config_file: str | None = None
    script: str | None = None
    concurrency: int = attrs.field(default=8, validator=_positive)
    insecure: bool = False
    shutdown_grace_s: float = 30.0
    cors_origins: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    max_body_bytes: int = attrs.field(default=1_000_000, validator=_positive)
    requests_per_minute: int = attrs.field(default=600, validator=_positive)
    room_writes_per_minute: int = attrs.field(default=30, validator=_positive)
    trust_forwarded_proto: bool = False
    env: Mapping[str, str] = attrs.field(factory=lambda: dict(os.environ), repr=False)

    @port.validator
    def _port(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 65535:
            raise ValueError(f"port must be 0 to 65535, not {value}")

    def resolve(self) -> ResolvedUrls:
        """The state, log and queue URLs this server opens (a queue of None: in-process)."""
        from openrooms.config import RuntimeConfig, load_config

        config: RuntimeConfig | None = load_config(self.config_file) if self.config_file else None
        return resolve_urls(self.env, db=self.db, queue_url=self.queue_url, config=config)

    @property
    def api_keys_set(self) -> bool:
        """Whether ``OPENROOMS_API_KEYS`` names at least one key."""
        raw = self.env.get("OPENROOMS_API_KEYS", "")
        return any(k.strip() for k in raw.split(","))


def is_loopback(host: str) -> bool:
    """Whether *host* is a loopback address (``127.0.0.0/8``, ``::1``) or ``localhost``."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
