"""Reading files and text from outside: the one place every input file and string is parsed.

Workflow files, ``--vars-file``, ``--data`` (inline, ``@file`` or ``-``), ``--script`` and
``--config`` all come through here, so each gets the same guarantees:

- at most :data:`MAX_INPUT_BYTES`, checked on the file's size before it is read, and again
  while reading, for pipes and devices;
- strict UTF-8 (a leading UTF-8 byte order mark is allowed); anything else is refused with
  the offset of the first bad byte, and text holding lone surrogates (what Python makes of
  command-line bytes that are not UTF-8) is refused too;
- YAML without anchors, aliases or duplicate keys; JSON without duplicate keys, ``NaN`` or
  ``Infinity``;
- at most :data:`MAX_INPUT_NESTING` levels of lists and mappings, and integers of at most
  :data:`MAX_INT_DIGITS` digits.

Anything else is an :class:`~openrooms.errors.InputError` that names the source and the
place: a line, a byte offset or a JSON path. A file whose name ends in ``.json`` is read
as JSON; any other as YAML (which also reads most JSON). YAML is parsed by libyaml when
PyYAML has it, else by PyYAML's pure-Python parser; the checks are the same.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from pathlib import Path
from typing import IO, Any, Final

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from openrooms.errors import InputError
from openrooms.storable import MAX_DEPTH, MAX_INT_DIGITS

try:
    from yaml._yaml import CParser

    _LIBYAML = True
except ImportError:  # PyYAML without libyaml: the pure-Python parser, slower
    _LIBYAML = False

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_INPUT_NESTING",
    "decode",
    "load_file",
    "parse_json",
    "parse_yaml",
    "read_stream",
    "read_text",
]

MAX_INPUT_BYTES: Final = 2_000_000
MAX_INPUT_NESTING: Final = MAX_DEPTH  # what a room can store (openrooms.storable)

_UTF16_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SAVE_AS_UTF8: Final = "save it as UTF-8"


# --- bytes to text --------------------------------------------------------------------------


def read_text(path: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> str:
    """The text of the file at *path*, checked as described in the module docstring.

    Args:
        path: the file.
        limit: the most bytes the file may hold.

    Returns:
        The decoded text, without a UTF-8 byte order mark.

    Raises:
        FileNotFoundError: there is no such file.
        InputError: it is a directory, cannot be read, is too big or is not UTF-8.
    """
    source = str(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(source, "is a directory, not a file")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise InputError(
                source,
                f"is {info.st_size:,} bytes; the limit is {limit:,}",
                hint="split it, or pass less data",
            )
        with open(path, "rb") as f:
            return read_stream(f, source=source, limit=limit)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InputError(source, f"cannot be read: {exc.strerror or exc}") from exc


def read_stream(stream: IO[bytes], *, source: str, limit: int = MAX_INPUT_BYTES) -> str:
    """Read at most *limit* bytes of *stream* (a file, a pipe, standard input) as text.

    Raises:
        InputError: the stream holds more than *limit* bytes, or is not UTF-8.
    """
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(
            source, f"is more than the limit of {limit:,} bytes", hint="pass less data"
        )
    return decode(data, source=source)


def decode(data: bytes, *, source: str) -> str:
    """Decode *data* as strict UTF-8, dropping a leading byte order mark.

    Raises:
        InputError: the bytes are not UTF-8 text; it names the offset of the first bad byte.
    """
    if data.startswith(_UTF16_BOMS):
        raise InputError(
            source,
            "must be UTF-8 text; it starts with a UTF-16 byte order mark",
            "byte 0 (line 1)",
            _SAVE_AS_UTF8,
        )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    nul = data.find(b"\0", skip)
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = exc.start + skip
        if nul == -1 or bad < nul:
            raise InputError(
                source,
                f"must be UTF-8 text; byte 0x{data[bad]:02x} is not ({exc.reason})",
                _byte_where(data, bad),
                _SAVE_AS_UTF8,
            ) from None
    if nul != -1:  # valid UTF-8, but no text file holds NUL; UTF-16 without a BOM does
        raise InputError(
            source,
            "must be UTF-8 text; it holds a NUL byte (as UTF-16 without a byte order mark does)",
            _byte_where(data, nul),
            _SAVE_AS_UTF8,
        )
    return text


def _byte_where(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"byte {offset} (line {line})"


def _check_text(text: str, source: str, limit: int) -> None:
    if len(text) > limit:
        raise InputError(
            source, f"is {len(text):,} characters; the limit is {limit:,}", hint="pass less data"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: the command line was not UTF-8
        raise InputError(
            source,
            f"must be UTF-8 text; it holds a lone surrogate {text[exc.start]!r} (from bytes "
            "that are not UTF-8)",
            f"character {exc.start} (line {text.count(chr(10), 0, exc.start) + 1})",
        ) from None


def load_file(path: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> Any:
    """Read and parse a file: JSON when its name ends in ``.json``, else YAML.

    Args:
        path: the file.
        limit: the most bytes the file may hold.

    Returns:
        The parsed value (``None`` for an empty YAML file).

    Raises:
        FileNotFoundError: there is no such file.
        InputError: it cannot be read, is too big, is not UTF-8, or does not parse; the
            message names the file and the place.
    """
    text = read_text(path, limit=limit)
    if Path(path).suffix.lower() == ".json":
        return parse_json(text, source=str(path), limit=limit)
    return parse_yaml(text, source=str(path), limit=limit)


# --- YAML -----------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised inside the loader; turned into an InputError with the source's name."""

    def __init__(self, mark: Any, message: str, hint: str = "") -> None:
        super().__init__(mark, message, hint)
        self.mark, self.message, self.hint = mark, message, hint


