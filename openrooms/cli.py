"""The ``openrooms`` command: thin click commands over the library.

Each command parses input, calls one library function and formats the result.
Errors print one line (``Error: ...``); a traceback means a bug.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, cast

import click
from click.core import ParameterSource

from openrooms import loading, serde
from openrooms._wording import plural
from openrooms.errors import (
    CorruptRoomError,
    OpenRoomsError,
    RoomExistsError,
    RoomLeasedError,
    RoomStatusError,
    ToolNotFoundError,
    VariableSyntaxError,
    WorkflowConflictError,
    WorkflowValidationError,
)
from openrooms.events import Event, EventType, Level
from openrooms.graph import render_graph
from openrooms.inputs import parse_var
from openrooms.present import ProgressPrinter, log_line, progress_line, short
from openrooms.registries import Registries, open_registries
from openrooms.room import RoomState, RoomStatus
from openrooms.runtime import Runtime, backend_urls, open_runtime
from openrooms.terminal import printable
from openrooms.types import RoomId
from openrooms.urls import resolve_urls
from openrooms.workflow import Workflow, load_workflow

if TYPE_CHECKING:
    from openrooms.backends.rq import RQJobQueue

__all__ = ["cli", "main"]

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_WAITING = 0, 1, 2, 3
EXIT_ERROR = 4
"""The command could not do its work for a reason other than its input: the database is
unavailable or locked, another runner holds the room, an optional dependency is missing."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) stopped a run; the room is left resumable (128 + SIGINT, as shells do)."""

GLOBAL_OPTIONS = ("--db", "--plugin", "--script", "--config", "--queue-url")

F = TypeVar("F", bound=Callable[..., Any])


class _InputError(click.ClickException):
    exit_code = EXIT_INVALID


class _RunError(click.ClickException):
    exit_code = EXIT_ERROR


def _failure(message: str, exit_code: int) -> click.ClickException:
    """A one-line ``Error: ...`` exiting with *exit_code* (2 or 4); values from outside in
    the message (a file name, a room id) cannot drive the terminal."""
    message = printable(message)
    return _InputError(message) if exit_code == EXIT_INVALID else _RunError(message)


def _plugin_hint(exc: OpenRoomsError, ctx: click.Context) -> str:
    """For an unknown tool: a line saying how to load the plugin that registers it."""
    if isinstance(exc, WorkflowValidationError):
        unknown = any(p.message.startswith("unknown tool") for p in exc.problems)
    else:
        unknown = isinstance(exc, ToolNotFoundError)
    if not unknown:
        return ""
    command = ctx.invoked_subcommand or (ctx.info_name if ctx.parent else None) or "COMMAND"
    return (
        "\n  if a plugin registers the tool, load it with --plugin before the command: "
        f"openrooms --plugin MODULE {command} ..."
    )


def exit_status(exc: OpenRoomsError) -> int:
    """The exit status for an error that stopped a command: :data:`EXIT_INVALID` (2) for
    input the user can fix, :data:`EXIT_ERROR` (4) for everything else.

    Input errors are the ``ValueError`` and ``LookupError`` kinds (invalid workflows,
    variables, input data, config or backend URLs; unknown rooms, workflows, tools or node
    types), a workflow version that conflicts with the stored one, a room id that is taken
    and an operation the room's status does not allow (input to a room that is not waiting).
    """
    if isinstance(
        exc, ValueError | LookupError | WorkflowConflictError | RoomExistsError | RoomStatusError
    ):
        return EXIT_INVALID
    return EXIT_ERROR


