"""JSON Schema (Draft 2020-12) through ``jsonschema``, with a path and a hint in every problem.

A schema a workflow or a tool declares is checked once, by :func:`check_schema`: a
structural pass (nesting depth, unknown keywords with a "did you mean", references
that stay inside the schema, patterns that compile) and then the Draft 2020-12
meta-schema, each problem at the path of the bad keyword. :func:`compile_schema` turns
it into a :class:`Schema` that checks values many times without re-reading it.

Patterns (``pattern``, ``patternProperties``) run on the ``regex`` engine with a time
budget of :data:`PATTERN_BUDGET_S` per validation: a pattern that backtracks without
end (``^(a|a)*$``) stops there with :class:`~openrooms.errors.PatternTimeoutError`
instead of holding the process. ``multipleOf`` allows float rounding (0.3 is a multiple
of 0.1) and ``uniqueItems`` is checked in linear time.

``jsonschema`` and ``regex`` are imported on first use, so ``import openrooms`` stays light.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from openrooms._wording import closest, did_you_mean, type_name
from openrooms.errors import PatternTimeoutError, Problem, SchemaValidationError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_SCHEMA_DEPTH",
    "PATTERN_BUDGET_S",
    "Schema",
    "check_schema",
    "compile_schema",
    "schema_problems",
    "validate",
]

MAX_PATTERN_LENGTH: Final = 1_000
MAX_PROBLEMS: Final = 50
"""Problems reported for one value at most; the rest are counted, not listed."""
MAX_SCHEMA_DEPTH: Final = 64
PATTERN_BUDGET_S: Final = 0.5
"""Seconds all pattern matches of one validation may take together."""

DRAFT: Final = "https://json-schema.org/draft/2020-12/schema"
_TYPES: Final = ("object", "array", "string", "integer", "number", "boolean", "null")

# Draft 2020-12 keywords, by what their value is
_ONE_SCHEMA: Final = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_NAMED_SCHEMAS: Final = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)
_LISTED_SCHEMAS: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_VALUES: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxContains",
        "minContains",
        "maxProperties",
        "minProperties",
        "required",
        "dependentRequired",
        "format",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentEncoding",
        "contentMediaType",
        "$schema",
        "$id",
        "$ref",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "$comment",
    }
)
_KNOWN: Final = sorted(_ONE_SCHEMA | _NAMED_SCHEMAS | _LISTED_SCHEMAS | _VALUES)
_COUNTS: Final = frozenset(
    {
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "minContains",
        "maxContains",
    }
)
_BOUNDS: Final = {
    "minimum": "at least",
    "maximum": "at most",
    "exclusiveMinimum": "above",
    "exclusiveMaximum": "below",
}


# --- values in messages -----------------------------------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, str) and len(value) > 40:
        value = value[:40]  # the start is all a message shows
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (RecursionError, ValueError):
        return f"<{type_name(value)}>"
    return text if len(text) <= 40 else text[:37] + "..."


def _join(path: str, parts: Sequence[str | int]) -> str:
    for part in parts:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


# --- checking a schema ------------------------------------------------------------------------


def check_schema(schema: object, path: str = "schema") -> list[Problem]:
    """Problems with *schema* itself, each at the path of the bad keyword under *path*.

    Args:
        schema: a JSON Schema (Draft 2020-12): a mapping, or true/false.
        path: where the schema sits, e.g. ``nodes.approval.schema``.

    Returns:
        every problem found (empty when the schema is usable): unknown keywords, values
        the Draft 2020-12 meta-schema refuses, patterns that do not compile, references
        outside the schema or that lead nowhere, nesting deeper than
        :data:`MAX_SCHEMA_DEPTH`.
    """
    walk = _Walk(path)
    walk.schema(schema, path, 0, root=True)
    problems = walk.problems
    if walk.too_deep:
        return problems
    seen = {(p.path, p.message) for p in problems}
    for problem in _meta_problems(schema, path):
        if (problem.path, problem.message) not in seen:
            seen.add((problem.path, problem.message))
            problems.append(problem)
    if not problems and walk.refs:
        problems.extend(_unresolved(schema, walk.refs))
    return problems


class _Walk:
    """The structural pass: what the meta-schema allows but a workflow should not hold."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.refs: list[tuple[str, str]] = []
        self.too_deep = False
        self.has_patterns = False
        self.unevaluated: list[str] = []

    def add(self, path: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(path, message, hint))

    def schema(self, schema: object, path: str, depth: int, *, root: bool = False) -> None:
        if isinstance(schema, bool):
            return
        if depth > MAX_SCHEMA_DEPTH:
            self.too_deep = True
            self.add(path, f"schema nested more than {MAX_SCHEMA_DEPTH} levels deep")
            return
        if not isinstance(schema, Mapping):
            self.add(path, f"a schema must be a mapping, got {type_name(schema)}", "or true/false")
            return
        for key, value in schema.items():
            where = f"{path}.{key}"
            if key not in _VALUES and key not in _ONE_SCHEMA | _NAMED_SCHEMAS | _LISTED_SCHEMAS:
                self.add(
                    where,
                    f"unsupported keyword {key!r}",
                    did_you_mean(key, _KNOWN),
                )
            elif key in _ONE_SCHEMA:
                if key == "unevaluatedProperties":
                    self.unevaluated.append(where)
                self.schema(value, where, depth + 1)
            elif key in _NAMED_SCHEMAS and isinstance(value, Mapping):
                for name, sub in value.items():
                    if key == "patternProperties":
                        self.has_patterns = True
                        self.pattern(name, f"{where}.{name}")
                    self.schema(sub, f"{where}.{name}", depth + 1)
            elif key in _LISTED_SCHEMAS and isinstance(value, list):
                for i, sub in enumerate(value):
                    self.schema(sub, f"{where}[{i}]", depth + 1)
            elif key == "pattern" and isinstance(value, str):
                self.pattern(value, where)
            elif key in ("$ref", "$dynamicRef") and isinstance(value, str):
                if value.startswith("#"):
                    self.refs.append((where, value))
                else:
                    self.add(
                        where,
                        f"reference {value!r} leaves this schema",
                        "refer only to parts of this schema, e.g. '#/$defs/name'",
                    )
            elif key == "$schema" and (not root or str(value).rstrip("#") != DRAFT):
                self.add(
                    where,
                    f"unsupported $schema {value!r}: schemas here are Draft 2020-12"
                    if root
                    else "$schema inside a schema",
                    f"use {DRAFT!r} at the top, or leave it out",
                )
            elif key == "$id" and not root:
                self.add(
                    where,
                    "$id inside a schema",
                    "refer to parts of this schema with '#/$defs/name' instead",
                )
        if root and self.has_patterns:
            for where in self.unevaluated:
                self.add(
                    where,
                    "unevaluatedProperties cannot be combined with patternProperties here",
                    "use additionalProperties",
                )

    def pattern(self, pattern: str, where: str) -> None:
        if len(pattern) > MAX_PATTERN_LENGTH:
            self.add(where, f"pattern longer than {MAX_PATTERN_LENGTH} characters")
            return
        import regex

        try:
            _compiled_pattern(pattern)
        except regex.error as exc:
            self.add(where, f"invalid pattern: {exc}")


