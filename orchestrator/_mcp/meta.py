"""The two meta tools: for hosts that read the tool list once per session and
hear no change notice, these never change and reach every tool there is now.

- ``zskill_list_tools {"skill": str | null}``: the current tools (of one skill,
  or every skill when ``skill`` is null or absent); an unknown skill is an
  error naming the skills that run.
- ``zskill_call {"skill", "tool", "arguments": str}``: call any tool by skill
  and tool name; ``arguments`` is the JSON text of an object.

Both schemas are strict-compatible (what OpenAI's strict function calling
accepts, after its conversion makes every property required): closed objects,
no open ``object`` (a tool's arguments are JSON text for that reason), and
``skill`` nullable, so a strict model can still list every skill. The bridge
enforces them (``arguments.ArgumentCheck``): an extra property or a wrong type
is a tool error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from .arguments import ArgumentCheck

__all__ = ["CALL_TOOL", "LIST_TOOLS", "META_TOOLS", "MetaCall", "list_skill", "parse_call"]

LIST_TOOLS = "zskill_list_tools"
CALL_TOOL = "zskill_call"

LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "skill": {
            "type": ["string", "null"],
            "description": "Only this skill's tools; null (or absent) for every skill's.",
        },
    },
    "additionalProperties": False,
}

CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "skill": {"type": "string", "description": "The skill's name, e.g. echo."},
        "tool": {"type": "string", "description": "The tool's name, e.g. say."},
        "arguments": {
            "type": "string",
            "description": (
                'The tool\'s arguments as the JSON text of an object, e.g. {"text": "hi"}, '
                "as its input schema says; {} or empty for none."
            ),
        },
    },
    "required": ["skill", "tool"],
    "additionalProperties": False,
}

META_TOOLS: tuple[types.Tool, ...] = (
    types.Tool(
        name=LIST_TOOLS,
        title="List zskill tools",
        description=(
            "List the tools of every running zskill skill as they are right now, with "
            "their MCP names, descriptions and input schemas. Use it when a tool you "
            "expect is missing from your tool list: skills are upgraded live, and "
            f"{CALL_TOOL} reaches any tool this returns."
        ),
        input_schema=LIST_SCHEMA,
        annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    ),
    types.Tool(
        name=CALL_TOOL,
        title="Call a zskill tool",
        description=(
            "Call any tool of a running zskill skill by skill and tool name, with its "
            f"arguments as JSON text (see {LIST_TOOLS} for the tools and their input "
            "schemas). Works for tools added after your tool list was read."
        ),
        input_schema=CALL_SCHEMA,
    ),
)

_LIST_CHECK = ArgumentCheck(LIST_SCHEMA)
_CALL_CHECK = ArgumentCheck(CALL_SCHEMA)


class MetaError(ValueError):
    """Arguments of a meta tool that its schema refuses (the text says why)."""


def list_skill(args: Mapping[str, Any]) -> str | None:
    """The skill ``zskill_list_tools`` asks for (None: every skill)."""
    wrong = _LIST_CHECK.problems(args)
    if wrong:
        raise MetaError(f"{LIST_TOOLS}: {'; '.join(wrong)}")
    skill = args.get("skill")
    return skill if isinstance(skill, str) else None


@dataclass(frozen=True, slots=True)
class MetaCall:
    skill: str
    tool: str
    arguments: dict[str, Any]


def parse_call(args: Mapping[str, Any]) -> MetaCall:
    """``zskill_call``'s arguments, its ``arguments`` text decoded."""
    wrong = _CALL_CHECK.problems(args)
    if wrong:
        raise MetaError(f"{CALL_TOOL}: {'; '.join(wrong)}")
    text = str(args.get("arguments") or "").strip()
    try:
        decoded = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise MetaError(
            f"{CALL_TOOL}: 'arguments' must be the JSON text of an object: {exc}"
        ) from exc
    if not isinstance(decoded, dict):
        raise MetaError(
            f"{CALL_TOOL}: 'arguments' must be the JSON text of an object, "
            f"not of a {type(decoded).__name__}"
        )
    return MetaCall(str(args["skill"]), str(args["tool"]), decoded)
