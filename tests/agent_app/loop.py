"""The agent the agent-loop tests run: a scripted model (no network) that
calls ledger__record once per step for AGENT_STEPS steps, then answers.

- AGENT_TOOLS_FILE: each model request appends the tool names it was shown;
- AGENT_FAIL_AT: at that step it calls ledger__fail instead, and its answer
  quotes what it was told;
- AGENT_STEP_S: each model request takes this long;
- AGENT_MODEL=openai: the model is ``openai:gpt-test`` (OPENAI_BASE_URL
  points it at the test's fake server) instead of the scripted one.

Run as a script it runs (or resumes) one task: python loop.py CONFIG TASK_ID
"""

from __future__ import annotations

import os
import sys
import time

from dbos import DBOS
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from orchestrator.agent import DurableAgent, SkillToolset

STEPS = int(os.environ.get("AGENT_STEPS", "5"))
FAIL_AT = int(os.environ.get("AGENT_FAIL_AT", "-1"))
CONFIG = os.environ.get("ZSKILL_CONFIG", "zskill.toml")
TOOLS_FILE = os.environ.get("AGENT_TOOLS_FILE")
STEP_S = float(os.environ.get("AGENT_STEP_S", "0"))


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    time.sleep(STEP_S)  # a model that takes its time
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    names = sorted(t.name for t in info.function_tools)
    if TOOLS_FILE:
        with open(TOOLS_FILE, "a") as f:
            f.write(f"{done} {' '.join(names)}\n")
    if done == FAIL_AT:
        return ModelResponse(parts=[ToolCallPart("ledger__fail", {"message": "boom"})])
    if done < STEPS:
        task = DBOS.workflow_id or ""  # the model runs inside its task's step
        return ModelResponse(parts=[ToolCallPart("ledger__record", {"step": done, "task": task})])
    told = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts]
    heard = [str(getattr(p, "content", "")) for p in told if p.part_kind != "user-prompt"]
    failed = [h for h in heard if "boom" in h]
    return ModelResponse(parts=[TextPart(f"done after {done} steps; told {failed}")])


def export_spans(path: str) -> None:
    """This process's OpenTelemetry spans, as JSON lines in ``path``."""
    import json
    from collections.abc import Sequence

    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class ToFile(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            with open(path, "a") as f:
                for s in spans:
                    attributes = dict(s.attributes or {})
                    f.write(json.dumps({"name": s.name, "attributes": attributes}) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ToFile()))
    trace.set_tracer_provider(provider)


if os.environ.get("AGENT_SPANS_FILE"):
    export_spans(os.environ["AGENT_SPANS_FILE"])

model = "openai:gpt-test" if os.environ.get("AGENT_MODEL") == "openai" else FunctionModel(script)
agent = Agent(model, toolsets=[SkillToolset(CONFIG)], name="ledger_agent")

if __name__ == "__main__":
    durable = DurableAgent(agent, config=sys.argv[1])
    result = durable.run_sync("keep the ledger", task_id=sys.argv[2])
    print(result.output, flush=True)
