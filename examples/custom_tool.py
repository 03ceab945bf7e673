"""A custom tool: a typed Python function that `tool` nodes (and agents) can call.

Offline (no key, no network; an in-memory database). From the repository root:

    python examples/custom_tool.py
"""

from __future__ import annotations

from openrooms import EventType, ToolContext, WorkflowBuilder, open_runtime, tool

TICKETS: dict[str, dict[str, str]] = {}  # stands in for a ticketing service


@tool
def open_ticket(title: str, priority: int, ctx: ToolContext) -> dict[str, str]:
    """Open a support ticket; a repeated call with the same idempotency key gets the same one.

    The type hints become the tool's JSON Schema: a call with a missing title or a
    priority that is not a whole number is refused before this function runs. ``ctx``
    is not an argument: the runner passes the room, node and idempotency key in it.
    """
    # the key is the same when a crashed attempt runs again, so the ticket is not doubled
    if ctx.idempotency_key not in TICKETS:
        TICKETS[ctx.idempotency_key] = {
            "id": f"T-{len(TICKETS) + 1}",
            "title": title,
            "priority": "high" if priority > 2 else "normal",
        }
    return TICKETS[ctx.idempotency_key]


def main() -> None:
    wf = (
        WorkflowBuilder("ticket", variables={"title": "Printer on fire", "priority": 3})
        .tool(
            "open",
            "open_ticket",
            {"title": "{{ vars.title }}", "priority": "{{ vars.priority }}"},
            output="ticket",  # the tool's result lands in vars.ticket
        )
        .end("done")
        .transition("open", "done")
        .build()  # checks that 'open_ticket' is a registered tool
    )
    with open_runtime("memory://") as rt:
        room = rt.run(rt.create_room(wf).room_id)
        print(f"room {room.room_id}: {room.status.value}")
        print(f"ticket: {room.variables['ticket']}")
        (call,) = rt.events(room.room_id, types=[EventType.TOOL_CALLED])
        print(f"logged call: {call.data['tool']}({call.data['args']})")
        print(f"its idempotency key: {call.data['idempotency_key']}")


if __name__ == "__main__":
    main()
