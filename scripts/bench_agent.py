#!/usr/bin/env python3
"""What durability costs the core agent loop, per step, on SQLite.

One agent (a scripted FunctionModel, so the model costs nothing) makes
``--steps`` steps, each a model request and a call of a 5 ms tool
(``slow.work``) through a real daemon and skill process. The same agent runs:

  plain     agent.run(): pydantic-ai alone, no checkpoint;
  durable   DurableAgent.run(): every model request, tool list and tool call a
            DBOS step checkpointed to SQLite, each call keyed;
  resume    a finished task's checkpoints replayed from the start (DBOS's
            fork from the last step: what resuming after a crash reads),
            with nothing left to run.

Reports the median of ``--runs`` runs of each, alternated, and the
per-step overhead of durable over plain (target: at most 2 ms per step).

    .venv/bin/python scripts/bench_agent.py [--steps 40] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from _harness import LocalDaemon, skill_table

TOOL_MS = 5.0


def build(config: str, steps: int) -> tuple[Any, Any]:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from orchestrator.agent import DurableAgent, SkillToolset

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        if done < steps:
            return ModelResponse(parts=[ToolCallPart("slow__work", {"ms": TOOL_MS})])
        return ModelResponse(parts=[TextPart(f"{done} steps")])

    agent = Agent(FunctionModel(script), toolsets=[SkillToolset(config)], name="bench")
    return agent, DurableAgent(agent, config=config, version="bench")


async def bench(config: str, steps: int, runs: int) -> dict[str, list[float]]:
    from dbos import DBOS

    from orchestrator.agent.records import TOOL_STEP

    agent, durable = build(config, steps)
    times: dict[str, list[float]] = {"plain": [], "durable": [], "resume": []}
    await agent.run("warm up")
    await durable.run("warm up")
    for i in range(runs):
        t0 = time.perf_counter()
        await agent.run("go")
        times["plain"].append(time.perf_counter() - t0)

        task_id = f"bench-{os.getpid()}-{i}"
        t0 = time.perf_counter()
        await durable.run("go", task_id=task_id)
        times["durable"].append(time.perf_counter() - t0)

        recorded = await asyncio.to_thread(DBOS.list_workflow_steps, task_id)
        assert sum(s["function_name"] == TOOL_STEP for s in recorded) == steps
        last = max(s["function_id"] for s in recorded)
        t0 = time.perf_counter()
        handle = await asyncio.to_thread(DBOS.fork_workflow, task_id, last + 1)
        await asyncio.to_thread(handle.get_result)
        times["resume"].append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    with LocalDaemon(skill_table("slow", concurrency=4), prefix="zba") as d:
        times = asyncio.run(bench(str(d.config), opts.steps, opts.runs))
    plain, durable, resume = (statistics.median(times[k]) for k in ("plain", "durable", "resume"))
    per_step_ms = (durable - plain) / opts.steps * 1000
    print(f"{opts.steps} steps of a {TOOL_MS:g} ms tool, median of {opts.runs} runs (SQLite)\n")
    print(f"{'run':<10}{'total s':>10}{'per step ms':>14}")
    for name, value in (("plain", plain), ("durable", durable), ("resume", resume)):
        print(f"{name:<10}{value:>10.3f}{value / opts.steps * 1000:>14.2f}")
    print(f"\ndurability overhead per step: {per_step_ms:.2f} ms (target <= 2 ms)")
    print(f"resume, replaying {opts.steps} steps: {resume * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