class _Group(click.Group):
    """Turns OpenRooms errors into one-line messages and the exit statuses of the table in
    docs/cli.md, instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            if exc.option_name not in GLOBAL_OPTIONS:
                raise
            hint = (
                f"{exc.message} {exc.option_name} is a global option: put it before the command, "
                f"as in `openrooms {exc.option_name} ... {ctx.invoked_subcommand or 'COMMAND'} ...`"
            )
            raise click.NoSuchOption(exc.option_name, hint, ctx=exc.ctx) from None
        except WorkflowValidationError as exc:
            click.echo(printable(f"Error: {exc}{_plugin_hint(exc, ctx)}"), err=True)
            ctx.exit(EXIT_INVALID)
        except RoomLeasedError as exc:
            command = _command(ctx, "resume", exc.room_id, "--force")
            raise _failure(f"{exc}:\n  {command}", EXIT_ERROR) from exc
        except OpenRoomsError as exc:
            raise _failure(f"{exc}{_plugin_hint(exc, ctx)}", exit_status(exc)) from exc
        except OSError as exc:
            if exc.filename is None:
                raise
            if isinstance(exc, FileNotFoundError):
                raise _failure(f"no such file: {exc.filename}", EXIT_INVALID) from exc
            raise _failure(f"cannot read {exc.filename}: {exc.strerror}", EXIT_INVALID) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="URL",
    help="Backend URL for state and log: sqlite:///FILE, redis://HOST:PORT/DB, ... [env "
    "OPENROOMS_DB, then the config's backends.db, DATABASE_URL, REDIS_URL; default "
    "sqlite:///./.openrooms/openrooms.db].",
)
@click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="MODULE",
    help="Load a plugin module: its register(registries) hook adds tools, node types, model "
    "providers or backends (repeatable) [env OPENROOMS_PLUGINS, comma-separated].",
)
@click.option(
    "--script",
    envvar="OPENROOMS_SCRIPT",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Run offline: agents answer from this script and the tools it names return its "
    "canned results [env OPENROOMS_SCRIPT].",
)
@click.option(
    "--config",
    "config_file",
    envvar="OPENROOMS_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Trusted runtime settings: the http tool's allow-list, agents' endpoints "
    "[env OPENROOMS_CONFIG].",
)
@click.option(
    "--queue-url",
    envvar="OPENROOMS_QUEUE_URL",
    metavar="URL",
    help="The RQ job queue, rq://HOST:PORT/DB?queue=NAME (or redis://...): `worker` runs "
    "an RQ worker on it, `--detach` queues rooms there [env OPENROOMS_QUEUE_URL, else "
    "REDIS_URL; default: none, rooms run in-process or by the embedded worker].",
)
@click.version_option(package_name="openrooms")
@click.pass_context
def cli(
    ctx: click.Context,
    db: str | None,
    plugins: tuple[str, ...],
    script: str | None,
    config_file: str | None,
    queue_url: str | None,
) -> None:
    """OpenRooms: run LLM agent workflows as durable, inspectable state machines.

    Example:

        openrooms run examples/order_approval.yaml --var amount=250
    """
    config = None
    if config_file:
        from openrooms.config import load_config

        config = load_config(config_file)
    # the config's plugins, OPENROOMS_PLUGINS, then --plugin: as open_runtime() loads them
    registries = open_registries(plugins, config=config)
    # what a printed follow-up command must repeat: the global options given on this command
    # line (values from environment variables reach the next command the same way)
    repeat: list[str] = []
    if db is not None and ctx.get_parameter_source("db") is ParameterSource.COMMANDLINE:
        repeat += ["--db", db]
    for module in plugins:
        repeat += ["--plugin", module]
    for name, flag, value in (
        ("script", "--script", script),
        ("config_file", "--config", config_file),
        ("queue_url", "--queue-url", queue_url),
    ):
        if value is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            repeat += [flag, value]
    ctx.obj = {
        "db": db,
        "script": script,
        "config": config,
        "config_file": config_file,
        "plugins": plugins,
        "registries": registries,
        "repeat": repeat,
        # --queue-url, OPENROOMS_QUEUE_URL, the config's backends.queue, REDIS_URL
        "queue_url": resolve_urls(os.environ, queue_url=queue_url, config=config).queue,
    }


def _registries() -> Registries:
    """The registries the global options loaded (plugins included), for checking workflows."""
    found: Registries = click.get_current_context().find_root().obj["registries"]
    return found


@contextmanager
def _runtime(
    ctx: click.Context, *, read_only: bool = False, existing: bool = False, db: str | None = None
) -> Iterator[Runtime]:
    """The runtime the global options describe.

    *read_only* for commands that only look; *existing* for commands that change a room
    that must already be there (``input``, ``resume``, ``cancel``): a missing database is
    then an error, not a new empty file. *db* replaces the backend URL (``tools`` needs
    none).
    """
    url = db or ctx.obj["db"]
    registries: Registries = ctx.obj["registries"]
    if existing and not read_only:
        # DatabaseNotFoundError; creates nothing
        open_runtime(url, read_only=True, registries=registries).close()
    config = ctx.obj["config"]
    script = ctx.obj["script"]
    if script:
        from openrooms.offline import load_script

        models, tools = load_script(script, registries.tools)
        rt = open_runtime(
            url,
            models=models,
            tools=tools,
            config=config,
            read_only=read_only,
            registries=registries,
        )
    else:
        rt = open_runtime(url, config=config, read_only=read_only, registries=registries)
    try:
        yield rt
    finally:
        rt.close()


def _queue(ctx: click.Context, what: str) -> RQJobQueue:
    """The RQ job queue the queue URL names, for *what* (a command that needs one).

    Raises:
        click.UsageError: there is no queue URL.
    """
    url = ctx.find_root().obj["queue_url"]
    if not url:
        raise click.UsageError(
            f"{what} needs a job queue: set OPENROOMS_QUEUE_URL or pass --queue-url URL "
            "before the command (e.g. rq://127.0.0.1:6379/0?queue=openrooms)",
            ctx=ctx,
        )
    from openrooms.backends.rq import RQJobQueue

    return RQJobQueue(url)


def _print_queued(state: RoomState, as_json: bool, note: str) -> None:
    """What a detached command prints: the room's id and status, and where it went."""
    if as_json:
        click.echo(json.dumps({"id": state.room_id, "status": state.status.value}))
    else:
        click.echo(f"room {state.room_id} {note}")


def _check_keys(rt: Runtime, wf: Workflow) -> None:
    """Refuse, once and before litellm's slow import, a run whose agents lack their key."""
    from openrooms.llm.keys import check_keys

    check_keys(wf, rt.models, api_bases=rt.config.api_bases)


def _check_room_keys(rt: Runtime, room_id: str) -> None:
    try:
        state = rt.get_room(room_id)
        wf = rt.workflow_for(state)
    except OpenRoomsError:
        return  # the command itself reports it
    if not state.status.is_terminal:
        _check_keys(rt, wf)


def _command(ctx: click.Context, *args: str) -> str:
    """The shell command that runs ``openrooms ARGS`` with this invocation's global options."""
    obj = ctx.find_root().obj or {}
    words = ["openrooms", *obj.get("repeat", ()), *args]
    return " ".join(shlex.quote(w) for w in words)


class _Interrupt:
    """SIGINT while a room runs: the first asks the runtime to stop at the next step
    boundary; a second prints how to resume and exits at once.

    The second exit is immediate (``os._exit``), like a crash the room is built to survive:
    every committed step is kept and the node it was running runs again on resume. Unwinding
    instead (KeyboardInterrupt) would wait on whatever the node awaits, a tool thread say.
    """

    def __init__(self, rt: Runtime, room_id: str, resume: str) -> None:
        self.rt = rt
        self.count = 0
        self.abort_message = (
            f"\nroom {room_id} aborted; every committed step is kept. Resume it with:\n  {resume}\n"
        ).encode(errors="backslashreplace")  # an argument's undecodable bytes, say

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        # os.write, not click.echo: a signal handler must not re-enter a buffered stream
        if self.count > 1:
            os.write(2, self.abort_message)
            os._exit(EXIT_INTERRUPTED)
        self.rt.request_stop()
        os.write(2, b"\nstopping after the current step; press Ctrl-C again to abort now\n")


def _run_room(
    ctx: click.Context, rt: Runtime, room_id: str, run: Callable[[], RoomState], as_json: bool
) -> NoReturn:
    """Run a room with Ctrl-C handling, then report how it ended (see :func:`_finish`)."""
    interrupt = _Interrupt(rt, room_id, _command(ctx, "resume", room_id))
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, interrupt) if in_main else None
    try:
        state = run()
    finally:
        if in_main:  # None: a handler not set from Python; Ctrl-C then acts as by default
            restore = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, restore)
    if interrupt.count and state.status is RoomStatus.RUNNING:
        if as_json:
            click.echo(json.dumps(serde.room_to_dict(state), ensure_ascii=False))
        click.echo(
            f"room {room_id} stopped at {state.current_node!r} after "
            f"{plural(state.steps, 'step')} (interrupted). Resume it with:\n"
            f"  {_command(ctx, 'resume', room_id)}",
            err=True,
        )
        ctx.exit(EXIT_INTERRUPTED)
    _finish(state, as_json)


