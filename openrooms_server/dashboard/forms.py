"""HTML forms generated from JSON schemas: a ``wait`` node's input and a workflow's variables.

A schema of ``type: object`` with ``properties`` becomes one labelled field per property,
its input chosen by the property's type: ``number`` / ``integer`` a number input,
``boolean`` a checkbox, ``string`` a text input (a select when it has an ``enum``),
anything else (objects, arrays, several types) a textarea holding JSON. Any other schema
(or none) becomes one textarea holding the whole value as JSON.

The posted text is converted here, field by field (a field that cannot be converted gets
its message); the value is then checked by the schema itself, and each problem is put next
to the field its path names (the rest go to the top of the form).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from openrooms.errors import InputError, Problem
from openrooms.loading import parse_json

__all__ = [
    "WHOLE",
    "Field",
    "Form",
    "convert",
    "fields_for_schema",
    "fields_for_variables",
    "place_problems",
]

Kind = Literal["number", "integer", "checkbox", "text", "select", "json"]

WHOLE: Final = "data"
"""The name of the one field of a form whose schema is not an object with properties."""
_INTEGER: Final = re.compile(r"[-+]?[0-9]{1,30}")
_NUMBER: Final = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


@attrs.frozen
class Field:
    """One control of a form.

    Attributes:
        name: the property (the input's ``name``).
        kind: which control.
        label: the text of its ``<label>``.
        required: whether the schema requires it.
        description: the schema's ``description``, if any.
        value: the text the control holds (for a checkbox: ``"on"`` when checked).
        options: a select's choices, as JSON texts (their values).
        error: the message shown next to it.
    """

    name: str
    kind: Kind
    label: str
    required: bool = False
    description: str = ""
    value: str = ""
    options: tuple[str, ...] = ()
    error: str = ""


@attrs.frozen
class Form:
    """A form's fields, and the error that belongs to none of them."""

    fields: tuple[Field, ...]
    error: str = ""


def _types(prop: object) -> list[str]:
    if not isinstance(prop, Mapping):
        return []
    declared = prop.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    return []


def _kind(prop: object) -> Kind:
    if isinstance(prop, Mapping) and isinstance(prop.get("enum"), list) and prop["enum"]:
        return "select"
    types = [t for t in _types(prop) if t != "null"]
    if len(types) != 1:
        return "json"
    return {
        "number": "number",
        "integer": "integer",
        "boolean": "checkbox",
        "string": "text",
    }.get(types[0], "json")  # type: ignore[return-value]


def _text(kind: Kind, value: Any) -> str:
    """The text a control of *kind* shows for *value* (a default)."""
    if value is None:
        return ""
    if kind == "checkbox":
        return "on" if value is True else ""
    if kind == "text" and isinstance(value, str):
        return value
    if kind in ("number", "integer") and isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, indent=2 if kind == "json" else None)


def is_object_schema(schema: object) -> bool:
    """Whether *schema* gets one field per property (an object with ``properties``)."""
    return (
        isinstance(schema, Mapping)
        and schema.get("type", "object") == "object"
        and isinstance(schema.get("properties"), Mapping)
        and bool(schema["properties"])
    )


def fields_for_schema(schema: object, defaults: Mapping[str, Any] | None = None) -> list[Field]:
    """The fields of a form for values of *schema*, filled with *defaults*."""
    defaults = defaults or {}
    if not is_object_schema(schema) or not isinstance(schema, Mapping):
        return [Field(WHOLE, "json", "Input (JSON)", required=True)]
    required = schema.get("required")
    needed = set(required) if isinstance(required, list) else set()
    fields = []
    for name, prop in schema["properties"].items():
        kind = _kind(prop)
        options: tuple[str, ...] = ()
        if kind == "select":
            options = tuple(json.dumps(v, ensure_ascii=False) for v in prop["enum"])
        description = prop.get("description") if isinstance(prop, Mapping) else None
        default = defaults.get(name, prop.get("default") if isinstance(prop, Mapping) else None)
        value = _text(kind, default)
        if kind == "select" and default is not None:
            value = json.dumps(default, ensure_ascii=False)
        fields.append(
            Field(
                str(name),
                kind,
                str(name),
                required=name in needed,
                description=str(description or ""),
                value=value,
                options=options,
            )
        )
    return fields


