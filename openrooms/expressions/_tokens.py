"""The tokenizer: expression text to a list of tokens, with static limits checked."""

from __future__ import annotations

import math
import re
from typing import Any, Final

from openrooms.errors import ExpressionError
from openrooms.expressions._limits import _MAX_INT_DIGITS, MAX_INT_BITS, MAX_TOKENS

_TOKEN: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|//|==|!=|<=|>=|[-+*/%<>()\[\]{},.:])
    """,
    re.VERBOSE,
)

# what the other modules of the package import from this one
__all__ = [
    "_CONSTANTS",
    "_KEYWORDS",
    "_Tok",
    "_tokenize",
]
_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "0": "\0",
    "/": "/",
    "b": "\b",
    "f": "\f",
}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "if", "else"})
_CONSTANTS: Final = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}


class _Tok:
    __slots__ = ("kind", "pos", "text", "value")

    def __init__(self, kind: str, text: str, pos: int, value: Any = None) -> None:
        self.kind, self.text, self.pos, self.value = kind, text, pos, value


def _unescape(body: str, source: str, pos: int) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u":
            digits = body[i + 2 : i + 6]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise ExpressionError(source, "bad \\u escape in string", pos + i)
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        if nxt not in _ESCAPES:
            raise ExpressionError(source, f"unknown escape \\{nxt} in string", pos + i)
        out.append(_ESCAPES[nxt])
        i += 2
    text = "".join(out)
    if not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text):
        # a pair of \u escapes is one character (as in JSON); a lone half is not text
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        if "\ufffd" in text and "\ufffd" not in body:
            raise ExpressionError(
                source, "a \\u escape makes a lone surrogate, which is not valid text", pos
            )
    return text


def _tokenize(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    n = len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "'\"":
                raise ExpressionError(source, "unterminated string", pos)
            raise ExpressionError(source, f"unexpected character {ch!r}", pos)
        kind = m.lastgroup
        text = m.group()
        if kind == "number":
            is_float = any(c in text for c in ".eE")
            # int() of more than 4300 digits raises ValueError; anything near that is over the
            # bit limit anyway, so refuse by length first
            if not is_float and len(text.lstrip("0")) > _MAX_INT_DIGITS:
                raise ExpressionError(source, "number too large", pos)
            value: Any = float(text) if is_float else int(text)
            if (isinstance(value, float) and not math.isfinite(value)) or (
                isinstance(value, int) and value.bit_length() > MAX_INT_BITS
            ):
                raise ExpressionError(source, "number too large", pos)
            tokens.append(_Tok("number", text, pos, value))
        elif kind == "string":
            tokens.append(_Tok("string", text, pos, _unescape(text[1:-1], source, pos + 1)))
        elif kind == "name":
            tokens.append(_Tok("kw" if text in _KEYWORDS else "name", text, pos))
        elif kind == "op":
            tokens.append(_Tok("op", text, pos))
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(source, f"more than {MAX_TOKENS} tokens", pos)
        pos = m.end()
    tokens.append(_Tok("end", "", n))
    return tokens
