"""Read a room's log: every step a room takes is an event, committed with its state.

Runs a room whose flaky tool fails once and is retried, then reads the room's log back:
all of it, only the failures, and only the tool calls. Offline (no key, no network; the
database lives in a temporary directory). From the repository root:

    python examples/read_log.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from openrooms import EventType, Level, ToolContext, WorkflowBuilder, open_runtime, tool


@tool
def flaky_lookup(order_id: str, ctx: ToolContext) -> dict[str, str]:
    """Fail on the first attempt, as a busy service would; succeed on the next."""
    if ctx.attempt == 1:
        raise ConnectionError("the order service is busy")
    return {"id": order_id, "status": "shipped"}


def main() -> None:
    wf = (
        WorkflowBuilder("track", variables={"order_id": "A-17"})
        .tool(
            "lookup",
            "flaky_lookup",
            {"order_id": "{{ vars.order_id }}"},
            output="order",
            retry={"max_attempts": 3, "backoff_s": 0.01},
        )
        .end("done")
        .transition("lookup", "done")
        .build()
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_runtime(f"sqlite:///{Path(tmp) / 'rooms.db'}") as rt,
    ):
        room = rt.run(rt.create_room(wf).room_id)
        print(f"room {room.room_id}: {room.status.value}, order {room.variables['order']}")

        print("the whole log:")
        for e in rt.events(room.room_id):
            where = f" {e.node}" if e.node else ""
            print(f"  {e.seq:2} {e.level.value:5} {e.type.value}{where}")

        print("only warnings and errors:")
        for e in rt.events(room.room_id, min_level=Level.WARN):
            error = f": {e.error.type}: {e.error.message}" if e.error else ""
            print(f"  {e.seq:2} {e.type.value}{error}")

        print("only tool calls:")
        for e in rt.events(room.room_id, types=[EventType.TOOL_CALLED]):
            print(f"  key {e.data['idempotency_key']}: {e.data.get('result', 'failed')}")

        # the same log from the command line: openrooms --db URL logs ROOM_ID [--json]
        print(f"replaying the log gives the stored state: {rt.replay(room.room_id) == room}")


if __name__ == "__main__":
    main()
