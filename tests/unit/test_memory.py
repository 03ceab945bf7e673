"""Room memory: entries set by nodes, read by guards and templates, searched by a tool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openrooms import EventType, RoomStatus, Runtime, engine, serde
from openrooms.memory import KeywordSearch, RoomMemory
from tests.conftest import BACKENDS, make_store


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    store = make_store(request.param, tmp_path)
    runtime = Runtime(store, store)
    yield runtime
    runtime.close()


REMEMBER = """
id: remember
variables: {customer: Ada, tier: gold}
nodes:
  save:
    type: set
    memory: {customer: "{{ vars.customer }}", note: "prefers email about invoices"}
  check:
    type: decision
  recall:
    type: tool
    tool: memory_query
    args: {query: "email invoices"}
    output: hits
  greet:
    type: set
    assign: {greeting: "Hello {{ memory.customer }}"}
  forget:
    type: set
    memory: {note: null}
  done: {type: end}
transitions:
  - {from: save, to: check}
  - {from: check, to: recall, when: "memory.customer == vars.customer"}
  - {from: check, to: done}
  - {from: recall, to: greet}
  - {from: greet, to: forget}
  - {from: forget, to: done}
"""


def test_entries_are_saved_read_by_guards_and_templates_searched_and_deleted(
    rt: Runtime,
) -> None:
    wf = serde.workflow_from_text(REMEMBER)
    state = rt.run(rt.create_room(wf).id)
    assert state.status is RoomStatus.COMPLETED
    assert state.variables["greeting"] == "Hello Ada"
    hits = state.variables["hits"]
    assert hits[0] == {"source": "entry", "key": "note", "value": hits[0]["value"], "score": 1.0}
    assert "email" in hits[0]["value"]
    assert state.memory == {"customer": "Ada"}  # the note was deleted
    sets = rt.events(state.id, types=[EventType.MEMORY_SET])
    assert [e.data["key"] for e in sets] == ["customer", "note", "note"]
    assert engine.fold(rt.events(state.id)) == state


def test_keyword_search_ranks_by_share_of_query_words_and_reads_threads() -> None:
    threads: dict[str, list[dict[str, Any]]] = {
        "helper": [
            {"role": "user", "content": "my invoice is wrong"},
            {"role": "assistant", "content": "I will fix the invoice amount today"},
            {"role": "assistant", "content": None},
        ]
    }
    memory = RoomMemory({"plan": "fix amount", "other": 3}, lambda: threads)
    hits = memory.search("invoice amount", limit=10)
    assert [h.get("key") or h.get("index") for h in hits] == [1, "plan", 0]
    assert [h["score"] for h in hits] == [1.0, 0.5, 0.5]
    assert memory.search("", limit=3) == []
    assert KeywordSearch().search(memory, "nothing matches", 5) == []
