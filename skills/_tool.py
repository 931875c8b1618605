"""A tool: one handler, the JSON Schema of its arguments, and their validation.

The schema is built once, when the handler is decorated, from a pydantic
model made out of the signature. Each parameter becomes a model field under
a neutral internal name (``p0``, ``p1``...) aliased to the parameter's own
name, so that parameters called ``json``, ``model_config`` or ``_id`` neither
shadow BaseModel attributes nor turn into private attributes; the schema and
the error locations show the alias, which is what the caller wrote.

Arguments are checked as strictly as the schema says: a call's arguments are
validated as the JSON they stand for, in pydantic's strict mode, so ``"3"`` or
``true`` for an integer is refused (naming the argument), while what JSON can
only spell as a string (a date, a UUID, an enum's value, bytes in base64) is
still read. A tool made with ``coerce=True`` opts into pydantic's lax
conversion instead (``"3"`` becomes 3), and its input schema says so with
:data:`COERCE_KEY`, so the MCP bridge and hosts know its types are loose.

The result's schema comes from the return type hint, like the arguments'
(``output_schema``; none for ``str``, ``None``, ``Any`` or no hint): an object
type as is, anything else as ``{"result": <its schema>}``, since MCP wants an
object there.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

import pydantic
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json

from ipc import COERCE_KEY, RESULT_WRAPPED, InvalidArguments, ToolSpec, decode_payload

from ._context import Context
from ._docstring import parse_docstring
from ._inline import INLINE_AFTER

TOOL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
"""What MCP hosts accept as a tool name, so every tool can be bridged."""

_MAX_REPORTED_ERRORS = 5

_NO_SCHEMA_RESULTS: tuple[Any, ...] = (str, type(None), None, Any)
"""Return types given no output schema: a str is sent as text, None and Any
say nothing about the result."""


class Tool:
    """A registered handler. ``arguments`` turns a call's payload into the
    keyword arguments of the handler, or raises InvalidArguments."""

    __slots__ = (
        "_fields",
        "_model",
        "coerce",
        "context_param",
        "description",
        "fast_runs",
        "fn",
        "idempotent",
        "inline",
        "inline_after",
        "input_schema",
        "is_async",
        "name",
        "output_schema",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        inline: bool = False,
        coerce: bool = False,
    ) -> None:
        self.name = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(self.name, str) or not TOOL_NAME.match(self.name):
            raise ValueError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_', '-' or '.'"
            )
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"tool {self.name!r}: generators are not supported; return a value")
        doc = parse_docstring(fn)
        self.description = description if description is not None else doc.summary
        self.fn = fn
        self.idempotent = bool(idempotent)
        self.coerce = bool(coerce)
        self.is_async = inspect.iscoroutinefunction(fn)
        if inline and self.is_async:
            raise ValueError(f"tool {self.name!r}: inline=True is for sync handlers only")
        self.inline = bool(inline)
        # Where calls run (see skills._inline): the loop's thread once
        # fast_runs reaches inline_after. Updated by whichever thread ran the
        # call, without a lock: a lost update only shifts a heuristic.
        self.fast_runs = 0
        self.inline_after = INLINE_AFTER
        params = _parameters(fn, self.name)
        hints = _type_hints(fn, self.name)
        # A parameter annotated Context receives the call's context: it is
        # no argument of the tool, so the schema leaves it out.
        contexts = [p.name for p in params if hints.get(p.name) is Context]
        if len(contexts) > 1:
            raise TypeError(f"tool {self.name!r}: more than one Context parameter ({contexts})")
        self.context_param: str | None = contexts[0] if contexts else None
        params = [p for p in params if p.name != self.context_param]
        # (internal field name, parameter name), in signature order.
        self._fields = tuple((f"p{i}", p.name) for i, p in enumerate(params))
        definitions: dict[str, Any] = {}
        for (field, pname), param in zip(self._fields, params, strict=True):
            default = ... if param.default is inspect.Parameter.empty else param.default
            info = Field(default, alias=pname, description=doc.arguments.get(pname))
            definitions[field] = (hints.get(pname, Any), info)
        try:
            self._model: type[pydantic.BaseModel] = pydantic.create_model(
                f"{self.name}_arguments",
                # bytes cross JSON as base64, both ways, so the schema says so
                __config__=ConfigDict(
                    extra="forbid",
                    arbitrary_types_allowed=False,
                    val_json_bytes="base64",
                    ser_json_bytes="base64",
                ),
                **definitions,
            )
            schema = self._model.model_json_schema()
        except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
            raise TypeError(
                f"tool {self.name!r}: cannot build a JSON Schema of its arguments: {exc}"
            ) from None
        schema["title"] = self.name
        if self.coerce:
            schema[COERCE_KEY] = True
        self.input_schema: dict[str, Any] = schema
        self.output_schema = _output_schema(hints, self.name)

    def runs_inline(self) -> bool:
        """Its calls run on the I/O loop's thread (see skills._inline)."""
        return self.inline or (self.fast_runs >= self.inline_after and not self.is_async)

    def spec(self) -> ToolSpec:
        return ToolSpec(
            self.name, self.description, self.input_schema, self.idempotent, self.output_schema
        )

    def arguments(self, payload: bytes) -> dict[str, Any]:
        """Decode and validate a call's arguments (runs in a worker thread)."""
        raw = decode_payload(payload)
        if raw is None:
            raw = {}
        elif type(raw) is not dict:
            raise InvalidArguments(
                f"{self.name}: arguments must be a map of names to values, "
                f"got {type(raw).__name__}",
                tool=self.name,
            )
        if not self._fields:
            if raw:
                raise self._unknown(raw)
            return raw
        try:
            values = self._model.model_validate(raw).__dict__ if self.coerce else self._strict(raw)
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return {pname: values[field] for field, pname in self._fields}

    def _strict(self, raw: dict[Any, Any]) -> dict[str, Any]:
        """Validate ``raw`` as the JSON it stands for, strictly: what the input
        schema allows and nothing else (msgpack may also carry bytes, sent
        on as base64 as the schema says)."""
        try:
            text = to_json(raw, bytes_mode="base64")
        except PydanticSerializationError as exc:
            raise InvalidArguments(
                f"{self.name}: arguments hold a value JSON cannot carry: {exc}", tool=self.name
            ) from None
        values: dict[str, Any] = self._model.model_validate_json(text, strict=True).__dict__
        return values

    def _unknown(self, raw: dict[Any, Any]) -> InvalidArguments:
        names = ", ".join(repr(k) for k in raw)
        return InvalidArguments(
            f"{self.name}: unknown argument {names} (it takes none)", tool=self.name
        )

    def _invalid(self, exc: ValidationError) -> InvalidArguments:
        errors = exc.errors(include_url=False)
        problems = [_describe(e) for e in errors[:_MAX_REPORTED_ERRORS]]
        if len(errors) > _MAX_REPORTED_ERRORS:
            problems.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
        arguments = sorted({str(e["loc"][0]) for e in errors if e["loc"]})
        return InvalidArguments(
            f"{self.name}: {'; '.join(problems)}", tool=self.name, arguments=arguments
        )