def fields_for_variables(variables: Mapping[str, Any]) -> list[Field]:
    """The fields of a create-room form for a workflow that declares no ``inputs``: one per
    default variable, typed by its default value."""
    fields = []
    for name, value in variables.items():
        kind: Kind
        if isinstance(value, bool):
            kind = "checkbox"
        elif isinstance(value, int):
            kind = "integer"
        elif isinstance(value, float):
            kind = "number"
        elif isinstance(value, str):
            kind = "text"
        else:
            kind = "json"
        fields.append(Field(name, kind, name, value=_text(kind, value)))
    return fields


def convert(fields: Sequence[Field], posted: Mapping[str, str]) -> tuple[Any, list[Field]]:
    """The value the posted form holds, and the fields refilled with what was posted (each
    with its message when its text could not be converted).

    An empty field is left out of the value (the schema says whether it was required); an
    unchecked checkbox is ``false``. A form with the one :data:`WHOLE` field returns its
    JSON as the value.
    """
    value: dict[str, Any] = {}
    out = []
    for f in fields:
        text = posted.get(f.name, "")
        error = ""
        if f.kind == "checkbox":
            value[f.name] = f.name in posted
            out.append(attrs.evolve(f, value="on" if f.name in posted else "", error=""))
            continue
        stripped = text.strip()
        if not stripped:
            out.append(attrs.evolve(f, value=text, error=""))
            continue
        if f.kind == "integer":
            if _INTEGER.fullmatch(stripped):
                value[f.name] = int(stripped)
            else:
                error = f"expected a whole number, got {stripped[:40]!r}"
        elif f.kind == "number":
            if _INTEGER.fullmatch(stripped):
                value[f.name] = int(stripped)
            elif _NUMBER.fullmatch(stripped) and math.isfinite(float(stripped)):
                value[f.name] = float(stripped)
            else:
                error = f"expected a number, got {stripped[:40]!r}"
        elif f.kind == "text":
            value[f.name] = text
        else:  # select (its options are JSON) and json
            try:
                value[f.name] = parse_json(text, source=f.name)
            except InputError as exc:
                error = f"not valid JSON: {exc.message}" + (f" ({exc.where})" if exc.where else "")
        out.append(attrs.evolve(f, value=text, error=error))
    if len(fields) == 1 and fields[0].name == WHOLE and fields[0].kind == "json":
        return value.get(WHOLE), out
    return value, out


def place_problems(
    fields: Sequence[Field], problems: Sequence[Problem], prefix: str
) -> tuple[list[Field], str]:
    """Put each schema problem next to the field its path names (``PREFIX.NAME...``, or a
    missing required property ``'NAME'`` at ``PREFIX``); the others make the form's error."""
    by_name = {f.name: i for i, f in enumerate(fields)}
    errors: dict[int, list[str]] = {}
    rest: list[str] = []
    single = len(fields) == 1 and fields[0].name == WHOLE
    for p in problems:
        index = None
        if single:
            index = 0
        elif p.path.startswith(prefix + "."):
            tail = p.path[len(prefix) + 1 :]
            for name in sorted(by_name, key=len, reverse=True):
                if tail == name or tail.startswith((name + ".", name + "[")):
                    index = by_name[name]
                    break
        elif p.path == prefix:
            m = re.fullmatch(r"missing required (?:property|variable) '(.*)'", p.message)
            if m and m[1] in by_name:
                index = by_name[m[1]]
                errors.setdefault(index, []).append("this field is required")
                continue
        text = p.message + (f" ({p.hint})" if p.hint else "")
        if index is None:
            rest.append(f"{p.path}: {text}" if p.path else text)
        else:
            where = p.path[len(prefix) + 1 :] if p.path.startswith(prefix + ".") else ""
            errors.setdefault(index, []).append(
                f"{where}: {text}" if where and "." in where else text
            )
    out = [
        attrs.evolve(f, error="; ".join(errors[i])) if i in errors else f
        for i, f in enumerate(fields)
    ]
    return out, "; ".join(rest)
