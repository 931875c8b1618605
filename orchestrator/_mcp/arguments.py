"""Arguments checked against the schema a host was shown, before any call.

The bridge holds a tool's arguments to its advertised input schema exactly as
the SDK does in the skill (strict types: ``"3"`` and ``true`` are not
integers, nor is ``3.0``; no property the schema does not name), so a host
gets the same refusal, naming the argument, without a round trip to the
skill. A tool whose schema says it coerces (``x-zskill-coerce``) is left to
its skill, which converts leniently. The meta tools' arguments go through the
same check against their own schemas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError

__all__ = ["ArgumentCheck", "problems"]

MAX_REPORTED = 5


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 3.0 as an integer; pydantic's strict mode, which the
    # skill applies, does not. Refuse it here too, so both sides agree.
    return isinstance(instance, int) and not isinstance(instance, bool)


_Strict = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


class ArgumentCheck:
    """A compiled check of one input schema (kept per tool, reused per call)."""

    __slots__ = ("_validator",)

    def __init__(self, schema: Mapping[str, Any]) -> None:
        try:
            _Strict.check_schema(schema)
            self._validator: Any = _Strict(dict(schema))
        except SchemaError:
            # A schema the checker cannot read is the skill's to enforce.
            self._validator = None

    def problems(self, arguments: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``arguments``, one sentence each; [] when valid."""
        if self._validator is None:
            return []
        return problems(self._validator.iter_errors(dict(arguments)))


def problems(errors: Any) -> list[str]:
    found: list[ValidationError] = sorted(errors, key=lambda e: list(e.absolute_path))
    out = [_describe(e) for e in found[:MAX_REPORTED]]
    if len(found) > MAX_REPORTED:
        out.append(f"and {len(found) - MAX_REPORTED} more")
    return out


def _describe(error: ValidationError) -> str:
    """One error as a sentence naming the argument, like the SDK's."""
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        have = error.instance if isinstance(error.instance, Mapping) else {}
        missing = [name for name in error.validator_value if name not in have]
        where = f"{path}." if path else ""
        return "; ".join(f"missing required argument {where + name!r}" for name in missing)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = [k for k in error.instance if k not in known]
        where = f"{path}." if path else ""
        noun = "argument" if not path else "field"
        return "; ".join(f"unknown {noun} {where + str(k)!r}" for k in extra)
    shown = repr(error.instance)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    what = f"argument {path!r}" if path else "the arguments"
    return f"{what}: {_reason(error)} (got {shown})"


def _reason(error: ValidationError) -> str:
    if error.validator == "type":
        expected = error.validator_value
        names = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return f"must be of type {names}"
    if error.validator == "enum":
        return f"must be one of {error.validator_value!r}"
    # jsonschema's own sentence starts with the value; keep its reason only.
    message = error.message
    instance = repr(error.instance)
    if message.startswith(instance):
        message = message[len(instance) :].strip()
    return message
