"""Typed variables: a workflow's ``inputs`` schema, and reading ``--var`` values by it.

A workflow may declare the variables a caller passes as a JSON Schema object::

    variables: {amount: 0, approved: false}     # defaults (and internal state)
    inputs:                                      # what a caller may pass, and their types
      properties:
        amount: {type: number, minimum: 0}
      required: [amount]

``type: object`` is implied, and so is ``additionalProperties: false``: a name the
schema does not declare is refused ("did you mean 'amount'?"). Defaults of declared
names are checked against their schemas when the workflow is built; defaults the
schema does not declare are internal state a caller cannot set. A workflow without
``inputs`` takes any variables, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from openrooms._wording import VARIABLE_NAME_HINT, is_variable_name
from openrooms.errors import (
    InputError,
    PatternTimeoutError,
    Problem,
    SchemaValidationError,
    VariableSyntaxError,
)

if TYPE_CHECKING:
    from openrooms.schema import Schema
    from openrooms.workflow import Workflow

__all__ = [
    "check_inputs",
    "effective_schema",
    "inputs_problems",
    "parse_var",
]

_IMPLIED: Final = {"type": "object", "additionalProperties": False}
_JSON_START: Final = ("{", "[", '"')


def effective_schema(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The schema *inputs* stands for: ``type: object`` and ``additionalProperties: false``
    unless it says otherwise."""
    return {**_IMPLIED, **inputs}


