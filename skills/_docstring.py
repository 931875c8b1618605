"""Descriptions from docstrings: a tool's summary and its arguments'.

The first paragraph of a docstring describes the tool. A Google-style
``Args:`` section describes the arguments::

    Args:
        text: what to repeat.
        times (int): how many times; a description may go on
            over several more indented lines.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_SECTION_NAMES = frozenset({"args", "arguments", "parameters", "params"})
# "name: text" or "name (type): text"; *args-style stars tolerated, then ignored.
_ENTRY = re.compile(r"^\*{0,2}(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(?P<text>.*)$")


@dataclass(frozen=True, slots=True)
class Docstring:
    summary: str = ""
    arguments: dict[str, str] = field(default_factory=dict)


def parse_docstring(fn: Callable[..., Any]) -> Docstring:
    """The summary (first paragraph, on one line) and per-argument descriptions."""
    doc = inspect.getdoc(fn)
    if not doc:
        return Docstring()
    lines = doc.splitlines()
    return Docstring(_first_paragraph(lines), _arguments(lines))


def _first_paragraph(lines: list[str]) -> str:
    words: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.rstrip(":").lower() in _SECTION_NAMES:
            break
        words.append(stripped)
    return " ".join(words)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _arguments(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if line.strip().endswith(":") and line.strip()[:-1].lower() in _SECTION_NAMES
        ),
        None,
    )
    if start is None:
        return out
    header_indent = _indent(lines[start])
    entry_indent: int | None = None
    current: str | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = _indent(line)
        if indent <= header_indent:
            break  # the next section ("Returns:", ...) or the end of the list
        if entry_indent is None:
            entry_indent = indent
        match = _ENTRY.match(line.strip()) if indent == entry_indent else None
        if match:
            current = match["name"]
            out[current] = match["text"].strip()
        elif current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out
