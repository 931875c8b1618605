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

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AgentError, AgentNotFound, DatabaseError, TaskFailed, TaskNotFound

if TYPE_CHECKING:
    from .durable import DurableAgent, TaskResult
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

# pydantic-ai loads on first use (PEP 562): reading tasks (zskill tasks) needs
# only DBOS.
_LAZY = {"DurableAgent": "durable", "TaskResult": "durable", "SkillToolset": "toolset"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