def _declared(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    props = inputs.get("properties")
    return props if isinstance(props, Mapping) else {}


def inputs_problems(wf: Workflow) -> tuple[list[Problem], Schema | None]:
    """Problems with *wf*'s ``inputs`` schema and with the defaults it declares, and the
    compiled schema when there are none."""
    from openrooms.schema import check_schema, compile_schema

    inputs = wf.inputs
    if inputs is None:
        return [], None
    if not isinstance(inputs, Mapping):
        return [
            Problem(
                "inputs",
                f"expected a JSON schema object (a mapping), got {type(inputs).__name__}",
                "e.g. inputs: {properties: {amount: {type: number}}}",
            )
        ], None
    problems = check_schema(inputs, "inputs")
    if inputs.get("type", "object") != "object":
        problems.append(
            Problem("inputs.type", f"expected 'object', got {inputs['type']!r}", "or leave it out")
        )
    for name in _declared(inputs):
        if not is_variable_name(name):
            problems.append(
                Problem(
                    f"inputs.properties.{name}",
                    f"{name!r} is not a valid variable name",
                    VARIABLE_NAME_HINT,
                )
            )
    if problems:
        return problems, None
    schema = effective_schema(inputs)
    # the defaults the schema declares must fit it; a caller supplies the required others
    defaults = {k: v for k, v in wf.variables.items() if k in _declared(inputs)}
    loose = {k: v for k, v in schema.items() if k not in ("required", "dependentRequired")}
    for p in compile_schema(loose).problems(defaults, "variables"):
        problems.append(Problem(p.path, f"default does not fit inputs: {p.message}", p.hint))
    return problems, (None if problems else compile_schema(schema))


def check_inputs(wf: Workflow, variables: Mapping[str, Any]) -> None:
    """Check the variables a caller passes against *wf*'s ``inputs`` (if it declares any).

    Args:
        wf: the workflow the room will run.
        variables: the caller's variables, before the defaults are added.

    Raises:
        SchemaValidationError: a name the inputs do not declare (with a "did you mean"), a
            value of the wrong type or range, or a required input left out; every problem
            at its path (``variables.amount``); PatternTimeoutError when a pattern ran out
            of its time budget.
    """
    schema = wf.plan.inputs
    if schema is None or wf.inputs is None:
        return
    declared = _declared(wf.inputs)
    room = {k: v for k, v in wf.variables.items() if k in declared}
    room.update(variables)
    problems = []
    found, timed_out = schema.check(room, "variables")
    for p in found:
        name = p.path.removeprefix("variables.")
        if p.message == "unexpected property" and name in variables:
            p = Problem(p.path, f"unknown variable {name!r}: the inputs do not declare it", p.hint)
        elif p.path == "variables" and p.message.startswith("missing required property "):
            missing = p.message.removeprefix("missing required property ")
            p = Problem(
                p.path,
                f"missing required variable {missing}",
                f"pass it: --var {missing.strip(chr(39))}=..., or variables={{...}}",
            )
        problems.append(p)
    if timed_out:
        raise PatternTimeoutError("variables", problems)
    if problems:
        raise SchemaValidationError("variables", problems)


# --- --var NAME=TEXT and NAME:=JSON -----------------------------------------------------------


def _strict_json(text: str, name: str) -> Any:
    """JSON as the standard has it, read by the one strict loader (no NaN or Infinity,
    no duplicate keys, bounded nesting and integer size).

    Raises:
        json.JSONDecodeError: the text is not JSON at all.
        InputError: it is JSON but breaks a rule (too deep, a huge integer, a lone surrogate).
    """
    from openrooms.loading import parse_json

    try:
        return parse_json(text, source=f"--var {name}")
    except InputError as exc:
        if isinstance(exc.__cause__, json.JSONDecodeError):
            raise exc.__cause__ from None
        raise


def _types_of(schema: object) -> set[str]:
    """The JSON types a property schema admits, from ``type``, ``enum`` or ``const``."""
    if not isinstance(schema, Mapping):
        return set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if isinstance(values, list) and values:
        return {"string" if isinstance(v, str) else "other" for v in values}
    return set()


def parse_var(pair: str, inputs: Mapping[str, Any] | None = None) -> tuple[str, Any]:
    """One ``--var``: ``NAME:=JSON`` is JSON; ``NAME=TEXT`` is read by the declared type.

    ``NAME=TEXT``, when *inputs* declares NAME: text if its type admits strings, else the
    JSON the text spells (``amount=250`` is the number 250). Otherwise: a number,
    ``true``/``false``/``null`` or a JSON array/object/string when the text is one, else
    the text itself — but text that starts like JSON (``{``, ``[``, ``"``) and does not
    parse is refused rather than kept as a string.

    Args:
        pair: ``NAME=TEXT`` or ``NAME:=JSON``.
        inputs: the workflow's ``inputs`` schema, if it declares one.

    Returns:
        ``(name, value)``.

    Raises:
        VariableSyntaxError: no ``=``, or JSON that does not parse (with its position).
        InputError: JSON that parses but breaks a reading rule (nested too deeply, a huge
            integer, a duplicate key: see :mod:`openrooms.loading`).
        SchemaValidationError: text for a declared non-string input that is not of its type.
    """
    head, sep, text = pair.partition("=")
    as_json = head.endswith(":")
    name = head[:-1] if as_json else head
    if not sep or not name:
        raise VariableSyntaxError(pair, "expected NAME=TEXT or NAME:=JSON")
    if as_json:
        try:
            return name, _strict_json(text, name)
        except json.JSONDecodeError as exc:
            raise VariableSyntaxError(pair, _json_problem(exc)) from None
    types = _types_of(_declared(inputs).get(name)) if isinstance(inputs, Mapping) else set()
    if "string" in types:
        return name, text
    try:
        return name, _strict_json(text, name)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith(_JSON_START):
            raise VariableSyntaxError(
                pair,
                f"looks like JSON but is not: {_json_problem(exc)}",
                f"fix the JSON and pass it as {name}:=JSON",
            ) from None
        if types and "other" not in types:
            raise SchemaValidationError(
                "variables",
                [
                    Problem(
                        f"variables.{name}",
                        f"expected {' or '.join(sorted(types))}, got the text {text!r}",
                        f"pass JSON as {name}:=VALUE",
                    )
                ],
            ) from None
        return name, text


def _json_problem(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at character {exc.pos + 1} of the value"