def _meta_problems(schema: object, path: str) -> list[Problem]:
    """Problems the Draft 2020-12 meta-schema finds, each at the keyword it is about."""
    problems = []
    try:
        errors = list(_meta_validator().iter_errors(schema))
    except RecursionError:
        return [Problem(path, "schema nested too deeply to check")]
    for error in errors:
        where, keyword = _locate(schema, list(error.absolute_path))
        problems.append(
            Problem(_join(path, where), *_keyword_message(keyword, error.instance, error.message))
        )
    return problems


@functools.cache
def _meta_validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _locate(schema: object, parts: list[str | int]) -> tuple[list[str | int], str | None]:
    """The path parts, and the keyword the last part belongs to (None: a schema position)."""
    expect = "schema"
    keyword: str | None = None
    for n, part in enumerate(parts):
        if expect == "value":
            return parts[:n], keyword  # inside a keyword's value: report the keyword
        if expect == "schema":
            keyword = str(part)
            if part in _ONE_SCHEMA:
                expect = "schema"
            elif part in _NAMED_SCHEMAS or part in _LISTED_SCHEMAS:
                expect = "member"
            else:
                expect = "value"
        elif expect == "member":
            expect, keyword = "schema", None
    if expect == "schema":
        keyword = None  # the path ends where a schema belongs
    return parts, keyword


