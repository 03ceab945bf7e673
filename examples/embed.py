"""Embed a room in a script: build a workflow in Python, run it, answer its wait, read it back.

Offline (no key, no network; the database lives in a temporary directory). From the
repository root:

    python examples/embed.py          # an order of 250: it waits for approval, then completes
    python examples/embed.py 40       # an order of 40: no approval needed
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from openrooms import RoomStatus, Workflow, WorkflowBuilder, open_runtime


def order_workflow() -> Workflow:
    """Price an order; orders over the threshold wait for a person to approve them."""
    return (
        WorkflowBuilder("embedded_order", variables={"amount": 250, "tax_rate": 0.2})
        # a template that is one {{ expression }} keeps its type: total is a number
        .set("price", {"total": "{{ round(vars.amount * (1 + vars.tax_rate), 2) }}"})
        .decision("route")
        .wait(
            "approval",
            prompt="Approve the order of {{ vars.total }}?",
            schema={"type": "object", "required": ["approved"]},
            output="decision",
        )
        .end("done")
        .end("rejected", status="failed", reason="the order of {{ vars.total }} was rejected")
        .transition("price", "route")
        .transition("route", "approval", when="vars.total > 100")  # first match wins
        .transition("route", "done")  # ... else
        .transition("approval", "done", when="input.approved")
        .transition("approval", "rejected")
        .build()
    )


def main(amount: float) -> None:
    # one SQLite file holds every room's state and log (without a URL: ./.openrooms/openrooms.db)
    with (
        tempfile.TemporaryDirectory() as tmp,
        open_runtime(f"sqlite:///{Path(tmp) / 'rooms.db'}") as rt,
    ):
        room = rt.create_room(order_workflow(), {"amount": amount})
        room = rt.run(room.room_id)  # runs until the room completes, fails or waits
        print(f"room {room.room_id}: {room.status.value} at {room.current_node!r}")
        if room.status is RoomStatus.WAITING:
            # any other process could do this later: the room is in the database
            room = rt.send_input(room.room_id, {"approved": True, "by": "sam"})
            print(f"approved by {room.variables['decision']['by']}: {room.status.value}")
        print(f"total: {room.variables['total']}")
        # the state is the fold of the log: replaying the events gives the same room
        print(f"replay matches: {rt.replay(room.room_id) == room}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 250)
