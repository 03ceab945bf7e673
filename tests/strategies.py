"""Hypothesis strategies: valid workflows, outcome sequences and broken definitions."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from openrooms import Outcome, Workflow, WorkflowBuilder

LABELS = ["ok", "error", "timeout", "approve", "reject"]


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    """Valid workflows: a chain of set/tool/decision nodes, extra edges, waits and ends.

    Every non-end node gets a default ``ok`` transition to a node after it or to an end,
    so the table is valid; extra guarded edges (including back edges) and ``error``,
    ``timeout`` and custom-label edges make the shapes varied.
    """
    n = draw(st.integers(min_value=1, max_value=7))
    kinds = draw(
        st.lists(st.sampled_from(["set", "decision", "tool", "wait"]), min_size=n, max_size=n)
    )
    b = WorkflowBuilder("gen", variables={"i": 0}, max_steps=draw(st.integers(5, 60)))
    names = [f"n{i}" for i in range(n)]
    for name, kind in zip(names, kinds, strict=True):
        retry = draw(
            st.none() | st.builds(dict, max_attempts=st.integers(1, 3), backoff_s=st.just(0.0))
        )
        common: dict[str, Any] = {"retry": retry} if retry and kind != "wait" else {}
        if kind == "set":
            b.set(name, {"i": "{{ vars.i + 1 }}"}, **common)
        elif kind == "decision":
            b.decision(name)
        elif kind == "tool":
            b.tool(name, "calculator", {"expression": "1 + {{ vars.i }}"}, output="r", **common)
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
            b.transition(name, target, on=label, when=when or "true")
        if kinds[i] == "wait":
            b.transition(name, "failed_end", on="timeout")
        # the default: on to the next node, or sometimes back to the start (a loop)
        nxt = names[i + 1] if i + 1 < n else draw(st.sampled_from(["done", names[0]]))
        b.transition(name, nxt)
    # defaults last (a guarded edge after a default could never fire); both ends reachable
    b.transition(names[0], "failed_end", on="error")
    b.transition(names[-1], "done", on="approve")
    return b.build()


outcomes = st.builds(
    Outcome,
    label=st.sampled_from(LABELS),
    output=st.none() | st.integers(-5, 5) | st.text(max_size=5),
    retryable=st.booleans(),
)
"""Arbitrary node outcomes, failures included."""
