"""A custom node type: `grade` turns a score into a label that transitions route on.

Offline (no key, no network; an in-memory database). From the repository root:

    python examples/custom_node.py          # a score of 72: routed on 'pass'
    python examples/custom_node.py 95       # routed on 'distinction'
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from openrooms import (
    ExpressionError,
    Node,
    NodeContext,
    NodeExecutor,
    Outcome,
    Problem,
    WorkflowBuilder,
    open_runtime,
)
from openrooms.expressions import Template, compile_template
from openrooms.nodes import CONFIG_NAMES
from openrooms.nodes.base import unknown_keys


class Grade(NodeExecutor):
    """``grade``: renders ``score`` and routes on the first band it reaches.

    ``{type: grade, score: "{{ vars.score }}", bands: {distinction: 90, pass: 50}}``
    routes ``on: distinction``, ``on: pass``, or ``on: fail`` below every band.
    """

    def validate(self, node: Node, path: str) -> list[Problem]:
        """Runs when a workflow is built: a bad setting fails there, with its path."""
        problems = unknown_keys(node, path, frozenset({"score", "bands"}))
        try:
            compile_template(str(node.config.get("score", "")), names=CONFIG_NAMES)
        except ExpressionError as exc:
            problems.append(Problem(f"{path}.score", str(exc)))
        bands = node.config.get("bands")
        if not isinstance(bands, Mapping) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in bands.values()
        ):
            problems.append(Problem(f"{path}.bands", "expected label: minimum score pairs"))
        return problems

    def prepare(self, node: Node) -> tuple[Template, list[tuple[str, float]]]:
        """Runs once, after validation: compile the template, sort the bands."""
        bands = sorted(node.config["bands"].items(), key=lambda band: -band[1])
        return compile_template(node.config["score"], names=CONFIG_NAMES), bands

    async def execute(self, ctx: NodeContext) -> Outcome:
        """One attempt: the label is the outcome the transitions route on."""
        template, bands = ctx.prepared
        score: Any = template.render(ctx.scope)
        label = next((name for name, least in bands if score >= least), "fail")
        return Outcome.ok({"score": score, "grade": label}, label=label)


def main(score: float) -> None:
    wf = (
        WorkflowBuilder("exam", variables={"score": 72})
        .node(
            "mark",
            "grade",
            score="{{ vars.score }}",
            bands={"distinction": 90, "pass": 50},
            output="result",
        )
        .end("congratulate")
        .end("certify")
        .end("retake", status="failed", reason="score {{ vars.score }} is below 50")
        .transition("mark", "congratulate", on="distinction")
        .transition("mark", "certify", on="pass")
        .transition("mark", "retake", on="fail")
    )
    with open_runtime("memory://") as rt:
        rt.node_types.register("grade", Grade())  # this runtime's type (a plugin could add it)
        room = rt.run(rt.create_room(wf, {"score": score}).room_id)  # built with rt's types
        print(f"score {score:g}: {room.variables['result']['grade']} -> {room.current_node}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 72)
