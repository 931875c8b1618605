"""What the MCP bridge shows a host: every running skill's tools under stable
MCP names, plus the two meta tools. Pure data, no I/O: built from the daemon's
``tools`` control operation and compared to tell when the list changed.

Names. A skill's tool is served as ``<skill>__<tool>`` (``echo__say``). MCP
allows letters, digits, ``_``, ``-`` and ``.`` (1-128 characters), but the
hosts' model APIs are stricter (no dot, at most 64), so the bridge keeps to
``[A-Za-z0-9_-]{1,64}``. The name depends only on the skill's and the tool's
names, never on the version serving them, so it survives every upgrade: a
host that cached its list keeps calling the same name and reaches whichever
version is live. A pair that cannot be spelled that way unambiguously (odd
characters, a skill name holding ``__`` or ending in ``_``, too long) gets a
squashed form with a hash of the pair: ``my_skill__very_long_to-1a2b3c4d``.
Every skill tool's name contains ``__``; the meta tools' names (``meta``) do
not, so the two can never collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp.types as types

from ipc import COERCE_KEY

from .names import NAME_MAX, object_schema, tool_name

__all__ = [
    "NAME_MAX",
    "Catalog",
    "ToolEntry",
    "tool_name",
]


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One skill tool as the bridge serves it."""

    name: str
    skill: str
    tool: str
    description: str
    input_schema: dict[str, Any]
    idempotent: bool
    output_schema: dict[str, Any] | None = None

    @property
    def coerces(self) -> bool:
        """The tool converts its arguments leniently (``coerce=True``): the
        skill checks them, not the bridge."""
        return self.input_schema.get(COERCE_KEY) is True

    def to_mcp(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=f"{self.skill}.{self.tool}",
            description=self.description or f"{self.tool} of the zskill skill {self.skill}.",
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            # Only a hint worth giving: "not idempotent" is what hosts assume.
            annotations=types.ToolAnnotations(idempotent_hint=True) if self.idempotent else None,
        )

    def describe(self) -> dict[str, Any]:
        """The entry as the ``zskill_list_tools`` meta tool reports it."""
        return {
            "name": self.name,
            "skill": self.skill,
            "tool": self.tool,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "idempotent": self.idempotent,
        }


@dataclass(frozen=True, slots=True)
class Catalog:
    """The tools of every running skill, sorted by name. Two catalogs are equal
    exactly when a host would see the same list."""

    entries: tuple[ToolEntry, ...] = ()

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> Catalog:
        """Build from the ``tools`` reply: ``{skill: [{"name", "description",
        "input_schema", "idempotent", "output_schema"?}]}``. Malformed items are skipped, not fatal:
        one odd skill must not hide every other skill's tools."""
        entries: dict[str, ToolEntry] = {}
        for skill, tools in body.items():
            if not isinstance(skill, str) or not isinstance(tools, list):
                continue
            for item in tools:
                entry = _entry(skill, item)
                # A hash collision is astronomically unlikely; keep the first.
                if entry is not None and entry.name not in entries:
                    entries[entry.name] = entry
        return cls(tuple(sorted(entries.values(), key=lambda e: e.name)))

    def get(self, name: str) -> ToolEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def of_skill(self, skill: str | None) -> Iterable[ToolEntry]:
        return (e for e in self.entries if skill is None or e.skill == skill)

    def keeping(self, old: Catalog, skills: Iterable[str]) -> Catalog:
        """This catalog plus ``old``'s tools of ``skills`` it lacks (skills on
        their way back up after a daemon restart)."""
        kept = set(skills) - set(self.skills)
        extra = [e for e in old.entries if e.skill in kept]
        if not extra:
            return self
        return Catalog(tuple(sorted((*self.entries, *extra), key=lambda e: e.name)))

    @property
    def skills(self) -> list[str]:
        return sorted({e.skill for e in self.entries})


def _entry(skill: str, item: Any) -> ToolEntry | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        return None
    tool = item["name"]
    description = item.get("description")
    output = item.get("output_schema")
    return ToolEntry(
        name=tool_name(skill, tool),
        skill=skill,
        tool=tool,
        description=description if isinstance(description, str) else "",
        input_schema=object_schema(item.get("input_schema")),
        idempotent=bool(item.get("idempotent", False)),
        # MCP wants an object schema there; the SDK only ever sends one
        output_schema=dict(output) if isinstance(output, Mapping) else None,
    )