def _describe(error: Any) -> str:
    """One pydantic error as a sentence naming the argument."""
    loc = error["loc"]
    path = ".".join(str(p) for p in loc) if loc else "(arguments)"
    kind = error["type"]
    if kind == "missing":
        return f"missing required argument {path!r}"
    if kind == "extra_forbidden":
        return f"unknown argument {path!r}" if len(loc) == 1 else f"unknown field {path!r}"
    shown = repr(error.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"argument {path!r}: {error['msg']} (got {shown})"


def _output_schema(hints: dict[str, Any], tool: str) -> dict[str, Any] | None:
    """The JSON Schema of what the handler returns, as MCP wants it: an object
    (see the module docstring); None when the hint says nothing useful."""
    returned: Any = hints.get("return")
    if any(returned is t for t in _NO_SCHEMA_RESULTS):
        return None
    try:
        schema = TypeAdapter[Any](returned).json_schema(mode="serialization")
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError):
        # A return type pydantic cannot describe still returns fine; it just
        # has no schema to announce.
        return None
    if schema.get("type") == "object":
        return schema
    defs = schema.pop("$defs", None)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"result": schema},
        "required": ["result"],
        "additionalProperties": False,
        RESULT_WRAPPED: True,
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped


def _parameters(fn: Callable[..., Any], tool: str) -> list[inspect.Parameter]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool {tool!r}: cannot read the handler's signature: {exc}") from None
    for p in params:
        what = _unsupported(p)
        if what is not None:
            raise TypeError(
                f"tool {tool!r}: {what} is not supported: a tool takes named arguments "
                "whose types make its JSON Schema"
            )
    return params


def _unsupported(p: inspect.Parameter) -> str | None:
    if p.kind is p.VAR_POSITIONAL:
        return f"*{p.name}"
    if p.kind is p.VAR_KEYWORD:
        return f"**{p.name}"
    if p.kind is p.POSITIONAL_ONLY:
        return f"positional-only parameter {p.name!r}"
    return None


def _type_hints(fn: Callable[..., Any], tool: str) -> dict[str, Any]:
    # get_type_hints resolves string annotations (``from __future__ import
    # annotations``); a name it cannot resolve is the author's to fix, now.
    target: Any = inspect.unwrap(fn)
    while isinstance(target, functools.partial):
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(target, "__call__", target)  # noqa: B004 - a callable object
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise TypeError(f"tool {tool!r}: cannot resolve the type hints: {exc}") from None
