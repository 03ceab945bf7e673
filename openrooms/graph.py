"""A workflow's state machine drawn as text: a Mermaid diagram or a transition table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from openrooms.workflow import Workflow

__all__ = ["render_graph"]


def render_graph(wf: Workflow, fmt: Literal["mermaid", "table"] = "mermaid") -> str:
    """The workflow as ``mermaid`` (a ``stateDiagram-v2``) or a plain ``table``.

    Args:
        wf: the workflow to draw.
        fmt: ``mermaid`` for a diagram Mermaid renders (GitHub shows it in Markdown), or
            ``table`` for its start node, nodes and numbered transitions in columns.

    Returns:
        The text, without a trailing newline.
    """
    if fmt == "table":
        return _table(wf)
    return _mermaid(wf)


def _table(wf: Workflow) -> str:
    rows = [("#", "FROM", "ON", "WHEN", "TO")]
    rows += [
        (str(i), t.source, t.on, t.when or "(default)", t.target)
        for i, t in enumerate(wf.transitions)
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    nodes = ", ".join(f"{n} ({node.type})" for n, node in wf.nodes.items())
    return f"workflow {wf.id} v{wf.version}; start: {wf.start}\nnodes: {nodes}\n" + "\n".join(lines)


def _mermaid(wf: Workflow) -> str:
    out = ["stateDiagram-v2", f"    [*] --> {_mermaid_id(wf.start)}"]
    for node_id, node in wf.nodes.items():
        out.append(f"    {_mermaid_id(node_id)} : {node_id} ({node.type})")
    for t in wf.transitions:
        label = t.on if t.when is None else f"{t.on} [{t.when}]"
        label = label.replace(":", "#58;")
        out.append(f"    {_mermaid_id(t.source)} --> {_mermaid_id(t.target)} : {label}")
    for node_id, node in wf.nodes.items():
        if node.type == "end":
            out.append(f"    {_mermaid_id(node_id)} --> [*]")
    return "\n".join(out)


def _mermaid_id(node_id: str) -> str:
    return node_id.replace("-", "_")
