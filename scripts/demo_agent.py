"""The demo's core loop: a real pydantic-ai agent on zskill's skills, with a
scripted model (FunctionModel: no network, no API key) so the demo runs
anywhere. Swap ``FunctionModel(plan)`` for ``"openai:gpt-4o-mini"`` (or any
provider) and it is the same loop on a real model.

The script: DEMO_STEPS tool calls, cycling through echo.say, slow.work and
clock.now; once an upgrade has given echo a ``shout`` tool (seen in the live
tool list), it calls that too; then it answers. Each model request appends a
line to DEMO_PROGRESS (the demo waits on it).

    zskill agent run demo_agent:agent "survey the skills" --task-id demo
"""

from __future__ import annotations

import os

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from orchestrator.agent import SkillToolset

STEPS = int(os.environ.get("DEMO_STEPS", "30"))
CYCLE = (
    ("echo__say", {"text": "hello", "times": 2}),
    ("slow__work", {"ms": 250}),
    ("clock__now", {}),
    ("slow__work", {"ms": 250}),
)


def plan(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    tools = {t.name for t in info.function_tools}
    progress = os.environ.get("DEMO_PROGRESS")
    if progress:
        with open(progress, "a") as f:
            f.write(f"{done}\n")
    called = {
        p.tool_name
        for m in messages
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, ToolCallPart)
    }
    if done >= STEPS:
        return ModelResponse(parts=[TextPart(f"surveyed the skills in {done} tool calls")])
    if "echo__shout" in tools and "echo__shout" not in called:
        return ModelResponse(parts=[ToolCallPart("echo__shout", {"text": "a new tool"})])
    name, args = CYCLE[done % len(CYCLE)]
    return ModelResponse(parts=[ToolCallPart(name, args)])


agent = Agent(
    FunctionModel(plan),
    toolsets=[SkillToolset(os.environ.get("ZSKILL_CONFIG", "zskill.toml"))],
    name="demo",
)
