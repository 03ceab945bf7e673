"""Small English helpers for messages: the right article and plural, a "did you mean"
hint, a value's type named for the reader of the message, and what a variable name is."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Literal

__all__ = [
    "VARIABLE_NAME_HINT",
    "article",
    "closest",
    "did_you_mean",
    "is_variable_name",
    "plural",
    "type_name",
]

VARIABLE_NAME_HINT: Final = "use letters, digits and underscores, not starting with a digit or _"

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


def closest(word: object, options: Iterable[str]) -> str | None:
    """The option *word* is most likely a typo of, or None when none is close."""
    import difflib  # only when something is misspelt: keep it out of import time

    found = difflib.get_close_matches(str(word), list(options), n=1)
    return found[0] if found else None


def did_you_mean(word: object, options: Iterable[str], otherwise: str = "") -> str:
    """``did you mean 'x'?`` for the option closest to *word*, else *otherwise*."""
    near = closest(word, options)
    return f"did you mean {near!r}?" if near is not None else otherwise


_JSON_NAMES: Final[Mapping[type, str]] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
_WORDS: Final[Mapping[str, Mapping[str, str]]] = {
    "schema": {},
    "expression": {"integer": "number", "array": "list"},
    "file": {
        "null": "nothing",
        "boolean": "a boolean",
        "integer": "a number",
        "number": "a number",
        "string": "a string",
        "array": "a list",
        "object": "a mapping",
    },
}


def type_name(value: object, words: Literal["schema", "expression", "file"] = "schema") -> str:
    """The type of *value* in the words of the message's reader.

    Args:
        value: any value; one outside JSON is named by its Python type.
        words: ``schema``: JSON Schema's names (``integer``, ``array``, ``object``...);
            ``expression``: the expression language's (``number``, ``list``, ``object``);
            ``file``: a workflow file's, with an article (``a mapping``, ``a list``,
            ``nothing``), for exactly the types YAML and JSON decode to.
    """
    name = _JSON_NAMES.get(type(value))
    if name is None and words != "file":  # subclasses, tuples and other mappings
        if isinstance(value, bool):
            name = "boolean"
        elif isinstance(value, int):
            name = "integer"
        elif isinstance(value, float):
            name = "number"
        elif isinstance(value, str):
            name = "string"
        elif isinstance(value, list | tuple):
            name = "array"
        elif isinstance(value, Mapping):
            name = "object"
    if name is None:
        return type(value).__name__
    return _WORDS[words].get(name, name)


def is_variable_name(name: object) -> bool:
    """Whether *name* can name a variable: an identifier not starting with ``_``."""
    return isinstance(name, str) and name.isidentifier() and not name.startswith("_")