def _keyword_message(keyword: str | None, value: object, fallback: str) -> tuple[str, str]:
    """Our message (and hint) for a keyword whose *value* the meta-schema refuses."""
    if keyword is None:
        return f"a schema must be a mapping, got {type_name(value)}", "or true/false"
    if keyword == "type":
        names = value if isinstance(value, list) else [value]
        for n in names:
            if n not in _TYPES:
                return f"unknown type {n!r}", f"use one of {', '.join(_TYPES)}"
        return "expected a type name or a list of distinct type names", ""
    if keyword in ("properties", "patternProperties"):
        return "expected a mapping of property schemas", ""
    if keyword in _NAMED_SCHEMAS:
        return "expected a mapping of names to schemas", ""
    if keyword in _LISTED_SCHEMAS:
        return "expected a non-empty list of schemas", ""
    if keyword == "required":
        return "expected a list of property names, each once", ""
    if keyword == "enum":
        return "expected a list of values", ""
    if keyword == "pattern":
        return "expected a regular expression string", ""
    if keyword in _COUNTS:
        return "expected a whole number, 0 or more", ""
    if keyword in _BOUNDS:
        return "expected a number", ""
    if keyword == "multipleOf":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return "expected a number above 0", ""
        return "expected a number", ""
    if keyword in ("uniqueItems", "deprecated", "readOnly", "writeOnly"):
        return "expected true or false", ""
    if keyword == "dependentRequired":
        return "expected a mapping of property names to lists of property names", ""
    text = fallback if len(fallback) <= 200 else fallback[:197] + "..."
    return text, ""


def _unresolved(schema: object, refs: list[tuple[str, str]]) -> list[Problem]:
    """Problems for ``$ref`` values that point at nothing in *schema*."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    base = "urn:openrooms:schema"
    resource = DRAFT202012.create_resource(schema)
    uri = resource.id() or base
    resolver = Registry().with_resource(uri, resource).resolver(base_uri=uri)
    problems = []
    for where, ref in refs:
        try:
            resolver.lookup(ref)
        except Unresolvable:
            problems.append(
                Problem(where, f"reference {ref!r} points at nothing in this schema", "")
            )
    return problems


# --- checking values --------------------------------------------------------------------------


class _Budget:
    """The time one validation's patterns may take, and whether one has run out of it."""

    __slots__ = ("ends", "spent")

    def __init__(self, ends: float) -> None:
        self.ends, self.spent = ends, False


_deadline: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "openrooms_schema_deadline", default=None
)


class _Detail(Exception):
    """Carried as a jsonschema error's ``cause``: our hint, and whether a pattern timed out."""

    def __init__(self, hint: str = "", *, timed_out: bool = False) -> None:
        super().__init__(hint)
        self.hint, self.timed_out = hint, timed_out


@functools.lru_cache(maxsize=512)
def _compiled_pattern(pattern: str) -> Any:
    import regex

    return regex.compile(pattern)


