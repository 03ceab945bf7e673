"""Hypothesis strategies: valid workflows, outcome sequences and broken definitions."""

from __future__ import annotations

import copy
import re
import string
from typing import Any

import attrs
from hypothesis import strategies as st

from openrooms import (
    Node,
    NodeContext,
    NodeExecutor,
    Outcome,
    Problem,
    Workflow,
    WorkflowBuilder,
)
from openrooms.nodes.base import unknown_keys
from openrooms.registries import Registries

LABELS = ["ok", "error", "timeout", "approve", "reject"]
CUSTOM = frozenset({"approve", "reject"})


class Review(NodeExecutor):
    """A node type that ends ``ok``, ``approve`` or ``reject`` (custom labels are declared)."""

    labels = frozenset({"ok", *CUSTOM})

    def validate(self, node: Node, path: str) -> list[Problem]:
        return unknown_keys(node, path, frozenset())

    async def execute(self, ctx: NodeContext) -> Outcome:
        return Outcome.ok(label="approve")


def register(registries: Registries) -> None:
    """The plugin hook: ``openrooms --plugin tests.strategies`` knows ``test_review``."""
    registries.node_types.register("test_review", Review())


REGISTRIES = Registries()
"""The built-ins and ``test_review``: what generated workflows are built against (the
process-wide defaults stay untouched)."""
register(REGISTRIES)


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    """Valid workflows: a chain of set/tool/decision nodes, extra edges, waits and ends.

    Every non-end node gets a default ``ok`` transition to a node after it or to an end,
    so the table is valid; extra guarded edges (including back edges) and ``error``,
    ``timeout`` and custom-label edges make the shapes varied.
    """
    n = draw(st.integers(min_value=1, max_value=7))
    kinds = draw(
        st.lists(
            st.sampled_from(["set", "decision", "tool", "wait", "test_review"]),
            min_size=n,
            max_size=n,
        )
    )
    b = WorkflowBuilder("gen", variables={"i": 0}, max_steps=draw(st.integers(5, 60)))
    names = [f"n{i}" for i in range(n)]
    for name, kind in zip(names, kinds, strict=True):
        retry: dict[str, Any] | None = draw(
            st.none() | st.builds(dict, max_attempts=st.integers(1, 3), backoff_s=st.just(0.0))
        )
        common: dict[str, Any] = {"retry": retry} if retry and kind != "wait" else {}
        if kind == "set":
            b.set(name, {"i": "{{ vars.i + 1 }}"}, **common)
        elif kind == "decision":
            b.decision(name)
        elif kind == "tool":
            b.tool(
                name,
                "calculator",
                {"expression": "1 + i", "values": {"i": "{{ vars.i }}"}},
                output="r",
                **common,
            )
        elif kind == "test_review":
            b.node(name, "test_review", **common)
        else:
            b.wait(name, prompt="go?", timeout_s=draw(st.none() | st.just(5.0)))
    b.end("done")
    b.end("failed_end", status="failed", reason="bad")
    targets = [*names, "done", "failed_end"]
    for i, name in enumerate(names):
        extra = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(LABELS),
                    st.sampled_from(targets),
                    st.sampled_from([None, "vars.i > 2", "vars.i % 2 == 0", "true"]),
                ),
                max_size=3,
            )
        )
        for label, target, when in extra:
            if when is None and label == "ok":
                continue  # the default ok edge comes last
            if label in CUSTOM and kinds[i] != "test_review":
                continue  # only that type declares custom labels
            b.transition(name, target, on=label, when=when or "true")
        if kinds[i] == "wait":
            b.transition(name, "failed_end", on="timeout")
        if i == n - 1:  # "done" stays reachable, however the default below loops
            if kinds[i] == "test_review":
                b.transition(name, "done", on="approve")
            else:
                b.transition(name, "done", when="vars.i > 1000")
        # the default: on to the next node, or sometimes back to the start (a loop)
        nxt = names[i + 1] if i + 1 < n else draw(st.sampled_from(["done", names[0]]))
        b.transition(name, nxt)
    # defaults last (a guarded edge after a default could never fire); both ends reachable
    b.transition(names[0], "failed_end", on="error")
    return b.build(registries=REGISTRIES)


outcomes = st.builds(
    Outcome,
    label=st.sampled_from(LABELS),
    output=st.none() | st.integers(-5, 5) | st.text(max_size=5),
    retryable=st.booleans(),
)
"""Arbitrary node outcomes, failures included."""


@attrs.frozen
class Broken:
    """An invalid definition and the problem it must be refused with.

    Attributes:
        definition: the file format (as from YAML) of a valid workflow with one thing broken.
        original: the valid definition it was made from.
        kind: which breakage (for reading failures).
        path: the path the problem is reported at (``transitions[3].to``).
        message: text the problem's message contains.
        hinted: whether the problem carries a fix hint.
    """

    definition: dict[str, Any]
    original: dict[str, Any]
    kind: str
    path: str
    message: str
    hinted: bool


