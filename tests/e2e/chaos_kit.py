"""The parts of the fault scenarios (tests/e2e/chaos.py): a loopback HTTP service the rooms'
``http`` tool calls, a cluster of ``openrooms worker`` processes on one set of stores, the
invariants every room is checked for, and private Redis and Postgres servers to restart.

The service applies each ``Idempotency-Key`` once (a repeat gets the first answer back) and
counts applications, and it can hold a request until the test says, so a test kills or
stops a worker at a chosen point of a node without sleeping for it. Each cluster has its own
Postgres schema, Redis key prefix (db 15) and RQ queue (uuid names), all dropped by
:meth:`Cluster.close`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from openrooms import EventType, RoomStatus, engine, open_runtime
from openrooms.backends.rq import RQJobQueue
from openrooms.events import Event
from openrooms.room import RoomState
from openrooms.runtime import Runtime
from openrooms.types import RoomId

ROOT = Path(__file__).parents[2]
LEASE_S, RENEW_S, SWEEP_S = 1.0, 0.25, 0.3
MARGIN_S = 4.0
"""Allowed on top of lease + sweep for a crashed room to run again: a job's start (RQ's fork,
the horse's connections) on a loaded 2-CPU machine."""
T = TypeVar("T")

STEPS = ["prep", "pay", "mid", "ship"]
PAID = """
id: paid
variables: {port: 0}
nodes:
  prep: {type: set, assign: {n: 1}}
  pay:
    type: tool
    tool: http
    args: {url: "http://127.0.0.1:{{ vars.port }}/apply", method: POST, json: {step: pay}}
    output: paid
  mid: {type: set, assign: {n: 2}}
  ship:
    type: tool
    tool: http
    args: {url: "http://127.0.0.1:{{ vars.port }}/apply", method: POST, json: {step: ship}}
    output: shipped
  done: {type: end}
transitions:
  - {from: prep, to: pay}
  - {from: pay, to: mid}
  - {from: mid, to: ship}
  - {from: ship, to: done}
"""

POISON = """
id: poison
nodes:
  crash: {type: tool, tool: die}
  done: {type: end}
transitions:
  - {from: crash, to: done}
"""

CONFIG = """
http: {allow_networks: ["127.0.0.1/32"], timeout_s: 60}
"""