class _Checks(Composer, SafeConstructor):
    """The checks, in the composer and the constructor: no anchors, aliases, duplicate keys
    or deep nesting. Mixed into a loader that brings a parser and a resolver."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
            raise _Refused(
                event.start_mark,
                f"YAML anchors and aliases ({sign}{event.anchor}) are not allowed",
                "write the value out in full",
            )
        if not isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_INPUT_NESTING:
            raise _Refused(event.start_mark, f"nested deeper than {MAX_INPUT_NESTING} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # PyYAML's, for values like `2001-13-01`
            raise _Refused(node.start_mark, f"cannot read this value: {exc}") from None
        except (TypeError, AttributeError, LookupError):  # PyYAML's, for `!!timestamp abc`
            kind = str(node.tag).rpartition(":")[2]
            raise _Refused(node.start_mark, f"cannot read this value as !!{kind}") from None

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class refuses it below
                    continue
                if first is not key_node:
                    raise _Refused(key_node.start_mark, _duplicate(first, key_node), "keep one")
        return super().construct_mapping(node, deep=deep)


class _PureLoader(_Checks, yaml.SafeLoader):
    """The checks over PyYAML's pure-Python parser, when libyaml is not installed."""

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # checked here too, as the scanner reads far ahead of the composer inside `[[[[...`
        if self.flow_level >= MAX_INPUT_NESTING:
            raise _Refused(self.get_mark(), f"nested deeper than {MAX_INPUT_NESTING} levels")
        super().fetch_flow_collection_start(token_class)


_LOADERS: list[type[_Checks]] = [_PureLoader]

