"""A workflow's state machine drawn as text (a Mermaid diagram or a transition table), or
laid out in layers for a picture (:func:`layout`: the dashboard draws it as SVG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Literal

import attrs

if TYPE_CHECKING:
    from openrooms.workflow import Workflow

__all__ = [
    "Layout",
    "PlacedEdge",
    "PlacedNode",
    "layout",
    "layout_definition",
    "layout_workflow",
    "render_graph",
]


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


# --- a layered layout -------------------------------------------------------------------------

NODE_H: Final = 36
"""Height of a node's box."""
GAP_X: Final = 32
GAP_Y: Final = 56
MARGIN: Final = 16
CHAR_W: Final = 7.5
"""Width of a character of a label, roughly (a monospace-ish estimate)."""
MIN_W: Final = 96
MAX_W: Final = 240
LABEL_CHARS: Final = 30
"""A label longer than this is shortened (with "…") in the box; the whole is its title."""
_SWEEPS: Final = 4


@attrs.frozen
class PlacedNode:
    """A node's box: *x*, *y* its top left corner."""

    id: str
    type: str
    layer: int
    x: float
    y: float
    width: float
    height: float
    label: str
    """The text shown in the box (shortened when long)."""

    @property
    def cx(self) -> float:
        """The x of its centre."""
        return self.x + self.width / 2


@attrs.frozen
class PlacedEdge:
    """A transition as a path: *d* is SVG path data (numbers and commands only)."""

    source: str
    target: str
    label: str
    """The label shown (shortened when long)."""
    d: str
    label_x: float
    """Where the label goes: its centre on an edge down, its start on an edge back up."""
    label_y: float
    back: bool
    """Whether it goes back up (a loop), drawn around the side."""
    title: str = ""
    """The whole label (the hover text of a shortened one)."""


@attrs.frozen
class Layout:
    """Boxes and paths of a graph, and the size of the picture."""

    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    width: float
    height: float


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


EDGE_CHAR_W: Final = 6.2
"""Width of a character of an edge's label (11 px text), roughly."""


