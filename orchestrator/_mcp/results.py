"""How a skill call's outcome becomes an MCP tool result.

- a ``str`` result -> one text block, as is;
- any other result -> its JSON as text, and the same value as structured
  content (an object as is, anything else as ``{"result": value}``, since
  hosts on protocols before 2026-07-28 accept only an object there);
- a tool with an output schema (from its return type) gets structured content
  that matches it: ``{"result": value}`` where the schema says the result is
  wrapped (a ``str`` too), the value itself where it is an object. A value
  that cannot match (an object schema, a value that is not one) goes as text
  only, never as structured content that contradicts the schema;
- a failure (the handler raised, bad arguments, timeout, outcome unknown, the
  skill stopped, the daemon gone...) -> a tool error (``isError``) whose text
  says what happened and what the model can do about it. Failures are tool
  errors, not protocol errors, so the model reads them and can react.
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as types

from ipc import (
    RESULT_WRAPPED,
    CallTimeout,
    DaemonUnavailable,
    InvalidArguments,
    OutcomeUnknown,
    RemoteError,
    SkillNotFound,
    SkillUnavailable,
    ToolNotFound,
    ZskillError,
)

from .._json import json_default

__all__ = ["error_result", "failure", "restarting", "value_result"]

VERSION_META_KEY = "zskill/version"
"""``_meta`` key of a result: the skill version that served the call."""


def _jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold made plain: msgpack may carry bytes
    (base64 text here) and maps with non-string keys (stringified)."""
    return json.loads(json.dumps(value, default=json_default, ensure_ascii=False))


def value_result(
    value: Any, *, version: str | None = None, output_schema: dict[str, Any] | None = None
) -> types.CallToolResult:
    """A successful call's result as MCP content."""
    meta = {VERSION_META_KEY: version} if version else None
    plain = value if isinstance(value, str) else _jsonable(value)
    text = plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
    structured: dict[str, Any] | None
    if output_schema is not None:
        if output_schema.get(RESULT_WRAPPED) is True:
            structured = {"result": plain}
        else:
            structured = plain if isinstance(plain, dict) else None
    elif isinstance(value, str):
        structured = None
    else:
        structured = plain if isinstance(plain, dict) else {"result": plain}
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, _meta=meta
    )


def failure(text: str) -> types.CallToolResult:
    """A tool error the model reads."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def error_result(skill: str, tool: str, exc: ZskillError) -> types.CallToolResult:
    """A failed call of ``skill.tool`` as a tool error that says what happened."""
    return failure(describe(skill, tool, exc))


def restarting(what: str, why: str) -> str:
    """A call made while the daemon is down: most likely it is restarting."""
    return (
        f"{what}: the zskill daemon is restarting (or down): {why}. The tool list "
        "is kept and the bridge reconnects by itself: retry in a few seconds."
    )


def describe(skill: str, tool: str, exc: ZskillError) -> str:
    what = f"{skill}.{tool}"
    kind = str(exc.details.get("type") or type(exc).__name__)
    if isinstance(exc, RemoteError):
        remote = exc.remote_type or "error"
        return f"{what} raised {remote}: {exc.message}"
    if isinstance(exc, InvalidArguments):
        return f"{what}: invalid arguments: {exc.message}"
    if isinstance(exc, CallTimeout):
        return f"{what} timed out: {exc.message}"
    if isinstance(exc, OutcomeUnknown):
        return (
            f"{what}: outcome unknown: {exc.message}. The skill's process died during the "
            "call; it may or may not have taken effect. Check before retrying."
        )
    if isinstance(exc, (SkillNotFound, SkillUnavailable)):
        return f"{what}: skill {skill!r} is not available: {exc.message}"
    if isinstance(exc, ToolNotFound):
        return f"{what}: no such tool (it may have been removed by an upgrade): {exc.message}"
    if isinstance(exc, DaemonUnavailable):
        return restarting(what, exc.message)
    return f"{what} failed: {kind}: {exc.message}"
