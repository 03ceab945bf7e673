"""Text from rooms made safe to print on a terminal.

Prompts, reasons and error messages hold values from outside (variables, input, tool and
model output). A terminal parses control characters in what it prints: an escape sequence
in a value could clear the screen, rewrite earlier lines, retitle the window or plant a
link, and bidirectional-override characters reorder what is shown. :func:`printable`
writes those characters as visible escapes instead, as ``repr`` would.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["printable"]

# C0 controls but tab and newline, DEL, C1 controls, and the bidi embedding, override and
# isolate characters
_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """*text* with every character a terminal would act on, other than tab and newline,
    written as a ``\\xNN`` or ``\\uNNNN`` escape.

    Returns:
        The text to print; ordinary text comes back unchanged.
    """
    return _UNSAFE.sub(_escape, text)