GHOST = "nowhere"
BAD_GUARDS = ["vars.i >", "(vars.i", "vars.__class__", "nope.x > 1", "9**9**9", "'open", "1 +* 2"]
BAD_WORKFLOW_IDS = st.text(alphabet=string.printable + "éÅß", max_size=120).filter(
    lambda s: re.fullmatch(r"[a-z0-9_-]{1,100}", s) is None
)
BAD_NODE_IDS = st.sampled_from(["9lives", "has space", "dot.ted", "-dash", "x" * 101, "é"])


@st.composite
def broken_workflows(draw: st.DrawFn) -> Broken:
    """Valid workflows from :func:`workflows` with exactly one thing broken."""
    original = draw(workflows()).to_dict()
    d = copy.deepcopy(original)
    nodes: dict[str, Any] = d["nodes"]
    transitions: list[dict[str, Any]] = d["transitions"]
    inner = [n for n, v in nodes.items() if v["type"] != "end"]  # n0, n1, ...
    kind = draw(
        st.sampled_from(
            [
                "unknown target",
                "unknown source",
                "unknown node type",
                "unknown tool",
                "unreachable node",
                "dead end",
                "unparsable guard",
                "decision without default",
                "duplicate default",
                "bad workflow id",
                "bad node id",
                "bad outcome label",
                "bad retry",
                "bad max_steps",
                "unknown initial node",
                "transition out of an end node",
                "unknown node setting",
            ]
        )
    )

    def broken(path: str, message: str, hinted: bool = True) -> Broken:
        return Broken(d, original, kind, path, message, hinted)

    i = draw(st.integers(0, len(transitions) - 1))
    node_id = draw(st.sampled_from(inner))
    if kind == "unknown target":
        transitions[i]["to"] = GHOST
        return broken(f"transitions[{i}].to", f"unknown node {GHOST!r}")
    if kind == "unknown source":
        transitions[i]["from"] = GHOST
        return broken(f"transitions[{i}].from", f"unknown node {GHOST!r}")
    if kind == "unknown node type":
        victim = draw(st.sampled_from(list(nodes)))
        nodes[victim]["type"] = "teleport"
        return broken(f"nodes.{victim}.type", "unknown node type 'teleport'")
    if kind == "unknown tool":
        nodes[node_id] = {"type": "tool", "tool": "no_such_tool", "args": {}}
        return broken(f"nodes.{node_id}.tool", "unknown tool 'no_such_tool'")
    if kind == "unreachable node":
        nodes["island"] = {"type": "end"}
        return broken("nodes.island", "unreachable")
    if kind == "dead end":
        d["transitions"] = [t for t in transitions if t["from"] != node_id]
        return broken(f"nodes.{node_id}", "has no way out")
    if kind == "unparsable guard":
        transitions[i]["when"] = draw(st.sampled_from(BAD_GUARDS))
        return broken(f"transitions[{i}].when", "in expression", hinted=False)
    if kind == "decision without default":
        nodes["choose"] = {"type": "decision"}
        transitions.append({"from": inner[0], "to": "choose", "when": "vars.i > 1000"})
        transitions.append({"from": "choose", "to": "done", "when": "vars.i > 5"})
        return broken("nodes.choose", "has no default transition")
    if kind == "duplicate default":
        defaults = [t for t in transitions if "when" not in t]
        copied = dict(draw(st.sampled_from(defaults)))
        copied["to"] = draw(st.sampled_from([n for n in nodes if n != copied["to"]]))
        transitions.append(copied)
        return broken(f"transitions[{len(transitions) - 1}]", "already has a default transition")
    if kind == "bad workflow id":
        d["id"] = draw(BAD_WORKFLOW_IDS)
        return broken("id", "is not a valid workflow id")
    if kind == "bad node id":
        bad = draw(BAD_NODE_IDS)
        nodes[bad] = {"type": "end"}
        return broken(f"nodes.{bad}", "is not a valid node id")
    if kind == "bad outcome label":
        transitions[i]["on"] = draw(st.sampled_from(["not ok!", "", "9", "a.b"]))
        return broken(f"transitions[{i}].on", "is not a valid outcome label")
    if kind == "bad retry":
        nodes[node_id]["retry"] = {"max_attempts": draw(st.sampled_from([0, -1, 101]))}
        return broken(f"nodes.{node_id}.retry.max_attempts", "expected 1 to", hinted=False)
    if kind == "bad max_steps":
        d["max_steps"] = draw(st.sampled_from([0, -5, 10_000_001]))
        return broken("max_steps", "expected a whole number from 1", hinted=False)
    if kind == "unknown initial node":
        d["initial"] = GHOST
        return broken("initial", f"unknown node {GHOST!r}")
    if kind == "transition out of an end node":
        transitions.append({"from": "done", "to": inner[0]})
        return broken(f"transitions[{len(transitions) - 1}].from", "is an 'end' node")
    assert kind == "unknown node setting"
    victim = draw(st.sampled_from(list(nodes)))
    nodes[victim]["colour"] = "blue"
    return broken(f"nodes.{victim}.colour", "unknown setting")