def _search(pattern: str, text: str) -> bool | None:
    """Whether *pattern* matches somewhere in *text*; None when the time budget ran out on
    it. Once one pattern has run out, the others are not run (True: the value is refused
    already, and they are not to blame)."""
    budget = _deadline.get()
    remaining = PATTERN_BUDGET_S if budget is None else budget.ends - time.monotonic()
    if budget is not None and budget.spent:
        return True
    try:
        if remaining > 0:
            return _compiled_pattern(pattern).search(text, timeout=remaining) is not None
    except TimeoutError:
        pass
    if budget is not None:
        budget.spent = True
    return None


def _too_long(pattern: str, text: str) -> Any:
    from jsonschema.exceptions import ValidationError

    return ValidationError(
        f"pattern {pattern!r} took too long on {_show(text)} (over {PATTERN_BUDGET_S:g} s)",
        cause=_Detail(
            "simplify the pattern: nested or overlapping repetition like (a|a)* backtracks "
            "without end",
            timed_out=True,
        ),
    )


def _kw_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if isinstance(instance, str):
        found = _search(pattern, instance)
        if found is None:
            yield _too_long(pattern, instance)
        elif not found:
            yield ValidationError(f"{_show(instance)} does not match {pattern!r}")


def _kw_pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not isinstance(instance, Mapping):
        return
    for pattern, sub in patterns.items():
        for key, value in instance.items():
            found = _search(pattern, key)
            if found is None:
                error = _too_long(pattern, key)
                error.path.append(key)
                yield error
            elif found:
                yield from validator.descend(value, sub, path=key, schema_path=pattern)


def _kw_additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not isinstance(instance, Mapping):
        return
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for key in instance:
        if key in properties:
            continue
        matched = False
        for pattern in patterns:
            found = _search(pattern, key)
            if found is None:
                error = _too_long(pattern, key)
                error.path.append(key)
                yield error
            if found is not False:
                matched = True
                break
        if matched:
            continue
        if extra is False:
            near = closest(key, properties)
            allowed = f"allowed: {', '.join(properties) or 'none'}"
            hint = f"did you mean {near!r}? {allowed}" if near is not None else allowed
            yield ValidationError("unexpected property", path=[key], cause=_Detail(hint))
        else:
            yield from validator.descend(instance[key], extra, path=key)