# --- formatting -----------------------------------------------------------------------------


def _echo_err(line: str) -> None:
    click.echo(printable(line), err=True)


def _finish(state: RoomState, as_json: bool) -> NoReturn:
    """Report where a room stopped and exit with 0 completed, 1 failed/cancelled, 3 waiting
    (4 if it is somehow still unfinished, with the command that resumes it)."""
    ctx = click.get_current_context()
    if as_json:
        click.echo(json.dumps(serde.room_to_dict(state), ensure_ascii=False))
    elif state.status is RoomStatus.WAITING:
        click.echo(f"room {state.room_id} is waiting at {state.current_node!r}; continue it with:")
        click.echo(f"  {_command(ctx, 'input', state.room_id, '--data', '<json>')}")
    elif not state.status.is_terminal:
        click.echo(
            f"room {state.room_id} is {state.status.value} at {state.current_node!r}; "
            "resume it with:"
        )
        click.echo(f"  {_command(ctx, 'resume', state.room_id)}")
    else:
        tail = f": {state.reason}" if state.reason else ""
        click.echo(
            printable(f"room {state.room_id} {state.status.value} at {state.current_node!r}{tail}")
        )
    if state.status is RoomStatus.COMPLETED:
        ctx.exit(EXIT_COMPLETED)
    if state.status is RoomStatus.WAITING:
        ctx.exit(EXIT_WAITING)
    ctx.exit(EXIT_FAILED if state.status.is_terminal else EXIT_ERROR)


