"""The names skill tools are served under, to MCP hosts and to the agent
loop alike: ``<skill>__<tool>`` (see :mod:`.catalog` for why). Pure and cheap
to import (no MCP types), so ``orchestrator.agent`` names tools the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["NAME_MAX", "SEPARATOR", "object_schema", "tool_name"]

NAME_MAX = 64
"""The longest name served: what the strictest host model APIs accept."""

SEPARATOR = "__"
_CLEAN = re.compile(r"^[A-Za-z0-9_-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_HASH_CHARS = 8


def tool_name(skill: str, tool: str) -> str:
    """The MCP name of ``skill``'s ``tool``: ``<skill>__<tool>`` when that is
    valid and unambiguous, else a squashed form made unique by a hash."""
    plain = f"{skill}{SEPARATOR}{tool}"
    # With no "__" in the skill and no trailing "_", the first "__" of the name
    # is the separator: two different pairs cannot spell the same name.
    unambiguous = SEPARATOR not in skill and not skill.endswith("_")
    if unambiguous and _CLEAN.match(skill) and _CLEAN.match(tool) and len(plain) <= NAME_MAX:
        return plain
    digest = hashlib.sha256(f"{skill}\0{tool}".encode()).hexdigest()[:_HASH_CHARS]
    head = _squash(skill)[:24]
    room = NAME_MAX - len(head) - len(SEPARATOR) - 1 - _HASH_CHARS
    return f"{head}{SEPARATOR}{_squash(tool)[:room]}-{digest}"


def _squash(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "x"


def object_schema(schema: Any) -> dict[str, Any]:
    """``schema`` as MCP requires an input schema: a JSON object with
    ``"type": "object"`` at its root (a skill's pydantic schema already is)."""
    if not isinstance(schema, Mapping):
        return {"type": "object"}
    out = dict(schema)
    out.setdefault("type", "object")
    return out