def poll(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """*probe*'s first result that is not None, looked for until *timeout_s* passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)  # polling interval, not synchronisation: the probe decides


# -- the loopback service -------------------------------------------------------------------


class Held:
    """A request the service holds: its key, and whether it was applied before holding."""

    def __init__(self, key: str, applied: bool) -> None:
        self.key, self.applied = key, applied
        self.go = threading.Event()


class ApplyService:
    """A loopback HTTP service: ``POST /apply`` with an ``Idempotency-Key`` applies the key
    once (``applications[key]`` counts real applications; a repeat is answered from memory
    and counted in ``repeats``).

    ``hold_next(apply_first)`` makes it hold the next new request, before or after applying
    it, until :meth:`release`; :meth:`held` waits for it to arrive. ``on_answered`` is called
    (in the handler thread) after a new request's answer was sent.
    """

    def __init__(self) -> None:
        self.applications: dict[str, int] = {}
        self.repeats: dict[str, int] = {}
        self._lock = threading.Lock()
        self._hold: bool | None = None  # None: no hold; else apply before holding
        self._held: list[Held] = []
        self.on_answered: Callable[[str], None] | None = None
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("Idempotency-Key", "")
                service.handle(self, key, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], OSError):  # a killed caller: expected
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, handler: BaseHTTPRequestHandler, key: str, body: dict[str, Any]) -> None:
        with self._lock:
            new = key not in self.applications
            hold = self._hold if new else None
            if hold is not None:
                self._hold = None
            if new and (hold is None or hold):
                self.applications[key] = self.applications.get(key, 0) + 1
            elif not new:
                self.repeats[key] = self.repeats.get(key, 0) + 1
            held = Held(key, bool(hold)) if hold is not None else None
            if held is not None:
                self._held.append(held)
        if held is not None:
            held.go.wait(120)
            with self._lock:
                if not held.applied:  # applied only now that it goes on
                    new = key not in self.applications
                    if new:
                        self.applications[key] = 1
                    else:
                        self.repeats[key] = self.repeats.get(key, 0) + 1
        answer = json.dumps({"applied": key, "step": body.get("step")}).encode()
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
            handler.wfile.flush()
        except OSError:
            return  # its caller was killed meanwhile
        if new and self.on_answered is not None:
            self.on_answered(key)

    def hold_next(self, *, apply_first: bool) -> None:
        with self._lock:
            self._hold = apply_first

    def held(self, timeout_s: float = 30.0) -> Held:
        return poll("a held request", lambda: self._held[-1] if self._held else None, timeout_s)

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for h in held:
            h.go.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


# -- a cluster of workers on one set of stores ----------------------------------------------


class Cluster:
    """Workers on one set of stores and one RQ queue, and the test's own runtime on them.

    Args:
        tmp: a folder for the workers' output and the config file.
        layout: ``"postgres"`` (``DATABASE_URL`` = Postgres for state and log, ``REDIS_URL`` =
            the queue) or ``"split"`` (Redis state, Postgres log, the queue on Redis).
        postgres: the Postgres server URL (a new schema is made in it).
        redis: the Redis URL (db 15 by default) for the queue and a split layout's state.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        layout: str = "postgres",
        postgres: str | None = None,
        redis: str | None = None,
        **env: str,
    ) -> None:
        from tests.conftest import POSTGRES_URL, REDIS_URL

        self.tmp = tmp
        self.layout = layout
        self.pg_server = postgres or POSTGRES_URL
        self.redis_server = redis or REDIS_URL
        tag = uuid.uuid4().hex[:12]
        self.schema = f"or_chaos_{tag}"
        self.prefix = f"chaos-{tag}:"
        self.queue_name = f"chaos-{tag}"
        sep = "&" if "?" in self.pg_server else "?"
        self.pg_url = f"{self.pg_server}{sep}schema={self.schema}"
        self.queue_url = f"{self.redis_server}?queue={self.queue_name}"
        if layout == "postgres":
            self.state_url = self.log_url = self.pg_url
        elif layout == "split":
            self.state_url = f"{self.redis_server}?prefix={self.prefix}"
            self.log_url = self.pg_url
        else:
            raise ValueError(layout)
        self.config = tmp / "openrooms.yaml"
        self.config.write_text(CONFIG)
        self.extra_env = env
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.rt: Runtime = open_runtime(
            state_url=self.state_url, log_url=self.log_url, plugins=["tests.e2e.rq_tools"]
        )
        self.workflows: dict[str, Any] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENROOMS_")}
        for name in ("DATABASE_URL", "REDIS_URL"):
            env.pop(name, None)
        env.update(
            PYTHONPATH=str(ROOT),
            OPENROOMS_PLUGINS="tests.e2e.rq_tools",
            OPENROOMS_CONFIG=str(self.config),
            OPENROOMS_LEASE_TTL_S=str(LEASE_S),
            OPENROOMS_RENEW_EVERY_S=str(RENEW_S),
            OPENROOMS_SWEEP_EVERY_S=str(SWEEP_S),
        )
        if self.layout == "postgres":  # the original design's variables
            env.update(DATABASE_URL=self.pg_url, REDIS_URL=self.queue_url)
        else:
            env.update(
                OPENROOMS_STATE_URL=self.state_url,
                OPENROOMS_LOG_URL=self.log_url,
                OPENROOMS_QUEUE_URL=self.queue_url,
            )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def worker(self, **env: str) -> subprocess.Popen[bytes]:
        """Start ``openrooms worker`` in a session of its own; its output goes to a file."""
        out = self.tmp / f"worker-{len(self.procs)}.log"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "openrooms.cli", "worker"],
                env=self.env(**env),
                cwd=self.tmp,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append((proc, out))
        return proc

    def output(self, proc: subprocess.Popen[bytes] | None = None) -> str:
        return "".join(
            out.read_text(errors="replace") for p, out in self.procs if proc in (None, p)
        )

    def wait_ready(self) -> None:
        """Until every live worker listens on the queue (a worker that cannot reach Redis
        when it starts exits at once, as it should: a restart test waits for this first)."""
        poll(
            "the workers to listen",
            lambda: (
                True if all("Listening on" in self.output(p) for p in self.live_workers()) else None
            ),
        )

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p, _ in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Send *sig* to every process of the worker's session: the worker, its work horse
        (RQ puts it in a process group of its own) and RQ's scheduler, each by its PID."""
        pids = session_pids(proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=30)
            for pid in pids[:-1]:  # not our children: gone once /proc no longer lists them
                poll(f"process {pid} to end", lambda p=pid: gone_or_zombie(p), 30)  # type: ignore[misc]

    def holder(self, room_id: str) -> subprocess.Popen[bytes] | None:
        """The worker whose horse holds *room_id*'s lease (by the lease owner's pid)."""
        lease = self.rt.states.find_lease(RoomId(room_id))
        if lease is None or lease.owner is None:
            return None
        pid = int(lease.owner.split(":")[1])
        try:
            session = os.getsid(pid)
        except ProcessLookupError:
            return None
        return next((p for p, _ in self.procs if p.pid == session), None)

    def create(self, workflow: str, *, queue: bool = True, **variables: Any) -> RoomId:
        """Create a room, mark it queued and (*queue*) queue its job (``run --detach``)."""
        wf = self.workflows.get(workflow)
        if wf is None:
            from openrooms.workflow import Workflow

            wf = Workflow.from_yaml(workflow, registries=self.rt.registries)
            self.workflows[workflow] = wf
        room = self.rt.create_room(wf, variables).room_id
        self.rt.enqueue(room)
        if queue:
            with contextlib.closing(RQJobQueue(self.queue_url)) as q:
                q.enqueue(room)
        return room

    def room(self, room_id: str) -> RoomState:
        return self.rt.states.get(RoomId(room_id))

    def events(self, room_id: str) -> list[Event]:
        return self.rt.events(room_id)

    def finished(self, room_id: str) -> RoomState | None:
        state = self.rt.states.find(RoomId(room_id))
        return state if state is not None and state.status.is_terminal else None

    def wait_finished(self, rooms: list[RoomId], timeout_s: float) -> None:
        pending = list(rooms)

        def probe() -> bool | None:
            while pending and self.finished(pending[-1]) is not None:
                pending.pop()
            return True if not pending else None

        poll(f"{len(rooms)} rooms to finish ({len(pending)} left)", probe, timeout_s)

    def close(self) -> None:
        """Stop the workers (by their session's PID) and drop the schema, keys and queue
        (on a private server, which the caller discards whole, nothing is dropped)."""
        from tests.conftest import (
            POSTGRES_URL,
            REDIS_URL,
            drop_postgres_schema,
            drop_redis_prefix,
        )
        from tests.e2e.test_rq_workers import clean_queue

        for proc, _ in self.procs:
            self.kill(proc, signal.SIGCONT)
            self.kill(proc)
        self.rt.close()
        if self.redis_server == REDIS_URL:
            clean_queue(self.queue_name)
            if self.layout == "split":
                drop_redis_prefix(self.prefix)
        if self.pg_server == POSTGRES_URL:
            drop_postgres_schema(self.pg_url)


