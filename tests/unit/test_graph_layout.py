"""openrooms.graph.layout: the layered layout the dashboard draws, pure and deterministic."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from openrooms.graph import NODE_H, Layout, layout, layout_definition, layout_workflow
from openrooms.loading import parse_yaml
from openrooms.workflow import Workflow

ROOT = Path(__file__).parents[2]


def order() -> Workflow:
    return Workflow.from_yaml((ROOT / "examples" / "order_approval.yaml").read_text())


def by_id(result: Layout) -> dict[str, tuple[int, float, float, float]]:
    return {n.id: (n.layer, n.x, n.y, n.width) for n in result.nodes}


def assert_well_formed(result: Layout) -> None:
    """Boxes inside the picture, none overlapping another in its layer, layers top to
    bottom, every path made of numbers and commands only."""
    rows: dict[int, list[tuple[float, float]]] = {}
    for n in result.nodes:
        assert n.x >= 0 and n.x + n.width <= result.width
        assert n.y >= 0 and n.y + n.height <= result.height
        rows.setdefault(n.layer, []).append((n.x, n.x + n.width))
    for spans in rows.values():
        spans.sort()
        for (_, right), (left, _) in itertools.pairwise(spans):
            assert right < left
    ys = {n.layer: n.y for n in result.nodes}
    assert all(ys[a] < ys[b] for a in ys for b in ys if a < b)
    for e in result.edges:
        assert set(e.d) <= set("MC0123456789.,- ")


def test_the_order_workflow_is_laid_out_in_layers_from_its_start() -> None:
    result = layout_workflow(order())
    layers = {n.id: n.layer for n in result.nodes}
    assert layers["price"] == 0 and layers["check"] == 1 and layers["approval"] == 2
    assert layers["fulfil"] == 3 and layers["done"] == 4  # the longest path: via approval
    assert {layers["rejected"], layers["expired"]} == {3}
    assert_well_formed(result)
    labels = {(e.source, e.target): e.label for e in result.edges}
    assert labels[("approval", "expired")] == "timeout"
    assert labels[("approval", "fulfil")] == "input.approved"
    assert labels[("price", "check")] == ""
    assert not any(e.back for e in result.edges)


def test_the_same_graph_gets_the_same_picture() -> None:
    assert layout_workflow(order()) == layout_workflow(order())


def test_a_loop_goes_back_up_around_the_side() -> None:
    result = layout(
        [("inc", "set"), ("check", "decision"), ("done", "end")],
        [
            ("inc", "check", ""),
            ("check", "inc", "vars.i < 3"),
            ("check", "done", ""),
            ("done", "done", "self"),
        ],
        "inc",
    )
    layers = {n.id: n.layer for n in result.nodes}
    assert layers == {"inc": 0, "check": 1, "done": 2}
    back = {(e.source, e.target) for e in result.edges if e.back}
    assert back == {("check", "inc"), ("done", "done")}
    assert_well_formed(result)
    right = max(n.x + n.width for n in result.nodes)
    assert all(e.label_x > right for e in result.edges if e.back)


def test_long_labels_are_shortened_in_the_box_and_edges_to_unknown_nodes_are_left_out() -> None:
    long = "n" * 80
    result = layout([("a", "set"), (long, "end")], [("a", long, ""), ("a", "ghost", "")], "a")
    box = by_id(result)
    assert len(result.edges) == 1
    node = next(n for n in result.nodes if n.id == long)
    assert node.label.endswith("\u2026") and len(node.label) == 30 and node.id == long
    assert box[long][3] <= 240
    assert_well_formed(result)


def test_a_stored_definition_draws_as_the_built_workflow_does() -> None:
    assert layout_definition(order().to_dict()) == layout_workflow(order())  # as stored
    raw = parse_yaml((ROOT / "examples" / "order_approval.yaml").read_text())
    assert layout_definition(raw) == layout_workflow(order())  # YAML 1.1 reads `on:` as True
    assert layout_definition({"nodes": "nope"}) is None
    assert layout_definition([1, 2]) is None
    odd = layout_definition(
        {"nodes": {"a": {"type": "set"}, "b": 3}, "transitions": [7, {"from": "a", "to": "b"}]}
    )
    assert odd is not None and [n.type for n in odd.nodes] == ["set", "?"]


def test_nodes_nothing_reaches_are_still_drawn() -> None:
    result = layout([("a", "set"), ("b", "set"), ("c", "end")], [("a", "c", "")], "a")
    assert {n.id for n in result.nodes} == {"a", "b", "c"}
    assert_well_formed(result)
    assert result.nodes[0].height == NODE_H


names = st.text(alphabet="abcdef<>&\"'", min_size=1, max_size=12)


@given(
    st.lists(names, min_size=1, max_size=12, unique=True).flatmap(
        lambda ids: st.tuples(
            st.just(ids),
            st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=30),
        )
    )
)
def test_any_graph_is_well_formed_and_deterministic(
    graph: tuple[list[str], list[tuple[str, str]]],
) -> None:
    ids, edges = graph
    nodes = [(i, "set") for i in ids]
    labelled = [(a, b, f"{a}->{b}") for a, b in edges]
    result = layout(nodes, labelled, ids[0])
    assert [n.id for n in result.nodes] == ids
    assert len(result.edges) == len(edges)
    assert_well_formed(result)
    assert layout(nodes, labelled, ids[0]) == result
    for e in result.edges:
        src = next(n for n in result.nodes if n.id == e.source)
        dst = next(n for n in result.nodes if n.id == e.target)
        assert e.back == (dst.layer <= src.layer)