if _LIBYAML:

    class _FastLoader(_Checks, CParser, Resolver):
        """The checks over libyaml's parser: events come from C (several times faster),
        nodes are composed and checked in Python."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

    _LOADERS.insert(0, _FastLoader)


# YAML 1.1 (PyYAML) reads 1e5 as text, where YAML 1.2 and JSON read a number: so does this
_EXPONENT_FLOAT: Final = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _loader in _LOADERS:
    _loader.add_implicit_resolver(  # type: ignore[attr-defined]
        "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789")
    )


def _duplicate(first: Any, again: Any) -> str:
    line, before = again.start_mark.line + 1, first.start_mark.line + 1
    name, old = _key_text(again), _key_text(first)
    if name == old:
        return f"key {name} at line {line} is already defined at line {before}"
    return f"key {name} at line {line} is the same key as {old} at line {before}"


def _key_text(node: Any) -> str:
    return repr(node.value) if isinstance(node, yaml.ScalarNode) else "(a complex key)"


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    digits = len(node.value.lstrip("+-").replace("_", ""))
    if digits > MAX_INT_DIGITS:
        raise _Refused(
            node.start_mark, f"an integer of {digits:,} digits; at most {MAX_INT_DIGITS:,} allowed"
        )
    return loader.construct_yaml_int(node)


for _loader in _LOADERS:
    _loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def parse_yaml(text: str, *, source: str = "<string>", limit: int = MAX_INPUT_BYTES) -> Any:
    """Parse one YAML document strictly (see the module docstring).

    Args:
        text: the document.
        source: what to call it in errors, e.g. a file name.
        limit: the most characters it may hold.

    Returns:
        The parsed value (``None`` for an empty document).

    Raises:
        InputError: it does not parse, or breaks a rule; the message names *source* and a line.
    """
    _check_text(text, source, limit)
    return _parse_yaml_with(_LOADERS[0], text, source)


def _parse_yaml_with(loader_class: Any, text: str, source: str) -> Any:
    loader = None
    try:
        loader = loader_class(text)
        return loader.get_single_data()
    except _Refused as exc:
        raise InputError(source, exc.message, _mark_where(exc.mark), exc.hint) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        if "maximum nesting depth" in problem:  # libyaml's own limit, met while reading ahead
            message = f"nested deeper than {MAX_INPUT_NESTING} levels"
            raise InputError(source, message, _mark_where(mark)) from None
        raise InputError(source, f"not valid YAML: {problem}", _mark_where(mark)) from None
    except yaml.reader.ReaderError:
        found = yaml.reader.Reader.NON_PRINTABLE.search(text)
        at = found.start() if found else 0
        where = f"line {text.count(chr(10), 0, at) + 1}"
        message = f"character {text[at : at + 1]!r} is not allowed in YAML"
        raise InputError(source, message, where, "remove it") from None
    except yaml.YAMLError as exc:
        raise InputError(source, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise InputError(source, f"nested deeper than {MAX_INPUT_NESTING} levels") from None
    finally:
        if loader is not None:
            loader.dispose()


def _mark_where(mark: Any) -> str:
    return "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"


# --- JSON -----------------------------------------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """An object's members as parsed, made into a dict by :func:`_finish` (which has paths)."""

    __slots__ = ()


class _BadNumber(Exception):
    def __init__(self, text: str, message: str, *, syntax: bool = False) -> None:
        super().__init__(text, message, syntax)
        self.text, self.message, self.syntax = text, message, syntax


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _BadNumber(
            text, f"an integer of {digits:,} digits; at most {MAX_INT_DIGITS:,} allowed"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(text, f"the number {text[:40]} is out of range")
    return value


def _parse_constant(text: str) -> Any:
    raise _BadNumber(text, f"not valid JSON: {text} is not a JSON value", syntax=True)


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_Pairs,
    parse_int=_parse_int,
    parse_float=_parse_float,
    parse_constant=_parse_constant,
)


