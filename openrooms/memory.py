"""Room memory: key/value entries and conversation threads, both kept in the room's log.

- **Entries** (``memory.x`` in expressions) are set by ``set`` nodes' ``memory:``
  settings (``MEMORY_SET`` events) and folded into :attr:`RoomState.memory`, so guards
  can read them and they survive crashes like the rest of the state.
- **Threads** are agents' conversations: each agent node appends the messages it
  added (``MESSAGES_ADDED``), and the next node on the same thread continues from them.
  They live only in the log, so a long conversation does not make every step's state
  write bigger.

:meth:`RoomMemory.search` is what the ``memory_query`` tool calls: a keyword search now;
anything with the :class:`MemorySearch` shape (an embedding index, say) can replace it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from openrooms.llm.base import Message

__all__ = ["Conversations", "KeywordSearch", "MemorySearch", "RoomMemory"]

_WORD = re.compile(r"\w+", re.UNICODE)
_PREVIEW = 500


class Conversations:
    """A room's conversation threads, as read from its ``MESSAGES_ADDED`` events.

    Kept by the runner while a room runs and extended as events are read, so a long
    room does not re-read its log or re-parse its history on every agent turn.
    """

    def __init__(self) -> None:
        self._dicts: dict[str, list[dict[str, Any]]] = {}
        self._parsed: dict[str, list[Message]] = {}

    def extend(self, thread: str, messages: Iterable[Mapping[str, Any]]) -> None:
        """Append *messages* (OpenAI-shaped dicts) to *thread*."""
        self._dicts.setdefault(thread, []).extend(dict(m) for m in messages)

    def as_dicts(self) -> dict[str, list[dict[str, Any]]]:
        """Every thread's messages (copies of the lists)."""
        return {name: list(messages) for name, messages in self._dicts.items()}

    def messages(self, thread: str) -> tuple[Message, ...]:
        """Thread *thread* as :class:`~openrooms.llm.Message` objects (parsed once each)."""
        dicts = self._dicts.get(thread, [])
        parsed = self._parsed.setdefault(thread, [])
        parsed.extend(Message.from_dict(m) for m in dicts[len(parsed) :])
        return tuple(parsed)


class MemorySearch(Protocol):
    """Ranks a room's memory against a query."""

    def search(self, memory: RoomMemory, query: str, limit: int) -> list[dict[str, Any]]: ...


class KeywordSearch:
    """Scores entries and messages by how many of the query's words they contain."""

    def search(self, memory: RoomMemory, query: str, limit: int) -> list[dict[str, Any]]:
        words = {w.lower() for w in _WORD.findall(query)}
        if not words:
            return []
        hits: list[tuple[float, int, dict[str, Any]]] = []
        order = 0
        for key, value in memory.entries.items():
            text = f"{key} {value if isinstance(value, str) else json.dumps(value)}"
            score = _score(words, text)
            if score:
                hits.append((score, order, {"source": "entry", "key": key, "value": value}))
            order += 1
        for thread, messages in memory.threads().items():
            for i, m in enumerate(messages):
                content = m.get("content")
                if not isinstance(content, str):
                    continue
                score = _score(words, content)
                if score:
                    hit = {
                        "source": "message",
                        "thread": thread,
                        "index": i,
                        "role": m.get("role"),
                        "text": content[:_PREVIEW],
                    }
                    hits.append((score, order, hit))
                order += 1
        hits.sort(key=lambda h: (-h[0], h[1]))
        return [dict(h[2], score=round(h[0], 3)) for h in hits[:limit]]


def _score(words: set[str], text: str) -> float:
    found = {w.lower() for w in _WORD.findall(text)}
    return len(words & found) / len(words)


class RoomMemory:
    """A read-only view of one room's memory, as a node's attempt sees it.

    Args:
        entries: the key/value entries (the room state's ``memory``).
        threads: reads every conversation thread (thread -> messages, oldest first).
        searcher: how :meth:`search` ranks; keyword matching by default.
    """

    def __init__(
        self,
        entries: Mapping[str, Any],
        threads: Callable[[], dict[str, list[dict[str, Any]]]],
        searcher: MemorySearch | None = None,
    ) -> None:
        self.entries = entries
        self._threads = threads
        self._searcher = searcher or KeywordSearch()

    def threads(self) -> dict[str, list[dict[str, Any]]]:
        """Every conversation thread's messages."""
        return self._threads()

    def search(self, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """The *limit* best matches for *query* among entries and messages."""
        return self._searcher.search(self, query, limit)
