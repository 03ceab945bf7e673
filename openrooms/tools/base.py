"""Tools: named, schema-checked callables that ``tool`` nodes (and, later, agents) call."""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import threading
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Literal, Union, get_args, get_origin

import attrs

from openrooms.errors import ToolError
from openrooms.memory import RoomMemory
from openrooms.schema import Schema, compile_schema
from openrooms.types import RoomId

__all__ = ["ArgKind", "BaseTool", "Tool", "ToolContext", "schema_from_signature"]

ArgKind = Literal["code", "url"]
"""What a tool does with an argument's text, so a workflow's templates fill it safely:

- ``"code"``: it parses the text as code or a query (an expression, SQL, a search syntax).
  A template may only be a whole value (``"{{ vars.formula }}"``: the value *is* the
  code, explicitly); text with a ``{{ }}`` spliced into it, anywhere in the argument (in
  a list or mapping too), is refused at validation and again at run time, because a value
  could change the code's structure.
- ``"url"``: it parses the text as a URL. A value spliced after literal text is
  percent-encoded (every reserved character: ``/ ? # & = %``...), so it stays one path
  segment or query value. A value that begins the text is the URL's base and is used as
  it is (``"{{ vars.api }}/orders/{{ vars.id }}"``), as is a whole-value template.
"""
_ARG_KINDS: Final = ("code", "url")


def _check_templating(tool: Tool, _attr: object, value: Mapping[str, str]) -> None:
    properties = tool.parameters.get("properties")
    for name, kind in value.items():
        if kind not in _ARG_KINDS:
            raise ValueError(
                f"tool {tool.name!r}: templating[{name!r}] is {kind!r}; use one of "
                f"{', '.join(map(repr, _ARG_KINDS))}"
            )
        if isinstance(properties, Mapping) and name not in properties:
            raise ValueError(
                f"tool {tool.name!r}: templating names {name!r}, which is not one of its "
                f"parameters ({', '.join(map(str, properties)) or 'none'})"
            )


@attrs.frozen(slots=True)
class ToolContext:
    """What a tool learns about the call: declare a parameter typed ``ToolContext`` to get it.

    Attributes:
        room_id: the calling room.
        node: the calling node.
        idempotency_key: stable per attempt; send it to APIs that deduplicate.
        attempt: the attempt number, from 1.
        memory: the room's memory (entries and conversations), when called from a room.
    """

    room_id: RoomId
    node: str
    idempotency_key: str
    attempt: int = 1
    memory: RoomMemory | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(slots=True)
