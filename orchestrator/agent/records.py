"""What each checkpointed step of a task records (DBOS keeps it, pickled).

A task's trajectory is read back from these: ``ModelStep`` for each model
request, ``ToolStep`` for each tool call, with the loop version that ran the
step and, for a tool, the skill version that served it. Fields are only ever
added, with defaults, so a task checkpointed by an older loop still reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MODEL_STEP", "TOOL_LIST_STEP", "TOOL_STEP", "ModelStep", "ToolList", "ToolStep"]

MODEL_STEP = "zskill.model_request"
TOOL_LIST_STEP = "zskill.list_tools"
TOOL_STEP = "zskill.call_tool"

Outcome = Literal["ok", "error", "unknown"]


@dataclass(frozen=True)
class ModelStep:
    response: dict[str, Any]  # a ModelResponse as JSON-able data (pydantic-ai's own form)
    loop_version: str
    duration_s: float


@dataclass(frozen=True)
class ToolList:
    """The tools the model was shown at one run step (the live catalog then)."""

    tools: dict[str, Any]  # name -> {"skill", "tool", "description", "input_schema"}
    loop_version: str


@dataclass(frozen=True)
class ToolStep:
    name: str  # skill__tool
    skill: str
    tool: str
    key: str  # the idempotency key: task, step and tool call id
    outcome: Outcome
    value: Any  # the result, or the error text the model sees
    error_type: str | None
    skill_version: str | None
    loop_version: str
    duration_s: float
