"""What changed between two versions' tools, and which changes break callers.

An upgrade compares the tools the new version announces in its hello with
those the serving version announced. A caller written against the old
version breaks when:

- a tool it calls is gone (``removed``);
- a call that was valid is refused: an argument it passes is gone (removed
  or renamed), an argument it may leave out is now required, or an argument
  accepts fewer JSON types or enum values than before (a narrowed type).

Everything else is compatible: new tools, new optional arguments, wider
types, new descriptions. Pure functions of the tools' JSON Schemas (as the
SDK generates them from type hints); unit-tested in ``test_schema_diff``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipc import ToolSpec

# JSON Schema's types; "integer" values are also "number" values.
_ALL_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


@dataclass(frozen=True, slots=True)
class ToolDiff:
    """Tools added, removed and changed, and why a change breaks callers."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "breaking": self.breaking,
        }


def diff_tools(old: Mapping[str, ToolSpec], new: Mapping[str, ToolSpec]) -> ToolDiff:
    """Compare two versions' tools by name."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed: list[str] = []
    breaking = [f"tool {name!r} was removed" for name in removed]
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        if a.to_wire() == b.to_wire():
            continue
        changed.append(name)
        breaking += [f"{name}: {why}" for why in breaking_args(a.input_schema, b.input_schema)]
    return ToolDiff(added, removed, changed, breaking)


def breaking_args(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The changes from ``old`` to ``new`` (a tool's input schemas) that
    make a call valid under ``old`` invalid under ``new``."""
    old_props: Mapping[str, Any] = old.get("properties") or {}
    new_props: Mapping[str, Any] = new.get("properties") or {}
    old_req = set(old.get("required") or ())
    new_req = set(new.get("required") or ())
    out: list[str] = []
    gone = [n for n in old_props if n not in new_props]
    fresh = [n for n in new_props if n not in old_props]
    extra_ok = new.get("additionalProperties", True) is not False
    for n in gone:
        if extra_ok:
            continue  # the new version still accepts (and ignores) it
        hint = f" (renamed to {fresh[0]!r}?)" if len(gone) == 1 and len(fresh) == 1 else ""
        out.append(f"argument {n!r} was removed{hint}")
    for n in sorted(new_req - old_req):
        if n in old_props:
            out.append(f"argument {n!r} is now required")
        else:
            out.append(f"new required argument {n!r}")
    for n in old_props:
        if n in new_props:
            out += [f"argument {n!r}: {why}" for why in narrowed(old_props[n], new_props[n])]
    return out


def narrowed(old: Any, new: Any) -> list[str]:
    """How the values ``new`` accepts are fewer than those ``old`` accepted
    (types and enum values; deeper constraints are not compared)."""
    out: list[str] = []
    lost = accepted_types(old) - accepted_types(new)
    if lost:
        out.append(f"no longer accepts {', '.join(sorted(lost))}")
    old_enum, new_enum = _enum(old), _enum(new)
    if new_enum is not None:
        if old_enum is None:
            out.append(f"now limited to {new_enum!r}")
        else:
            dropped = [v for v in old_enum if v not in new_enum]
            if dropped:
                out.append(f"no longer accepts {dropped!r}")
    return out


def accepted_types(schema: Any) -> frozenset[str]:
    """The JSON types a schema accepts: its ``type``, the union over
    ``anyOf``/``oneOf``; every type when it does not say."""
    if not isinstance(schema, Mapping):
        return _ALL_TYPES
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return frozenset().union(*(accepted_types(o) for o in options))
    t = schema.get("type")
    if t is None:
        if "enum" in schema or "const" in schema:
            values = _enum(schema) or []
            return frozenset(_json_type(v) for v in values)
        return _ALL_TYPES
    kinds = frozenset(t if isinstance(t, list) else [t])
    # A "number" accepts integers: losing "integer" where "number" stays loses nothing.
    return kinds | {"integer"} if "number" in kinds else kinds


def _enum(schema: Any) -> list[Any] | None:
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _json_type(value: Any) -> str:
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
    return "array" if isinstance(value, list) else "object"


__all__ = ["ToolDiff", "accepted_types", "breaking_args", "diff_tools", "narrowed"]
