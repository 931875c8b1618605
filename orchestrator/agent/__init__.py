"""The core agent loop: pydantic-ai for the loop, DBOS for durability
(the ``zskill[agent]`` extra; never imported by ``import orchestrator``).

    from pydantic_ai import Agent
    from orchestrator.agent import SkillToolset, DurableAgent

    agent = Agent(model, toolsets=[SkillToolset("zskill.toml")], name="helper")
    durable = DurableAgent(agent, config="zskill.toml")
    result = durable.run_sync("prompt", task_id="t-42")   # an existing task id resumes

Modules: ``toolset`` (the daemon's live catalog as tools), ``model`` (model
requests as checkpointed steps), ``durable`` (tasks), ``engine`` (DBOS, once
per process), ``executors`` (which processes are alive), ``gate`` (where a
retiring loop stops), ``records`` (what a step records), ``tasks`` (reading
tasks and trajectories), ``loader`` (``module:attribute``), ``worker`` (the
loop as a supervised worker).
"""

from __future__ import annotations

from .durable import DurableAgent, TaskResult
from .errors import AgentError, AgentNotFound, DatabaseError, TaskFailed, TaskNotFound
from .toolset import SkillToolset

__all__ = [
    "AgentError",
    "AgentNotFound",
    "DatabaseError",
    "DurableAgent",
    "SkillToolset",
    "TaskFailed",
    "TaskNotFound",
    "TaskResult",
]
