"""A small JSON Schema validator: the keywords workflows need, with paths in every problem."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Final

from openrooms.errors import Problem, SchemaValidationError

__all__ = ["check_schema", "schema_problems", "validate"]

_TYPES: Final = ("object", "array", "string", "integer", "number", "boolean", "null")
_IGNORED: Final = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "format"}
)
_KNOWN: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
    }
)
MAX_PATTERN_LENGTH: Final = 1_000
MAX_SCHEMA_DEPTH: Final = 64


def _show(value: object) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_type(value: object, name: str) -> bool:
    actual = _type_name(value)
    return actual == name or (name == "number" and actual == "integer")


def check_schema(schema: object, path: str = "schema", _depth: int = 0) -> list[Problem]:
    """Problems with *schema* itself: unsupported keywords, wrong keyword values."""
    if isinstance(schema, bool):
        return []
    if _depth > MAX_SCHEMA_DEPTH:
        return [Problem(path, f"schema nested more than {MAX_SCHEMA_DEPTH} levels deep")]
    if not isinstance(schema, Mapping):
        return [Problem(path, f"a schema must be a mapping, got {_type_name(schema)}")]
    problems: list[Problem] = []
    for key, value in schema.items():
        where = f"{path}.{key}"
        if key in _IGNORED:
            continue
        if key not in _KNOWN:
            problems.append(Problem(where, f"unsupported keyword {key!r}"))
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            for n in names:
                if n not in _TYPES:
                    problems.append(
                        Problem(where, f"unknown type {n!r}", f"use one of {', '.join(_TYPES)}")
                    )
        elif key in ("properties",):
            if not isinstance(value, Mapping):
                problems.append(Problem(where, "expected a mapping of property schemas"))
            else:
                for name, sub in value.items():
                    problems.extend(check_schema(sub, f"{where}.{name}", _depth + 1))
        elif key in ("items", "additionalProperties", "not"):
            problems.extend(check_schema(value, where, _depth + 1))
        elif key in ("anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not value:
                problems.append(Problem(where, "expected a non-empty list of schemas"))
            else:
                for i, sub in enumerate(value):
                    problems.extend(check_schema(sub, f"{where}[{i}]", _depth + 1))
        elif key == "required":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(Problem(where, "expected a list of property names"))
        elif key == "enum":
            if not isinstance(value, list):
                problems.append(Problem(where, "expected a list of values"))
        elif key == "pattern":
            if not isinstance(value, str):
                problems.append(Problem(where, "expected a regular expression string"))
            elif len(value) > MAX_PATTERN_LENGTH:
                problems.append(Problem(where, f"pattern longer than {MAX_PATTERN_LENGTH}"))
            else:
                try:
                    re.compile(value)
                except re.error as exc:
                    problems.append(Problem(where, f"invalid pattern: {exc}"))
        elif key in ("minItems", "maxItems", "minLength", "maxLength"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(Problem(where, "expected a whole number, 0 or more"))
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(Problem(where, "expected a number"))
            elif key == "multipleOf" and value <= 0:
                problems.append(Problem(where, "expected a number above 0"))
        elif key == "uniqueItems" and not isinstance(value, bool):
            problems.append(Problem(where, "expected true or false"))
    return problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def schema_problems(
    value: object, schema: Mapping[str, Any] | bool, path: str = ""
) -> list[Problem]:
    """Every way *value* breaks *schema*, each at its path (``input.items[2].name``)."""
    if schema is True:
        return []
    if schema is False:
        return [Problem(path, "no value is allowed here")]
    problems: list[Problem] = []
    add = problems.append
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, n) for n in names):
            add(
                Problem(
                    path, f"expected {' or '.join(names)}, got {_type_name(value)} {_show(value)}"
                )
            )
            return problems
    if "enum" in schema and not any(_equal(value, v) for v in schema["enum"]):
        add(Problem(path, f"{_show(value)} is not one of {_show(schema['enum'])}"))
    if "const" in schema and not _equal(value, schema["const"]):
        add(Problem(path, f"expected {_show(schema['const'])}, got {_show(value)}"))
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                add(Problem(path, f"missing required property {name!r}"))
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                problems.extend(schema_problems(item, props[key], _join(path, str(key))))
            elif extra is False:
                add(
                    Problem(
                        _join(path, str(key)),
                        "unexpected property",
                        f"allowed: {', '.join(props) or 'none'}",
                    )
                )
            elif isinstance(extra, Mapping):
                problems.extend(schema_problems(item, extra, _join(path, str(key))))
    if isinstance(value, list | tuple):
        if "minItems" in schema and len(value) < schema["minItems"]:
            add(Problem(path, f"expected at least {schema['minItems']} items, got {len(value)}"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            add(Problem(path, f"expected at most {schema['maxItems']} items, got {len(value)}"))
        if schema.get("uniqueItems"):
            seen: set[str] = set()
            for item in value:
                key = json.dumps(_canonical(item), sort_keys=True, default=repr)
                if key in seen:
                    add(Problem(path, f"items must be unique; {_show(item)} repeats"))
                    break
                seen.add(key)
        items = schema.get("items")
        if items is not None:
            for i, item in enumerate(value):
                problems.extend(schema_problems(item, items, f"{path}[{i}]"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            add(Problem(path, f"expected at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            add(Problem(path, f"expected at most {schema['maxLength']} characters"))
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            add(Problem(path, f"{_show(value)} does not match {schema['pattern']!r}"))
    if _type_name(value) in ("integer", "number"):
        assert isinstance(value, int | float)
        for key, word in (
            ("minimum", "at least"),
            ("maximum", "at most"),
            ("exclusiveMinimum", "above"),
            ("exclusiveMaximum", "below"),
        ):
            if key in schema and not _within(value, key, schema[key]):
                add(Problem(path, f"expected a number {word} {schema[key]}, got {value}"))
        if "multipleOf" in schema and not _is_multiple(value, schema["multipleOf"]):
            add(Problem(path, f"expected a multiple of {schema['multipleOf']}, got {value}"))
    for sub in schema.get("allOf", ()):
        problems.extend(schema_problems(value, sub, path))
    if "anyOf" in schema and not any(not schema_problems(value, s, path) for s in schema["anyOf"]):
        add(Problem(path, f"{_show(value)} matches none of the allowed shapes (anyOf)"))
    if "oneOf" in schema:
        matches = sum(1 for s in schema["oneOf"] if not schema_problems(value, s, path))
        if matches != 1:
            add(
                Problem(
                    path, f"{_show(value)} matches {matches} of the oneOf shapes, not exactly 1"
                )
            )
    if "not" in schema and not schema_problems(value, schema["not"], path):
        add(Problem(path, f"{_show(value)} matches a shape that is not allowed (not)"))
    return problems


def _within(value: float, key: str, bound: float) -> bool:
    if key == "minimum":
        return value >= bound
    if key == "maximum":
        return value <= bound
    if key == "exclusiveMinimum":
        return value > bound
    return value < bound


def _is_multiple(value: float, step: float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    if isinstance(value, float) and not math.isfinite(value):
        return False
    try:
        ratio = value / step
    except OverflowError:
        ratio = math.inf
    if math.isfinite(ratio):
        return math.isclose(ratio, round(ratio), rel_tol=1e-9, abs_tol=1e-9)
    # the ratio is too large for a float: compare exactly, floats read as the decimals they print
    return (_exact(value) / _exact(step)).denominator == 1


def _exact(x: float) -> Fraction:
    return Fraction(repr(x)) if isinstance(x, float) else Fraction(x)


def _equal(a: object, b: object) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1, at any depth."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _canonical(value: object) -> object:
    """A form whose JSON is equal for JSON-equal values (whole floats written as integers)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def validate(value: object, schema: Mapping[str, Any], *, what: str = "value") -> None:
    """Check *value* against *schema*.

    Raises:
        SchemaValidationError: listing every problem, with paths under *what*.
    """
    problems = schema_problems(value, schema, what)
    if problems:
        raise SchemaValidationError(what, problems)