def _elide(text: str, limit: int) -> str:
    """*text* cut in the middle to *limit* characters: a condition keeps its subject and
    its value (``vars.kin…'refund'``), which tell a fan-out's edges apart."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def _layers(ids: Sequence[str], out: dict[str, list[str]], start: str) -> dict[str, int]:
    """Each node's layer: the longest path from *start* once the edges that close a cycle
    (found by a depth-first walk in table order) are left out; nodes the walk never reaches
    follow in declaration order."""
    order: list[str] = []
    back: set[tuple[str, str]] = set()
    seen: set[str] = set()
    on_stack: set[str] = set()
    roots = [start] + [n for n in ids if n != start]
    for root in roots:
        if root in seen:
            continue
        # iterative DFS: (node, next child index)
        stack: list[tuple[str, int]] = [(root, 0)]
        seen.add(root)
        on_stack.add(root)
        while stack:
            node, i = stack[-1]
            children = out.get(node, [])
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                if child in on_stack:
                    back.add((node, child))
                elif child not in seen:
                    seen.add(child)
                    on_stack.add(child)
                    stack.append((child, 0))
            else:
                stack.pop()
                on_stack.discard(node)
                order.append(node)
    layer = dict.fromkeys(ids, 0)
    for node in reversed(order):  # reverse post-order: a topological order of the DAG
        for child in out.get(node, []):
            if (node, child) not in back and child != node:
                layer[child] = max(layer[child], layer[node] + 1)
    return layer


def layout(
    nodes: Sequence[tuple[str, str]], edges: Sequence[tuple[str, str, str]], start: str
) -> Layout:
    """Lay a directed graph out in layers, top to bottom, deterministically.

    Layers come from the longest path from *start* (loops drawn back up); within a layer,
    nodes are ordered by the mean position of their parents, a few sweeps down, ties kept
    in declaration order. Same input, same picture.

    Args:
        nodes: ``(id, type)`` of every node, in declaration order.
        edges: ``(source, target, label)`` of every transition, in table order; an edge
            naming a node not in *nodes* is left out.
        start: the start node (layer 0).

    Returns:
        The placed nodes and edges.
    """
    ids = [n for n, _ in nodes]
    known = set(ids)
    kept = [(a, b, lab) for a, b, lab in edges if a in known and b in known]
    out: dict[str, list[str]] = {}
    for a, b, _ in kept:
        if b not in out.setdefault(a, []):
            out[a].append(b)
    layer_of = _layers(ids, out, start) if start in known else dict.fromkeys(ids, 0)
    depth = max(layer_of.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    for n in ids:
        rows[layer_of[n]].append(n)
    parents: dict[str, list[str]] = {}
    for a, b, _ in kept:
        if layer_of[a] < layer_of[b]:
            parents.setdefault(b, []).append(a)
    declared = {n: i for i, n in enumerate(ids)}
    for _ in range(_SWEEPS):
        pos = {n: i for row in rows for i, n in enumerate(row)}
        for r in range(1, depth):
            keys = {}
            for n in rows[r]:
                ps = parents.get(n)
                centre = sum(pos[p] for p in ps) / len(ps) if ps else float(pos[n])
                keys[n] = (centre, declared[n])
            rows[r].sort(key=keys.__getitem__)
            pos.update({n: i for i, n in enumerate(rows[r])})
    types = dict(nodes)
    widths = {n: min(MAX_W, max(MIN_W, CHAR_W * len(_short(n)) + 24)) for n in ids}
    # a node's slot in its row: its box, or wider for the label of an edge coming down to
    # it (labels sit over their targets), up to MAX_W; the box is centred in it
    slots = dict(widths)
    for a, b, label in kept:
        if label and layer_of[a] < layer_of[b]:
            wanted = min(MAX_W, EDGE_CHAR_W * len(label) + 12)
            slots[b] = max(slots[b], wanted)
    row_w = [sum(slots[n] for n in row) + GAP_X * (len(row) - 1) for row in rows]
    inner = max(row_w, default=0.0)
    placed: dict[str, PlacedNode] = {}
    for r, row in enumerate(rows):
        x = MARGIN + (inner - row_w[r]) / 2
        y = MARGIN + r * (NODE_H + GAP_Y)
        for n in row:
            box_x = x + (slots[n] - widths[n]) / 2
            placed[n] = PlacedNode(n, types[n], r, box_x, y, widths[n], NODE_H, _short(n))
            x += slots[n] + GAP_X
    width = inner + 2 * MARGIN + 48  # room on the right for loops drawn around the side
    height = MARGIN * 2 + depth * NODE_H + max(0, depth - 1) * GAP_Y
    placed_edges = []
    for a, b, label in kept:
        pa, pb = placed[a], placed[b]
        # a label down is centred over its target: as wide as the target's slot and a gap
        short = _elide(label, max(8, int((slots[b] + GAP_X - 12) / EDGE_CHAR_W)))
        if pb.layer > pa.layer:
            x1, y1, x2, y2 = pa.cx, pa.y + NODE_H, pb.cx, pb.y
            mid = (y1 + y2) / 2
            d = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
            # the label three quarters down the curve, near its target: the labels of a
            # fan-out sit over their own targets rather than on top of each other
            lx, ly = 0.15625 * x1 + 0.84375 * x2, mid + 0.42 * (y2 - mid) - 4
            placed_edges.append(PlacedEdge(a, b, short, d, lx, ly, back=False, title=label))
        else:  # a loop, or an edge back up: around the right of both boxes
            x1, y1 = pa.x + pa.width, pa.y + NODE_H / 2
            x2, y2 = pb.x + pb.width, pb.y + NODE_H / 2
            side = max(x1, x2) + 28 + 6 * (pa.layer - pb.layer)
            if a == b:
                y1, y2 = pa.y + NODE_H * 0.3, pa.y + NODE_H * 0.7
            d = f"M{x1:.1f},{y1:.1f} C{side:.1f},{y1:.1f} {side:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
            placed_edges.append(
                PlacedEdge(a, b, short, d, side + 4, (y1 + y2) / 2, back=True, title=label)
            )
    width = max(width, max((e.label_x + 4 for e in placed_edges if e.back), default=0.0))
    return Layout(tuple(placed[n] for n in ids), tuple(placed_edges), width, height)


def _edge_label(on: str, when: str | None) -> str:
    if when is None:
        return "" if on == "ok" else on
    return when if on == "ok" else f"{on}: {when}"


def layout_workflow(wf: Workflow) -> Layout:
    """:func:`layout` of a workflow: its nodes, its transitions (labelled by their outcome
    when not ``ok``, and their guard) and its start node."""
    return layout(
        [(n, node.type) for n, node in wf.nodes.items()],
        [(t.source, t.target, _edge_label(t.on, t.when)) for t in wf.transitions],
        wf.start,
    )


def layout_definition(definition: object) -> Layout | None:
    """:func:`layout` of a stored definition (a dict as registered), without building it (a
    workflow whose plugin is missing still has a picture); None when it has no node table.
    """
    if not isinstance(definition, dict):
        return None
    raw_nodes = definition.get("nodes")
    if not isinstance(raw_nodes, dict):
        return None
    nodes = [
        (str(n), str(c.get("type", "?")) if isinstance(c, dict) else "?")
        for n, c in raw_nodes.items()
    ]
    edges = []
    for t in definition.get("transitions") or ():
        if isinstance(t, dict):
            src, dst = t.get("from", t.get("source")), t.get("to", t.get("target"))
            if isinstance(src, str) and isinstance(dst, str):
                when = t.get("when")
                on = t.get("on", t.get(True, "ok"))  # YAML 1.1 reads an `on:` key as True
                edges.append((src, dst, _edge_label(str(on), None if when is None else str(when))))
    start = definition.get("initial", definition.get("start"))
    if not isinstance(start, str):
        start = nodes[0][0] if nodes else ""
    return layout(nodes, edges, start)