def _kw_required(validator: Any, required: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if isinstance(instance, Mapping):
        for name in required:
            if name not in instance:
                yield ValidationError(f"missing required property {name!r}")


def _kw_unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if not unique or not isinstance(instance, list | tuple):
        return
    seen: set[str] = set()
    for item in instance:
        key = json.dumps(_canonical(item), sort_keys=True, default=repr)
        if key in seen:
            yield ValidationError(f"items must be unique; {_show(item)} repeats")
            return
        seen.add(key)


def _kw_multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    number = isinstance(instance, int | float) and not isinstance(instance, bool)
    if number and not _is_multiple(instance, step):
        yield ValidationError(f"expected a multiple of {step}, got {instance}")


def _kw_one_of(validator: Any, shapes: Any, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    matches = 0
    for i, sub in enumerate(shapes):
        if next(iter(validator.descend(instance, sub, schema_path=i)), None) is None:
            matches += 1
    if matches != 1:
        yield ValidationError(
            f"{_show(instance)} matches {matches} of the oneOf shapes, not exactly 1"
        )


@functools.cache
def _validator_class() -> Any:
    from jsonschema import Draft202012Validator, validators

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {
            "array": lambda _, value: isinstance(value, list | tuple),
            "object": lambda _, value: isinstance(value, Mapping),
        }
    )
    return validators.extend(
        Draft202012Validator,
        type_checker=checker,
        validators={
            "pattern": _kw_pattern,
            "patternProperties": _kw_pattern_properties,
            "additionalProperties": _kw_additional_properties,
            "required": _kw_required,
            "uniqueItems": _kw_unique_items,
            "multipleOf": _kw_multiple_of,
            "oneOf": _kw_one_of,
        },
    )


_OURS: Final = frozenset(
    {
        "pattern",
        "patternProperties",
        "additionalProperties",
        "required",
        "uniqueItems",
        "multipleOf",
        "oneOf",
    }
)


class Schema:
    """A JSON schema compiled once (when a workflow is built), then checked against often.

    Build it with :func:`compile_schema` from a schema :func:`check_schema` accepted.

    Attributes:
        raw: the schema as written.
    """

    __slots__ = ("_fast", "_patterns", "_validator", "raw")

    def __init__(self, raw: Mapping[str, Any] | bool) -> None:
        from referencing import Registry

        self.raw = raw
        given: Any = raw
        if isinstance(raw, Mapping) and "$schema" in raw:
            # the class would switch to plain jsonschema's validator on seeing it
            given = {k: v for k, v in raw.items() if k != "$schema"}
        elif isinstance(raw, Mapping):
            given = dict(raw)
        # an empty registry: no reference is ever fetched from the network
        self._validator: Validator = _validator_class()(given, registry=Registry())
        # only patterns need a time budget; setting one costs more than a simple check
        self._patterns = _has_patterns(raw)
        self._fast = _fast_check(raw)

    def problems(self, value: object, path: str = "") -> list[Problem]:
        """Every way *value* breaks the schema, each at its path (``input.items[2].name``)."""
        return self._check(value, path)[0]

    def check(self, value: object, path: str = "") -> tuple[list[Problem], bool]:
        """Like :meth:`problems`, and whether a pattern ran out of its time budget."""
        return self._check(value, path)

    def validate(self, value: object, *, what: str = "value") -> None:
        """Check *value* against the schema.

        Raises:
            PatternTimeoutError: a pattern ran out of its time budget (a subclass of
                SchemaValidationError; the other problems are listed too).
            SchemaValidationError: listing every problem, with paths under *what*.
        """
        fast = self._fast
        if fast is not None and fast(value):
            return  # the hot path of every tool call (see _check)
        problems, timed_out = self._check(value, what)
        if timed_out:
            raise PatternTimeoutError(what, problems)
        if problems:
            raise SchemaValidationError(what, problems)

    def _check(self, value: object, path: str) -> tuple[list[Problem], bool]:
        from referencing.exceptions import Unresolvable

        fast = self._fast
        if fast is not None and fast(value):
            return [], False  # valid; a value it cannot vouch for is checked in full below
        token = (
            _deadline.set(_Budget(time.monotonic() + PATTERN_BUDGET_S)) if self._patterns else None
        )
        try:
            # a bounded number: a huge value breaking its schema everywhere stays cheap
            errors = list(itertools.islice(self._validator.iter_errors(value), 2 * MAX_PROBLEMS))
        except RecursionError:
            return [Problem(path, "nested too deeply to check against its schema")], False
        except Unresolvable as exc:
            return [Problem(path, f"the schema has a reference that leads nowhere: {exc}")], False
        finally:
            if token is not None:
                _deadline.reset(token)
        # a value of the wrong type gets that one problem, not one per keyword besides
        wrong_type = {
            (tuple(e.absolute_path), id(e.schema)) for e in errors if e.validator == "type"
        }
        problems = []
        timed_out = False
        for e in errors:
            where = tuple(e.absolute_path)
            if e.validator != "type" and (where, id(e.schema)) in wrong_type:
                continue
            detail = e.cause if isinstance(e.cause, _Detail) else None
            timed_out = timed_out or (detail is not None and detail.timed_out)
            message = _value_message(e)
            problems.append(Problem(_join(path, where), message, detail.hint if detail else ""))
        if len(problems) > MAX_PROBLEMS or len(errors) == 2 * MAX_PROBLEMS:
            del problems[MAX_PROBLEMS:]
            problems.append(Problem(path, f"more problems than the {MAX_PROBLEMS} listed"))
        return problems, timed_out


def _has_patterns(schema: object) -> bool:
    """Whether *schema* has a ``pattern`` or ``patternProperties`` anywhere (a property so
    named counts too: a budget set for nothing costs little)."""
    if isinstance(schema, Mapping):
        return any(
            key in ("pattern", "patternProperties") or _has_patterns(value)
            for key, value in schema.items()
        )
    if isinstance(schema, list | tuple):
        return any(_has_patterns(item) for item in schema)
    return False


_EXACT_TYPES: Final[Mapping[str, frozenset[type]]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int, float}),
    "boolean": frozenset({bool}),
    "null": frozenset({type(None)}),
    "object": frozenset({dict}),
    "array": frozenset({list}),
}
_NOTES: Final = frozenset({"description", "title", "default", "examples", "$comment"})