def session_pids(session: int) -> list[int]:
    """The processes of a session (the session leader last)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != session:
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == session:
                    found.append(int(entry))
    return [*found, session]


def of(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type is kind]


def check_paid_room(cluster: Cluster, service: ApplyService, room_id: str) -> list[Event]:
    """The invariants of a room of PAID: completed, each step completed once, gapless
    sequence numbers, the fold of the log equal to the stored state, and each tool step's
    idempotency key applied once by the service (one key per step: no step ran under two)."""
    state = cluster.room(room_id)
    assert state.status is RoomStatus.COMPLETED, (room_id, state.status, state.reason)
    events = cluster.events(room_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "sequence has gaps"
    assert [e.node for e in of(events, EventType.NODE_COMPLETED)] == STEPS
    assert engine.fold(events) == state
    assert len(of(events, EventType.ROOM_STARTED)) == 1
    keys = {e.data["idempotency_key"] for e in of(events, EventType.TOOL_CALLED)}
    applied = {k: n for k, n in service.applications.items() if k.startswith(f"{room_id}:")}
    assert set(applied) == keys and len(keys) == 2, (applied, keys)
    assert sum(applied.values()) == len(applied), applied  # each key applied once
    assert state.variables["paid"]["json"]["step"] == "pay"
    assert state.variables["shipped"]["json"]["step"] == "ship"
    return events


# -- private servers, restarted by the restart scenarios ------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool | None:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return None


def gone(pid: int) -> bool | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return None


def gone_or_zombie(pid: int) -> bool | None:
    """Whether *pid* has ended (a zombie, waiting for its parent to reap it, has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return True if state in ("Z", "X") else None


class PrivateRedis:
    """A ``redis-server`` of our own on a spare loopback port, without persistence."""

    def __init__(self) -> None:
        import shutil

        server = shutil.which("redis-server")
        if server is None:
            raise Unavailable("redis-server is not installed")
        self.binary = server
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        poll("the private redis-server", lambda: answers(self.port), 20)

    def stop(self) -> None:
        """SIGTERM to the server, by its PID; its data is gone (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()


class Unavailable(Exception):
    """A private server cannot be made here (the reason says why)."""


class PrivatePostgres:
    """A Postgres cluster of our own (initdb; pg_ctl start) on a spare loopback port, in a
    temporary folder owned by the ``postgres`` user (initdb refuses to run as root)."""

    def __init__(self) -> None:
        import glob
        import pwd
        import shutil
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise Unavailable("no initdb under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user") from None
            runuser = shutil.which("runuser")
            if runuser is None:
                raise Unavailable("running as root and runuser is not installed")
            self.as_user = [runuser, "-u", "postgres", "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="openrooms-pg-"))
        if os.geteuid() == 0:
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        made = subprocess.run(
            [*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
             "-U", "postgres", "--no-sync"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise Unavailable(f"initdb failed: {made.stderr.strip()[-500:]}")
        self.pid: int | None = None
        self.start()

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
            "-c max_connections=200"
        )
        started = subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
             "-l", str(self.folder / "log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        if started.returncode != 0:
            raise Unavailable(f"pg_ctl start failed: {started.stderr.strip()[-500:]}")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        poll("the private Postgres", lambda: answers(self.port), 30)

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster, by its PID): sessions are cut."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            pid = self.pid
            poll("the private Postgres to stop", lambda: gone(pid), 60)
            self.pid = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