# --- commands -------------------------------------------------------------------------------


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check workflow files; exit 0 if all are valid, 2 listing every problem otherwise.

    Example:

        openrooms validate examples/*.yaml
    """
    bad = False
    for path in files:
        try:
            wf = load_workflow(path, registries=_registries())
        except WorkflowValidationError as exc:
            bad = True
            click.echo(f"{path}: {exc}{_plugin_hint(exc, click.get_current_context())}", err=True)
            continue
        click.echo(
            f"{path}: ok — workflow {wf.id!r} v{wf.version}, {plural(len(wf.nodes), 'node')}, "
            f"{plural(len(wf.transitions), 'transition')}"
        )
    if bad:
        click.get_current_context().exit(EXIT_INVALID)


def _parse_vars(
    pairs: tuple[str, ...], vars_file: str | None, inputs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if vars_file:
        loaded = loading.load_file(vars_file)
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                f"{vars_file} must hold a mapping of names to values", param_hint="--vars-file"
            )
        variables.update(loaded)
    for pair in pairs:  # NAME=TEXT is read by the declared type, NAME:=JSON as JSON
        try:
            name, value = parse_var(pair, inputs)
        except VariableSyntaxError as exc:  # a usage error: exit status 2
            raise click.BadParameter(str(exc).removeprefix("--var "), param_hint="--var") from exc
        variables[name] = value
    return variables


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--var",
    "pairs",
    multiple=True,
    metavar="NAME=TEXT",
    help="Set a variable; NAME:=JSON for JSON (see 'Variables' above).",
)
@click.option(
    "--vars-file",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON or YAML file with a mapping of variables.",
)
@click.option("--name", help="A label for the room.")
@click.option(
    "--detach",
    is_flag=True,
    help="Create the room, leave it for a worker and exit: queued on the job queue if "
    "there is one (--queue-url), else for the embedded `openrooms worker`.",
)
@click.option("--queue", "queue_flag", is_flag=True, hidden=True, help="Old name of --detach.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the final room as JSON (--detach: id, status)."
)
@click.option("-v", "--verbose", is_flag=True, help="Show every transition and tool call.")
@click.pass_context
def run(
    ctx: click.Context,
    file: str,
    pairs: tuple[str, ...],
    vars_file: str | None,
    name: str | None,
    detach: bool,
    queue_flag: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Create a room from a workflow file and run it, showing progress node by node.

    Variables: --var NAME:=JSON is always JSON. --var NAME=TEXT is read by the type the
    workflow's inputs declare for NAME: text for a string, else the JSON it spells
    (amount=250 is the number 250; amount=abc is refused). Without a declaration a number,
    true, false, null or JSON is read as such and other text is a string, but text that
    starts like JSON ({, [ or ") and does not parse is refused. Names the inputs do not
    declare are refused, with a "did you mean".

    Detached (--detach; --queue is its old name): the room is created, marked queued and
    left for a worker; the command prints its id (--json: {"id": ..., "status": "queued"})
    and exits 0. With a job queue (--queue-url, OPENROOMS_QUEUE_URL) a job is queued for
    the RQ workers; without, the embedded `openrooms worker` on the same database starts it.

    Exit status: 0 completed (or queued, with --detach), 1 failed or cancelled, 2 invalid
    input (workflow, variables, file), 3 waiting for input, 4 not done (e.g. database
    locked, queue unreachable), 130 interrupted (Ctrl-C: the first stops after the current
    step, a second at once; ``resume`` goes on).

    Example:

        openrooms run examples/order_approval.yaml --var amount=250
    """
    wf = load_workflow(file, registries=_registries())
    variables = _parse_vars(pairs, vars_file, wf.inputs)
    detach = detach or queue_flag
    jobs = _queue(ctx, "run --detach") if detach and ctx.obj["queue_url"] else None
    with _runtime(ctx) as rt:
        _check_keys(rt, wf)
        room = rt.create_room(wf, variables, name=name)
        if detach:
            queued = rt.enqueue(room.room_id)
            if jobs is not None:
                with jobs:
                    _enqueue_or_say(ctx, jobs, queued)
                _print_queued(queued, as_json, f"({wf.id} v{wf.version}) queued on {jobs.name}")
            elif as_json:
                _print_queued(queued, as_json, "")
            else:
                click.echo(f"room {room.room_id} ({wf.id} v{wf.version}) queued for a worker:")
                click.echo(f"  {_command(ctx, 'worker')}")
            ctx.exit(EXIT_COMPLETED)
        click.echo(f"room {room.room_id} ({wf.id} v{wf.version})", err=True)
        progress = ProgressPrinter(_echo_err, verbose=verbose)
        _run_room(ctx, rt, room.room_id, lambda: rt.run(room.room_id, on_event=progress), as_json)


@cli.command("input")
@click.argument("room_id")
@click.option(
    "--data",
    required=True,
    metavar="JSON",
    help="The input as JSON; '@file.json' reads a file, '-' reads standard input.",
)
@click.option(
    "--detach",
    is_flag=True,
    help="Record the input and queue the room on the job queue (--queue-url) instead of "
    "running it on here.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the final room as JSON (--detach: id, status)."
)
@click.option("-v", "--verbose", is_flag=True, help="Show every transition and tool call.")
@click.pass_context
def input_(
    ctx: click.Context, room_id: str, data: str, detach: bool, as_json: bool, verbose: bool
) -> None:
    """Deliver input to a waiting room and run it on until it finishes or waits again.

    With --detach the input is recorded (the wait node completes), the room is queued for
    the RQ workers and the command exits 0 at once; it needs a job queue (--queue-url or
    OPENROOMS_QUEUE_URL). Exit status as for ``run``.

    Example:

        openrooms input 0193ab12cd34ef5678 --data '{"approved": true}'
    """
    if data == "-":
        text = loading.read_stream(sys.stdin.buffer, source="--data -")
        value = loading.parse_json(text, source="--data -")
    elif data.startswith("@"):
        value = loading.parse_json(loading.read_text(data[1:]), source=data[1:])
    else:
        value = loading.parse_json(data, source="--data")
    if detach:
        jobs = _queue(ctx, "input --detach")
        with _runtime(ctx, existing=True) as rt, jobs:
            state = rt.record_input(room_id, value)
            _enqueue_or_say(ctx, jobs, state)
        _print_queued(state, as_json, f"has its input; queued on {jobs.name}")
        ctx.exit(EXIT_COMPLETED)
    with _runtime(ctx, existing=True) as rt:
        _check_room_keys(rt, room_id)
        progress = ProgressPrinter(_echo_err, verbose=verbose)
        _run_room(
            ctx, rt, room_id, lambda: rt.send_input(room_id, value, on_event=progress), as_json
        )


@cli.command()
@click.argument("room_id")
@click.option(
    "--force", is_flag=True, help="Take over even if another runner's lease has not expired."
)
@click.option(
    "--detach",
    is_flag=True,
    help="Queue the room on the job queue (--queue-url) instead of running it here.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the final room as JSON (--detach: id, status)."
)
@click.option("-v", "--verbose", is_flag=True, help="Show every transition and tool call.")
@click.pass_context
def resume(
    ctx: click.Context, room_id: str, force: bool, detach: bool, as_json: bool, verbose: bool
) -> None:
    """Continue a room: one left running by a crash, a due retry, or an expired wait.

    A node that was interrupted mid-flight runs again with the same idempotency key;
    nodes whose completion was committed do not run again. With --detach the room is queued
    for the RQ workers instead (a worker takes it once no live runner holds it) and the
    command exits 0; it needs a job queue (--queue-url or OPENROOMS_QUEUE_URL). Exit status
    as for ``run``.

    Example:

        openrooms resume 0193ab12cd34ef5678
    """
    if detach:
        jobs = _queue(ctx, "resume --detach")
        with _runtime(ctx, existing=True) as rt, jobs:
            state = rt.get_room(room_id)
            if state.status.is_terminal:
                raise RoomStatusError(
                    room_id, state.status.value, "resume it", "it has already finished"
                )
            if state.status is RoomStatus.CREATED:
                state = rt.enqueue(room_id)
            _enqueue_or_say(ctx, jobs, state)
        _print_queued(state, as_json, f"queued on {jobs.name}")
        ctx.exit(EXIT_COMPLETED)
    with _runtime(ctx, existing=True) as rt:
        _check_room_keys(rt, room_id)
        progress = ProgressPrinter(_echo_err, verbose=verbose)
        _run_room(
            ctx, rt, room_id, lambda: rt.run(room_id, force=force, on_event=progress), as_json
        )


def _enqueue_or_say(ctx: click.Context, jobs: RQJobQueue, state: RoomState) -> None:
    """Queue *state*'s room; if the queue cannot take it, say what was recorded and how to
    queue it again."""
    try:
        jobs.enqueue(state.room_id)
    except OpenRoomsError as exc:
        again = _command(ctx, "resume", state.room_id, "--detach")
        raise _failure(
            f"room {state.room_id} is saved ({state.status.value}), but no job could be "
            f"queued for it: {exc}\n  queue it once the queue is back: {again}",
            EXIT_ERROR,
        ) from exc


@cli.command()
@click.argument("room_id")
@click.option("--reason", default="cancelled from the command line", help="Recorded in the log.")
@click.pass_context
def cancel(ctx: click.Context, room_id: str, reason: str) -> None:
    """Cancel a room that has not finished.

    Example:

        openrooms cancel 0193ab12cd34ef5678 --reason "duplicate order"
    """
    with _runtime(ctx, existing=True) as rt:
        state = rt.cancel(room_id, reason=reason)
    click.echo(f"room {state.room_id} cancelled")


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="How many rooms run at the same time, at most (embedded worker; an RQ worker runs "
    "one: start more workers).",
)
@click.option("--once", is_flag=True, help="Run the rooms due now, then exit.")
@click.option(
    "--burst", is_flag=True, help="Run the jobs queued now, then exit (as --once; RQ's name)."
)
@click.option(
    "--queue",
    "queue_names",
    multiple=True,
    metavar="NAME",
    help="With a job queue: work this RQ queue instead of the queue URL's (repeatable, in "
    "priority order).",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Exit after this long with no room due or running (embedded worker).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Look for rooms that other processes made due at least this often (embedded worker).",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="How long a runner's lease lasts unrenewed [env OPENROOMS_LEASE_TTL_S; default 30].",
)
@click.option(
    "--renew-every",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="How often a held lease is renewed [env OPENROOMS_RENEW_EVERY_S; default a third "
    "of the lease time].",
)
@click.option(
    "--sweep-every",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="How often the sweeper queues rooms whose lease expired or whose wake-up time "
    "passed [env OPENROOMS_SWEEP_EVERY_S; default 15].",
)
@click.option(
    "--max-recoveries",
    type=click.IntRange(0, 1000),
    metavar="N",
    help="Takeovers in a row of a crashed runner's room before the room fails "
    "[env OPENROOMS_MAX_RECOVERIES; default 3].",
)
@click.option("-v", "--verbose", is_flag=True, help="Show every transition and tool call.")
@click.pass_context
def worker(
    ctx: click.Context,
    concurrency: int,
    once: bool,
    burst: bool,
    queue_names: tuple[str, ...],
    idle_exit: float | None,
    poll: float,
    lease_ttl: float | None,
    renew_every: float | None,
    sweep_every: float | None,
    max_recoveries: int | None,
    verbose: bool,
) -> None:
    """Run the rooms nobody is running: queued rooms, due retries, timed-out waits.

    With a job queue (--queue-url or OPENROOMS_QUEUE_URL): an RQ worker with OpenRooms'
    entry point and RQ's scheduler. It runs each queued room in a forked work horse, logs
    one line per room run, queues a room's next run at its wake-up time, and sweeps every
    --sweep-every seconds: rooms whose runner died (lease expired) and rooms whose wake-up
    time passed are queued again. A room taken over from crashed runners more than
    --max-recoveries times in a row fails ("max recovery attempts exceeded"). SIGTERM is a
    warm shutdown: the room stops after its current step, is queued again for another
    worker, and the worker exits. See docs/workers.md.

    Without a job queue: the embedded worker. It wakes each room of the database when its
    timer is due (a retry's backoff, a wait's timeout_s, both stored on the room) and
    starts the rooms `run --detach` left for it, without anyone calling `resume`. It sleeps
    until the next timer, looking for rooms other processes made at least every --poll
    seconds, and prints a line for each room it picks up, its progress, and where it stopped.

    Either stops on SIGTERM or Ctrl-C: it starts no more rooms, and the running ones stop
    after their current step (every step is committed; `resume` goes on). A second Ctrl-C
    exits at once. Exit status: 0 stopped (--once, --burst, --idle-exit, SIGTERM), 4 not
    done (e.g. the database or the queue is unavailable), 130 Ctrl-C.

    Example:

        openrooms --queue-url rq://127.0.0.1:6379/0 worker
    """
    from openrooms.config import worker_settings

    obj = ctx.find_root().obj
    settings = worker_settings(
        obj["config"],
        os.environ,
        lease_ttl_s=lease_ttl,
        renew_every_s=renew_every,
        sweep_every_s=sweep_every,
        max_recoveries=max_recoveries,
    )
    env = {
        "OPENROOMS_LEASE_TTL_S": repr(settings.lease_ttl_s),
        "OPENROOMS_SWEEP_EVERY_S": repr(settings.sweep_every_s),
        "OPENROOMS_MAX_RECOVERIES": str(settings.max_recoveries),
    }
    if settings.renew_every_s is not None:
        env["OPENROOMS_RENEW_EVERY_S"] = repr(settings.renew_every_s)
    if obj["queue_url"]:
        # the horses open their runtime from the environment, as under a plain `rq worker`
        for key, value in (
            ("OPENROOMS_DB", obj["db"]),
            ("OPENROOMS_SCRIPT", obj["script"]),
            ("OPENROOMS_CONFIG", obj["config_file"]),
        ):
            if value:
                env[key] = os.path.abspath(value) if key != "OPENROOMS_DB" else value
        if obj["plugins"]:
            given = [p for p in os.environ.get("OPENROOMS_PLUGINS", "").split(",") if p]
            env["OPENROOMS_PLUGINS"] = ",".join([*given, *obj["plugins"]])
        with _environment(env):
            _rq_worker(ctx, queue_names, burst or once, settings.sweep_every_s)
        return
    if queue_names:
        raise click.UsageError("--queue names an RQ queue: it needs --queue-url", ctx=ctx)
    once = once or burst
    with _environment(env):
        _embedded_worker(ctx, concurrency, once, idle_exit, poll, verbose)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for a while (a worker's horses and runtimes read them)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _rq_worker(
    ctx: click.Context, queue_names: tuple[str, ...], burst: bool, sweep_every_s: float
) -> None:
    """``openrooms worker`` with a job queue: an :class:`~openrooms.rq_jobs.OpenRoomsWorker`."""
    import logging

    from openrooms import rq_jobs

    obj = ctx.find_root().obj
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("openrooms")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        rq_jobs.work(
            obj["queue_url"],
            queues=queue_names,
            burst=burst,
            sweep_every_s=sweep_every_s,
            config=obj["config"],
            registries=obj["registries"],
        )
    finally:
        log.removeHandler(handler)


def _embedded_worker(
    ctx: click.Context,
    concurrency: int,
    once: bool,
    idle_exit: float | None,
    poll: float,
    verbose: bool,
) -> None:
    """``openrooms worker`` without a job queue: a :class:`~openrooms.worker.Worker`."""
    from openrooms.worker import Worker

    interrupted = []
    with _runtime(ctx) as rt:

        def say(room_id: str, text: str) -> None:
            click.echo(printable(f"[{room_id}] {text}"), err=True)

        def on_event(e: Event) -> None:
            line = progress_line(e, verbose=verbose)
            if line:
                say(e.room_id, line.strip())

        def on_start(room_id: RoomId) -> None:
            try:
                state = rt.states.find(room_id)
            except OpenRoomsError:  # a damaged row, say: the run reports it
                state = None
            say(room_id, _waking(state))

        def on_done(state: RoomState) -> None:
            if state.status is RoomStatus.RUNNING and state.wake_at is None:  # stopped
                resume = _command(ctx, "resume", state.room_id)
                say(state.room_id, f"stopped at {state.current_node!r}; resume it with: {resume}")
            else:
                say(state.room_id, _stopped_at(state))

        def on_error(room_id: RoomId, exc: Exception) -> None:
            say(room_id, f"not run: {exc} (trying again later)")

        w = Worker(
            rt,
            concurrency=concurrency,
            poll_s=poll,
            on_event=on_event,
            on_start=on_start,
            on_done=on_done,
            on_error=on_error,
        )

        def on_sigint(signum: int, frame: object) -> None:
            interrupted.append(True)
            if len(interrupted) > 1:
                os.write(2, b"\nworker aborted; every committed step is kept\n")
                os._exit(EXIT_INTERRUPTED)
            os.write(2, b"\nstopping after the current steps; press Ctrl-C again to abort now\n")
            w.stop()

        def on_sigterm(signum: int, frame: object) -> None:
            w.stop()

        # signal.signal, not the event loop's handlers: those wait for the loop, which a
        # long chain of pure nodes does not give back between steps
        in_main = threading.current_thread() is threading.main_thread()
        previous = []
        if in_main:
            previous = [
                (signal.SIGINT, signal.signal(signal.SIGINT, on_sigint)),
                (signal.SIGTERM, signal.signal(signal.SIGTERM, on_sigterm)),
            ]
        click.echo(f"worker {rt.owner}: up to {plural(concurrency, 'room')} at once", err=True)
        try:
            runs = asyncio.run(w.run(idle_exit_s=0.0 if once else idle_exit))
        finally:
            for signum, handler in previous:
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    click.echo(f"worker stopped after {plural(runs, 'room run')}", err=True)
    ctx.exit(EXIT_INTERRUPTED if interrupted else 0)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array: id, why, queued.")
@click.option(
    "--limit",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rooms of each kind (expired, due) at most.",
)
@click.pass_context
def sweep(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Queue, once, the rooms nobody will otherwise run: what every worker's sweeper does.

    Rooms whose runner died (``running`` or ``queued`` under a lease that expired without
    being released) and rooms whose wake-up time has passed (a retry, a wait's timeout, a
    queued room) get a job on the job queue, unless one is already pending for them. Time
    is the store's clock. Prints one line per room queued; needs a job queue
    (--queue-url or OPENROOMS_QUEUE_URL).

    Example:

        openrooms --queue-url rq://127.0.0.1:6379/0 sweep --json
    """
    from openrooms.sweeper import sweep as sweep_once

    jobs = _queue(ctx, "sweep")
    with _runtime(ctx, existing=True) as rt, jobs:
        found = sweep_once(rt.states, jobs, limit=limit)
    if as_json:
        click.echo(json.dumps([f.to_dict() for f in found], ensure_ascii=False))
        return
    queued = [f for f in found if f.queued]
    for f in queued:
        click.echo(printable(f"queued room {f.room_id} ({f.why})"))
    pending = len(found) - len(queued)
    tail = f"; {plural(pending, 'room')} already had a job pending" if pending else ""
    click.echo(f"swept: {plural(len(queued), 'room')} queued on {jobs.name}{tail}", err=True)


def _waking(state: RoomState | None) -> str:
    """What a worker is about to do with a room, for its progress line."""
    if state is None:
        return "starting"
    at = repr(state.current_node)
    if state.status is RoomStatus.WAITING:
        return f"wait at {at} timed out"
    if state.status is RoomStatus.RUNNING and state.wake_at is not None:
        return f"retrying {at} (attempt {state.attempt + 1})"
    return f"starting ({state.status.value})"


def _stopped_at(state: RoomState) -> str:
    """Where a worker's run of a room stopped, for its progress line."""
    at = repr(state.current_node)
    if state.status is RoomStatus.RUNNING and state.wake_at is not None:
        return f"sleeping until its retry of {at} is due"
    tail = f": {state.reason}" if state.reason else ""
    return f"{state.status.value} at {at}{tail}"


@cli.command()
@click.option(
    "--status",
    type=click.Choice([s.value for s in RoomStatus]),
    help="Only rooms with this status.",
)
@click.option("--workflow", "workflow_id", help="Only rooms of this workflow id.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="At most this many rooms (1 to 10,000).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def rooms(
    ctx: click.Context, status: str | None, workflow_id: str | None, limit: int, as_json: bool
) -> None:
    """List rooms, newest first.

    Example:

        openrooms rooms --status waiting
    """
    corrupt: list[CorruptRoomError] = []
    with _runtime(ctx, read_only=True) as rt:
        found = rt.list_rooms(
            status=status, workflow_id=workflow_id, limit=limit, on_corrupt=corrupt.append
        )
    for exc in corrupt:  # listed with the others; what is wrong goes to stderr
        click.echo(f"Warning: {exc}", err=True)
    if as_json:
        listed = [serde.room_to_dict(s) for s in found]
        listed += [{"id": e.room_id, "status": "corrupt", "error": str(e)} for e in corrupt]
        click.echo(json.dumps(listed, ensure_ascii=False))
        return
    if not found and not corrupt:
        click.echo("no rooms")
        return
    click.echo(f"{'ROOM':<22} {'STATUS':<10} {'WORKFLOW':<24} {'NODE':<20} STEPS")
    for s in found:
        wf = f"{s.workflow_id} v{s.workflow_version}"
        click.echo(
            f"{s.room_id:<22} {s.status.value:<10} {wf:<24} {s.current_node or '-':<20} {s.steps}"
        )
    for e in corrupt:
        click.echo(f"{e.room_id:<22} {'corrupt':<10} {'?':<24} {'?':<20} ?")


@cli.command()
@click.argument("room_id")
@click.option("--json", "as_json", is_flag=True, help="Print the room as JSON.")
@click.pass_context
def show(ctx: click.Context, room_id: str, as_json: bool) -> None:
    """Show a room: status, current node, variables and workflow.

    Example:

        openrooms show 0193ab12cd34ef5678 --json
    """
    with _runtime(ctx, read_only=True) as rt:
        state = rt.get_room(room_id)
    if as_json:
        click.echo(json.dumps(serde.room_to_dict(state), ensure_ascii=False, indent=2))
        return
    click.echo(printable(f"room:      {state.room_id} ({state.name})"))
    click.echo(f"workflow:  {state.workflow_id} v{state.workflow_version}")
    click.echo(f"status:    {state.status.value}")
    click.echo(f"node:      {state.current_node} (attempt {state.attempt})")
    click.echo(f"steps:     {state.steps}")
    if state.reason:
        click.echo(printable(f"reason:    {state.reason}"))
    u = state.usage
    if u:
        cost = f", ${u['cost_usd']:.6f}" if u.get("cost_usd") is not None else ""
        click.echo(
            f"usage:     {plural(u.get('model_calls', 0), 'model call')}, "
            f"{plural(u.get('tool_calls', 0), 'tool call')}, {u.get('prompt_tokens', 0)} + "
            f"{plural(u.get('completion_tokens', 0), 'token')}{cost}"
        )
    if state.memory:
        click.echo(f"memory:    {short(dict(state.memory), 80)}")
    click.echo("variables:")
    for line in json.dumps(dict(state.variables), indent=2, ensure_ascii=False).splitlines():
        click.echo(printable(f"  {line}"))


@cli.command()
@click.argument("room_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def rerun(ctx: click.Context, room_id: str, as_json: bool) -> None:
    """Re-run a room offline from its log and report whether it diverges.

    Every model and tool call is answered from the log (no provider, no network), input
    is delivered where it was, and the new log is compared with the stored one. Exit 0:
    identical; 1: diverged (the report names the first differing event).

    Example:

        openrooms rerun 0193ab12cd34ef5678
    """
    _rerun(ctx, room_id, as_json)


@cli.command("replay", hidden=True)
@click.argument("room_id")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def replay_alias(ctx: click.Context, room_id: str, as_json: bool) -> None:
    """Deprecated: the old name of `openrooms rerun`, which it runs after a note on stderr.

    `replay` now names only folding a room's log into its state (`Runtime.replay` in Python).

    Example:

        openrooms rerun 0193ab12cd34ef5678
    """
    click.echo(
        "Note: `openrooms replay` is deprecated and will be removed; use `openrooms rerun`.",
        err=True,
    )
    _rerun(ctx, room_id, as_json)


def _rerun(ctx: click.Context, room_id: str, as_json: bool) -> NoReturn:
    with _runtime(ctx, read_only=True) as rt:
        report = rt.rerun(room_id)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    elif report.identical:
        click.echo(
            f"identical: {plural(report.events, 'event')} re-ran the same way ({report.status})"
        )
    else:
        click.echo(f"diverged at event {report.diverged_at}:")
        click.echo(f"  recorded: {short(report.expected, 200)}")
        click.echo(f"  re-run:   {short(report.got, 200)}")
    sys.exit(0 if report.identical else 1)


def _event_json(e: Event) -> str:
    d = serde.event_to_dict(e)
    return json.dumps(d, ensure_ascii=False)


@cli.command()
@click.argument("room_id")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON lines with seq, type, level, timestamp, node, data, error.",
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new events until the room finishes."
)
@click.option(
    "--level",
    type=click.Choice([lv.value for lv in Level], case_sensitive=False),
    help="Only events at this level or above.",
)
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice([t.value for t in EventType], case_sensitive=False),
    help="Only events of this type (repeatable).",
)
@click.option(
    "--after",
    default=0,
    type=click.IntRange(0, 2**63 - 1),
    help="Only events with a sequence number above this.",
)
@click.pass_context
def logs(
    ctx: click.Context,
    room_id: str,
    as_json: bool,
    follow: bool,
    level: str | None,
    types: tuple[str, ...],
    after: int,
) -> None:
    """Print a room's execution log.

    Example:

        openrooms logs 0193ab12cd34ef5678 --follow --level INFO
    """
    min_level = Level(level.upper()) if level else None
    wanted = [EventType(t.upper()) for t in types] or None
    fmt = _event_json if as_json else log_line
    with _runtime(ctx, read_only=True) as rt:
        rt.get_room(room_id)
        if follow:
            events: Any = rt.follow(
                room_id, after=after, min_level=min_level, types=wanted, stop_when_idle=False
            )
        else:
            events = rt.events(room_id, after=after, min_level=min_level, types=wanted)
        try:
            for e in events:
                click.echo(fmt(e) if as_json else printable(fmt(e)))
        except KeyboardInterrupt:
            return


@cli.group()
def db() -> None:
    """Look after the database: bring its schema up to date, check it for damage.

    Example:

        openrooms db check
    """


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the database's schema to this version of OpenRooms.

    Idempotent: a schema that is up to date is left as it is, and two processes running it
    at once migrate once (Postgres: under an advisory lock). Upgrades the state store and
    the event log where they are different databases. A Postgres schema that is behind is
    never migrated by opening it; run this after installing a new OpenRooms.

    Example:

        openrooms --db "postgresql://postgres@127.0.0.1:5432/app?schema=openrooms" db upgrade
    """
    from openrooms.backends import upgrade_backend

    registries: Registries = ctx.obj["registries"]
    for url in dict.fromkeys(backend_urls(ctx.obj["db"], config=ctx.obj["config"])):
        click.echo(upgrade_backend(url, registry=registries.backends))


@db.command("check")
@click.pass_context
def db_check(ctx: click.Context) -> None:
    """Check the database: SQLite's integrity check (SQLite files), then a decode of every
    stored row (SQLite and Postgres).

    Opens the file read-only. Prints `ok` and exits 0 when the file is sound; otherwise
    prints one line per problem (the table, the row and what is wrong) and exits 1. On
    Redis, every key under the prefix is decoded and the indexes compared with the rooms.

    Example:

        openrooms --db sqlite:///rooms.db db check
    """
    problems: list[str] = []
    with _runtime(ctx, read_only=True) as rt:
        stores = [rt.states] if rt.log is cast(object, rt.states) else [rt.states, rt.log]
        for store in stores:
            check = getattr(store, "check", None)
            if check is None:
                raise _failure(
                    f"{type(store).__name__} has no check; "
                    "`db check` reads SQLite, Postgres and Redis",
                    EXIT_INVALID,  # not 1, which says the database is damaged
                )
            problems += check(split=len(stores) > 1)
    if not problems:
        click.echo("ok")
        return
    for line in problems:
        click.echo(line)
    n = len(problems)
    click.echo(f"{n} problem{'s' if n != 1 else ''} found", err=True)
    ctx.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def workflows(ctx: click.Context, as_json: bool) -> None:
    """List the workflows stored in the database: the latest version of each.

    Running a workflow file stores its definition; rooms pin the version they started with.
    ``--json`` prints id, version, description, nodes and transitions (counts), digest and
    registered_at (ms since the epoch) for each.

    Example:

        openrooms workflows --json
    """
    with _runtime(ctx, read_only=True) as rt:
        found = rt.describe_workflows()
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
        return
    if not found:
        click.echo("no workflows stored yet (`openrooms run FILE` stores the file's workflow)")
        return
    width = max(24, *(len(w["id"]) for w in found))
    click.echo(f"{'WORKFLOW':<{width}} {'VERSION':>7} {'NODES':>5}  DESCRIPTION")
    for w in found:
        click.echo(
            f"{w['id']:<{width}} {w['version']:>7} {w['nodes']:>5}  {_clip(w['description'], 60)}"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def tools(ctx: click.Context, as_json: bool) -> None:
    """List the tools ``tool`` nodes and agents can call: name, parameters and description.

    Built-in tools, those registered by ``--plugin`` modules, and with ``--script`` the
    script's canned tools. ``--json`` prints each tool's full JSON schema of parameters.

    Example:

        openrooms --plugin my_tools tools
    """
    with _runtime(ctx, db="memory://") as rt:
        found = rt.describe_tools()
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False))
        return
    for t in found:
        click.echo(f"{t['name']}({_signature(t['parameters'])})")
        if t["description"]:
            click.echo(
                textwrap.fill(
                    t["description"], 100, initial_indent=" " * 4, subsequent_indent=" " * 4
                )
            )


_ORIGIN = re.compile(r"https?://[^/\s,]+")


def _cors_origins(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """``--cors-origin`` values (each may hold several, comma-separated, as the environment
    variable does), each ``scheme://host[:port]`` or the lone ``*``."""
    found = [v.strip() for value in values for v in value.split(",") if v.strip()]
    for origin in found:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise click.BadParameter(
                f"{origin!r} is not an origin: give scheme://host[:port], without a path "
                "(e.g. https://app.example.com)",
                ctx=ctx,
                param=param,
            )
    return tuple(found)


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="OPENROOMS_HOST",
    help="The address to listen on [env OPENROOMS_HOST]. A non-loopback address needs API "
    "keys (OPENROOMS_API_KEYS) or --insecure.",
)
@click.option(
    "--port",
    default=3001,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar=["OPENROOMS_PORT", "PORT"],
    help="The port to listen on (0: any free port) [env OPENROOMS_PORT, PORT].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Without a job queue: how many rooms run in the server's process at the same time.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve on a non-loopback address without API keys (something in front of the "
    "server must authenticate).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    envvar="OPENROOMS_CORS_ORIGINS",
    callback=_cors_origins,
    metavar="ORIGIN",
    help="An origin browsers may call the API from, scheme://host[:port] (repeatable; "
    "none: CORS is off) [env OPENROOMS_CORS_ORIGINS, comma-separated].",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    envvar="OPENROOMS_MAX_BODY_BYTES",
    help="The largest request body; a bigger one gets 413 payload_too_large "
    "[env OPENROOMS_MAX_BODY_BYTES].",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    envvar="OPENROOMS_RATE_LIMIT",
    help="Requests per minute per API key (per client without keys), on every route; "
    "more get 429 rate_limited [env OPENROOMS_RATE_LIMIT].",
)
@click.option(
    "--room-rate-limit",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    envvar="OPENROOMS_ROOM_RATE_LIMIT",
    help="Requests per minute per room on run and input [env OPENROOMS_ROOM_RATE_LIMIT].",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    concurrency: int,
    insecure: bool,
    cors_origins: tuple[str, ...],
    max_body_bytes: int,
    rate_limit: int,
    room_rate_limit: int,
) -> None:
    """Serve the REST API (openrooms_server) with uvicorn until Ctrl-C or SIGTERM.

    Without a job queue, rooms run in the server's process; with one (--queue-url,
    OPENROOMS_QUEUE_URL, REDIS_URL), runs are queued for `openrooms worker` processes. On
    shutdown, running rooms stop at their next step boundary and stay resumable. Needs the
    server extra: pip install 'openrooms[server]'. See docs/server.md.

    Example:

        openrooms --db sqlite:///rooms.db serve --port 3001
    """
    from openrooms._extras import require

    for module in ("starlette", "uvicorn"):
        require(module, feature="openrooms serve", extra="server")
    from openrooms_server.app import serve as serve_app
    from openrooms_server.settings import Settings

    obj = ctx.find_root().obj
    serve_app(
        Settings(
            host=host,
            port=port,
            db=obj["db"],
            queue_url=obj["queue_url"],
            plugins=obj["plugins"],
            config_file=obj["config_file"],
            script=obj["script"],
            concurrency=concurrency,
            insecure=insecure,
            cors_origins=cors_origins,
            max_body_bytes=max_body_bytes,
            requests_per_minute=rate_limit,
            room_writes_per_minute=room_rate_limit,
        )
    )


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _signature(schema: Any) -> str:
    """A tool's parameters in one line: ``name: type``, optional ones in brackets."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return "..."
    required = schema.get("required") or []
    parts = []
    for name, spec in props.items():
        kind = "any"
        if isinstance(spec, dict):
            if isinstance(spec.get("enum"), list):
                kind = "|".join(v if isinstance(v, str) else json.dumps(v) for v in spec["enum"])
                kind = kind if len(kind) <= 40 else f"one of {len(spec['enum'])} values"
            elif isinstance(spec.get("type"), str):
                kind = spec["type"]
            elif isinstance(spec.get("type"), list):
                kind = "|".join(map(str, spec["type"]))
        part = f"{name}: {kind}"
        parts.append(part if name in required else f"[{part}]")
    return ", ".join(parts)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "table"]),
    default="mermaid",
    show_default=True,
    help="Output format.",
)
def graph(file: str, fmt: Literal["mermaid", "table"]) -> None:
    """Print a workflow's state machine as a Mermaid diagram or a transition table.

    Example:

        openrooms graph examples/order_approval.yaml --format table
    """
    wf = load_workflow(file, registries=_registries())
    click.echo(render_graph(wf, fmt))


def main() -> None:
    """Entry point of the ``openrooms`` console script."""
    cli(prog_name="openrooms")


if __name__ == "__main__":
    main()