class Tool:
    """A registered tool.

    Attributes:
        name: how workflows refer to it.
        description: what it does (shown to models and in ``GET /api/tools``).
        parameters: a JSON schema (``type: object``) its arguments must satisfy.
        fn: the implementation, sync or async; sync ones run in a worker thread.
        context_param: the name of the parameter that receives the :class:`ToolContext`.
        templating: argument name -> :data:`ArgKind`, for the arguments the tool parses
            (``{"expression": "code"}``, ``{"url": "url"}``); workflow templates fill the
            others as plain data.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any] = attrs.field(eq=False, repr=False)
    context_param: str | None = None
    templating: Mapping[str, ArgKind] = attrs.field(factory=dict, validator=_check_templating)
    _compiled: Schema | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _is_async: bool | None = attrs.field(init=False, default=None, eq=False, repr=False)

    async def call(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        """Validate *args* against the schema and run the tool. The ``tool`` node (or agent)
        that calls it checks the result can be stored (:mod:`openrooms.storable`): JSON
        types only, finite numbers, valid text, bounded size and nesting.

        Raises:
            SchemaValidationError: the arguments break the schema.
            ToolError: the tool raised (its exception is the ``__cause__``).
        """
        compiled = self._compiled
        if compiled is None:  # compiled once, on the first call
            compiled = compile_schema(self.parameters)
            object.__setattr__(self, "_compiled", compiled)
        compiled.validate(args, what=f"arguments of tool {self.name!r}")
        kwargs = dict(args)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        is_async = self._is_async
        if is_async is None:  # asked once: inspect's answer costs a microsecond a call
            is_async = inspect.iscoroutinefunction(self.fn)
            object.__setattr__(self, "_is_async", is_async)
        try:
            if is_async:
                result = await self.fn(**kwargs)
            else:
                result = await _in_daemon_thread(self.fn, kwargs)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(self.name, f"{type(exc).__name__}: {exc}") from exc
        return result  # the node that called it checks it can be stored (openrooms.storable)


class BaseTool:
    """A tool written as a class (the seed's ``BaseToolExecutor``), for tools with state
    or a hand-written schema. Arguments are validated against ``parameters`` before
    :meth:`run` sees them, so ``run`` can index them without checking::

        class Refund(BaseTool):
            name = "refund"
            description = "Refund an order."
            parameters = {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
                "required": ["order_id", "amount"],
                "additionalProperties": False,
            }

            def __init__(self, client):
                self.client = client

            async def run(self, args, ctx):
                return await self.client.refund(args["order_id"], args["amount"],
                                                idempotency_key=ctx.idempotency_key)

        rt.tools.register(Refund(client))  # this runtime only

    A tool that parses an argument as code or a query declares it, so workflows cannot
    splice values into it: ``templating = {"query": "code"}`` (see :data:`ArgKind`).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    parameters: ClassVar[Mapping[str, Any]] = {"type": "object", "properties": {}}
    templating: ClassVar[Mapping[str, ArgKind]] = {}

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        """Do the work; *args* already satisfy :attr:`parameters`. Return a JSON value."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    def as_tool(self) -> Tool:
        """This object as a registrable :class:`Tool`."""
        name = getattr(type(self), "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{type(self).__name__} needs a class attribute 'name'")
        doc = inspect.getdoc(type(self)) or ""
        run = self.run

        async def call(**kwargs: Any) -> Any:
            ctx = kwargs.pop(_CTX)
            return await run(kwargs, ctx)

        return Tool(
            name=name,
            description=self.description or doc.split("\n\n", 1)[0].strip(),
            parameters=self.parameters,
            fn=call,
            context_param=_CTX,
            templating=dict(self.templating),
        )


_CTX = "__openrooms_tool_context"


async def _in_daemon_thread(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a sync tool on a daemon thread.

    Not the loop's default executor: a tool that ignores its timeout keeps running, and
    neither ``asyncio.run`` nor interpreter exit should wait for it. Its late result is
    dropped because nobody awaits the future any more.
    """
    import asyncio  # here, not at the top: building tools must not load asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = fn(**kwargs)
        except BaseException as exc:  # handed to the awaiting coroutine
            ok, value = False, exc
        else:
            ok, value = True, result
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(settle, ok, value)

    threading.Thread(target=work, name=f"openrooms-tool-{fn.__name__}", daemon=True).start()
    return await future


_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    dict: {"type": "object"},
    list: {"type": "array"},
    Any: {},
}


def _schema_for(hint: Any, where: str) -> dict[str, Any]:
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    origin = get_origin(hint)
    if origin in (list, tuple, typing.Sequence, collections.abc.Sequence):
        (item, *_rest) = get_args(hint) or (Any,)
        return {"type": "array", "items": _schema_for(item, where)}
    if origin in (dict, typing.Mapping, collections.abc.Mapping):
        return {"type": "object"}
    if origin is Literal:
        return {"enum": list(get_args(hint))}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_for(a, where) for a in get_args(hint)]}
    if origin is typing.Annotated:
        base, *meta = get_args(hint)
        schema = _schema_for(base, where)
        for m in meta:
            if isinstance(m, str):
                schema["description"] = m
        return schema
    raise TypeError(
        f"{where}: cannot describe type {hint!r} as JSON; use str, int, float, bool, "
        f"list, dict, Literal, Optional or Annotated[..., 'description']"
    )


def schema_from_signature(fn: Callable[..., Any]) -> tuple[dict[str, Any], str | None]:
    """A JSON schema for *fn*'s parameters, from its type hints, and its ToolContext parameter.

    Returns:
        ``(schema, context_param)``: parameters without defaults are required; a parameter
        annotated :class:`ToolContext` is left out of the schema and named separately.

    Raises:
        TypeError: a parameter has no type hint, or one that has no JSON form.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    context_param = None
    for param in inspect.signature(fn).parameters.values():
        where = f"tool {fn.__name__}(), parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs cannot be described as JSON")
        hint = hints.get(param.name)
        if hint is ToolContext:
            context_param = param.name
            continue
        if hint is None:
            raise TypeError(f"{where}: add a type hint so the argument schema can be derived")
        properties[param.name] = _schema_for(hint, where)
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            properties[param.name]["default"] = param.default
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema, context_param
