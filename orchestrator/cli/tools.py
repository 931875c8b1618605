"""``zskill tools`` as text: each tool's description and its arguments, read
from the JSON Schema the skill announced (its type hints and docstring).

    echo 1.0.0
      say      Repeat text.
               text   string   required  the text to repeat.
               times  integer  = 1       how many times to repeat it.
      ping     Answer "pong".  (idempotent)
      env      Return the environment variable ``name`` (None if unset).
               name  string  required
               -> string | null

The last line is the result's type, from the output schema (the handler's
return type), when it has one.

Plain text with no rich, so it is cheap and reads the same piped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ipc import RESULT_WRAPPED

Row = Mapping[str, Any]


def schema_type(prop: Row) -> str:
    """A short type name for one property's schema: ``string``,
    ``integer | null``, ``array of string``, ``"a" | "b"``, ``Model``."""
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(prop.get(key), list):
            return " | ".join(schema_type(p) for p in prop[key] if isinstance(p, Mapping))
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    kind = prop.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array" and isinstance(prop.get("items"), Mapping):
        return f"array of {schema_type(prop['items'])}"
    return str(kind) if kind else "any"


def argument_rows(schema: Row) -> list[tuple[str, str, str, str]]:
    """(name, type, required or default, description) per argument."""
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return []
    required = set(schema.get("required") or ())
    rows = []
    for name, prop in props.items():
        prop = prop if isinstance(prop, Mapping) else {}
        if name in required:
            need = "required"
        elif "default" in prop:
            need = "= " + json.dumps(prop["default"], ensure_ascii=False)
        else:
            need = "optional"
        desc = str(prop.get("description") or "").strip()
        rows.append((str(name), schema_type(prop), need, " ".join(desc.split())))
    return rows


def result_type(schema: Row) -> str:
    """The type an output schema describes (a wrapped one: its ``result``)."""
    props = schema.get("properties")
    if schema.get(RESULT_WRAPPED) is True and isinstance(props, Mapping):
        inner = props.get("result")
        return schema_type(inner) if isinstance(inner, Mapping) else "any"
    return str(schema.get("title") or "object")


def tools_text(tools: Mapping[str, Sequence[Row]], versions: Mapping[str, str]) -> list[str]:
    """The lines of ``zskill tools`` for each skill in ``tools``."""
    lines: list[str] = []
    for skill, specs in tools.items():
        if lines:
            lines.append("")
        version = versions.get(skill)
        lines.append(f"{skill} {version}" if version else skill)
        if not specs:
            lines.append("  (no tools)")
            continue
        width = max(len(str(t.get("name", ""))) for t in specs)
        indent = " " * (2 + width + 2)
        for spec in sorted(specs, key=lambda t: str(t.get("name", ""))):
            desc = " ".join(str(spec.get("description") or "").split()) or "(no description)"
            if spec.get("idempotent"):
                desc += "  (idempotent)"
            lines.append(f"  {str(spec.get('name', '?')).ljust(width)}  {desc}")
            schema = spec.get("input_schema")
            rows = argument_rows(schema) if isinstance(schema, Mapping) else []
            if rows:
                widths = [max(len(r[i]) for r in rows) for i in range(3)]
                for row in rows:
                    cells = [row[i].ljust(widths[i]) for i in range(3)]
                    lines.append((indent + "  ".join([*cells, row[3]])).rstrip())
            output = spec.get("output_schema")
            if isinstance(output, Mapping):
                lines.append(f"{indent}-> {result_type(output)}")
    return lines
