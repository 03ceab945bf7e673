"""Small English helpers for messages: the right article and the right plural."""

from __future__ import annotations

__all__ = ["article", "plural"]

_VOWELS = frozenset("aeiouAEIOU")


def article(word: str) -> str:
    """*word* with ``a`` or ``an`` before it, chosen by its first letter (quotes skipped).

    Example::

        article("'end' node")  # "an 'end' node"
        article("'set' node")  # "a 'set' node"
    """
    first = word.lstrip("'\"`")[:1]
    return f"{'an' if first in _VOWELS else 'a'} {word}"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 transition``, ``2 transitions``; *many* for nouns that do not just add an s."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