def parse_json(text: str, *, source: str = "<string>", limit: int = MAX_INPUT_BYTES) -> Any:
    """Parse one JSON value strictly (see the module docstring).

    Args:
        text: the JSON text.
        source: what to call it in errors, e.g. a file name or ``--data``.
        limit: the most characters it may hold.

    Returns:
        The parsed value.

    Raises:
        InputError: it does not parse, or breaks a rule; the message names *source* and a
            line or JSON path. When the text is not JSON at all (a syntax error, ``NaN``),
            the error's ``__cause__`` is a :class:`json.JSONDecodeError`.
    """
    _check_text(text, source, limit)
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InputError(source, f"not valid JSON: {exc.msg}", where) from exc
    except _BadNumber as exc:
        found = re.search(rf"(?<![\w.]){re.escape(exc.text)}(?![\w.])", text)
        at = 0 if found is None else found.start()
        where = f"line {text.count(chr(10), 0, at) + 1}"
        if exc.syntax:  # NaN and Infinity: Python's extension, not JSON
            cause = json.JSONDecodeError(exc.message, text, at)
            raise InputError(source, exc.message, where, "use null or a number") from cause
        raise InputError(source, exc.message, where) from None
    except RecursionError:
        raise InputError(source, f"nested deeper than {MAX_INPUT_NESTING} levels") from None
    return _finish(value, source, text)


def _finish(value: Any, source: str, text: str) -> Any:
    """Turn every ``_Pairs`` into a dict, refusing duplicate keys and deep nesting."""
    if not isinstance(value, list):
        return value
    root = [value]
    # (container, slot, depth, path as nested (parent, key) pairs); iterative, so any depth
    todo: list[tuple[Any, Any, int, Any]] = [(root, 0, 1, None)]
    while todo:
        holder, slot, depth, path = todo.pop()
        item = holder[slot]
        if depth > MAX_INPUT_NESTING:
            raise InputError(
                source, f"nested deeper than {MAX_INPUT_NESTING} levels", _json_path(path)
            )
        if type(item) is _Pairs:
            members: dict[str, Any] = {}
            for key, member in item:
                if key in members:
                    where, message = _json_path(path), f"key {key!r} is defined twice"
                    found = _first_duplicate(text)
                    if found is not None:
                        where, message = found
                    raise InputError(source, message, where, "keep one")
                members[key] = member
            holder[slot] = members
            todo.extend(
                (members, k, depth + 1, (path, k))
                for k, v in members.items()
                if isinstance(v, list)
            )
        else:
            todo.extend(
                (item, i, depth + 1, (path, i)) for i, v in enumerate(item) if isinstance(v, list)
            )
    return root[0]


_JSON_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^{}\[\],:"\s]+')


def _first_duplicate(text: str) -> tuple[str, str] | None:
    """Where the first key given twice in one object is, and a message naming both lines.

    Only called once a duplicate is known: *text* is valid JSON, so tokens are enough.
    """
    frames: list[list[Any]] = []  # [keys seen -> offset (None in an array), key or index, path]
    expect_key = False
    for m in _JSON_TOKEN.finditer(text):
        piece = m.group()
        top = frames[-1] if frames else None
        if piece in ("{", "["):
            path = None if top is None else (top[2], top[1])
            frames.append([{} if piece == "{" else None, 0, path])
            expect_key = piece == "{"
        elif piece in ("}", "]"):
            frames.pop()
        elif piece == "," and top is not None:
            if top[0] is None:
                top[1] += 1
            expect_key = top[0] is not None
        elif piece == ":":
            expect_key = False
        elif expect_key and top is not None and top[0] is not None:
            key, seen = json.loads(piece), top[0]
            if key in seen:
                line, before = (text.count("\n", 0, at) + 1 for at in (m.start(), seen[key]))
                message = f"key {key!r} at line {line} is already defined at line {before}"
                return _json_path(top[2]), message
            seen[key], top[1] = m.start(), key
    return None


_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _json_path(path: Any) -> str:
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    if len(keys) > 12:  # a path to the 101st level of nesting says little more than this
        return _json_path_text(keys[:4]) + "..." + _json_path_text(keys[-4:])[1:]
    return _json_path_text(keys)


def _json_path_text(keys: list[Any]) -> str:
    out = "$"
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _NAME.fullmatch(key):
            out += f".{key}"
        else:
            out += f"[{json.dumps(key, ensure_ascii=False)}]"
    return out
