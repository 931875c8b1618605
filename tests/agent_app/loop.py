"""The agent the agent-loop tests run: a scripted model (no network) that
calls ledger__record once per step for AGENT_STEPS steps, then answers.

Run as a script it runs (or resumes) one task: python loop.py CONFIG TASK_ID
"""

from __future__ import annotations

import os
import sys

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from orchestrator.agent import DurableAgent, SkillToolset

STEPS = int(os.environ.get("AGENT_STEPS", "5"))
CONFIG = os.environ.get("ZSKILL_CONFIG", "zskill.toml")


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    if done < STEPS:
        names = sorted(t.name for t in info.function_tools)
        assert "ledger__record" in names, names
        return ModelResponse(parts=[ToolCallPart("ledger__record", {"step": done})])
    return ModelResponse(parts=[TextPart(f"done after {done} steps")])


agent = Agent(FunctionModel(script), toolsets=[SkillToolset(CONFIG)], name="ledger_agent")

if __name__ == "__main__":
    durable = DurableAgent(agent, config=sys.argv[1])
    result = durable.run_sync("keep the ledger", task_id=sys.argv[2])
    print(result.output, flush=True)