def _fast_check(schema: object) -> Callable[[object], bool] | None:
    """For a simple object schema (``properties`` of plain types, ``required``,
    ``additionalProperties: false``: what :func:`~openrooms.tools.schema_from_signature`
    derives), a check that says True only for a value the full check accepts; False means
    "ask the full check", which also words the problems. None for any other schema."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None
    if (
        not set(schema)
        <= {"type", "properties", "required", "additionalProperties", "$schema"} | _NOTES
    ):
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(extra, bool):
        return None
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return None
    types: dict[str, frozenset[type] | None] = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping) or not set(prop) <= {"type"} | _NOTES:
            return None
        kind = prop.get("type")
        if kind is None:
            types[name] = None  # anything goes
        elif isinstance(kind, str) and kind in _EXACT_TYPES:
            types[name] = _EXACT_TYPES[kind]
        else:
            return None
    needed = tuple(required)

    def check(value: object) -> bool:
        if type(value) is not dict:
            return False
        for name in needed:
            if name not in value:
                return False
        for key, item in value.items():
            if key in types:
                allowed = types[key]
                if allowed is not None and type(item) not in allowed:
                    return False
            elif not extra:
                return False
        return True

    return check


def _value_message(e: Any) -> str:
    keyword, expected, value = e.validator, e.validator_value, e.instance
    if keyword in _OURS:
        return str(e.message)
    if keyword is None:
        return "no value is allowed here"
    if keyword == "type":
        names = expected if isinstance(expected, list) else [expected]
        return f"expected {' or '.join(names)}, got {type_name(value)} {_show(value)}"
    if keyword == "enum":
        return f"{_show(value)} is not one of {_show(expected)}"
    if keyword == "const":
        return f"expected {_show(expected)}, got {_show(value)}"
    if keyword == "minItems":
        return f"expected at least {expected} items, got {len(value)}"
    if keyword == "maxItems":
        return f"expected at most {expected} items, got {len(value)}"
    if keyword == "minLength":
        return f"expected at least {expected} characters"
    if keyword == "maxLength":
        return f"expected at most {expected} characters"
    if keyword in _BOUNDS:
        return f"expected a number {_BOUNDS[keyword]} {expected}, got {value}"
    if keyword == "anyOf":
        return f"{_show(value)} matches none of the allowed shapes (anyOf)"
    if keyword == "not":
        return f"{_show(value)} matches a shape that is not allowed (not)"
    text = str(e.message)
    return text if len(text) <= 200 else text[:197] + "..."


def compile_schema(schema: Mapping[str, Any] | bool) -> Schema:
    """*schema* (one :func:`check_schema` accepted) compiled for checking values."""
    return Schema(schema)


def schema_problems(
    value: object, schema: Mapping[str, Any] | bool, path: str = ""
) -> list[Problem]:
    """Every way *value* breaks *schema*, each at its path (``input.items[2].name``).

    Compiles *schema* on every call: keep a :class:`Schema` for repeated checks.
    """
    return Schema(schema).problems(value, path)


def validate(value: object, schema: Mapping[str, Any] | bool, *, what: str = "value") -> None:
    """Check *value* against *schema* (compiled on every call: prefer :class:`Schema`).

    Raises:
        PatternTimeoutError: a pattern ran out of its time budget.
        SchemaValidationError: listing every problem, with paths under *what*.
    """
    Schema(schema).validate(value, what=what)


# --- numbers and equality ---------------------------------------------------------------------


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
