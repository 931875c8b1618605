"""``DurableAgent``: a pydantic-ai agent whose runs are tasks that survive.

A task is one DBOS workflow (its id is the task id) running ``agent.run``;
each model request (``model.DurableModel``), each look at the tool list and
each tool call (``toolset.SkillToolset``) is a checkpointed step. A task
resumed after its loop process died replays the recorded steps without
doing them again and goes on from the first step that had not completed.

    agent = Agent(model, toolsets=[SkillToolset("zskill.toml")], name="helper")
    durable = DurableAgent(agent, config="zskill.toml")
    result = durable.run_sync("prompt", task_id="t-42")  # an existing id resumes

Resuming (``run`` with an existing id, ``zskill task resume``): a finished
task returns its recorded output; one still run by a live process is waited
for; one whose process is gone is re-enqueued through DBOS, which admits
exactly one process to run it (this one, or a loop worker).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS, SetWorkflowID
from pydantic_ai import Agent
from pydantic_ai.models import infer_model
from pydantic_ai.usage import UsageLimits

from .engine import TASK_WORKFLOW, Engine, database_url
from .errors import AgentError, TaskFailed, TaskNotFound
from .model import DurableModel
from .toolset import SkillToolset

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["DurableAgent", "TaskResult", "new_task_id"]

DEFAULT_REQUEST_LIMIT = 1000
"""Model requests one task may make, unless ``usage_limits`` says otherwise."""

_registered: DurableAgent | None = None


@dataclass(frozen=True, slots=True)
class TaskResult:
    task_id: str
    output: Any


def new_task_id() -> str:
    return f"t-{secrets.token_hex(4)}"


class DurableAgent:
    """``agent``'s runs as durable tasks in the task database of ``config``."""

    def __init__(
        self,
        agent: Agent[Any, Any],
        config: str | Path | Config = "zskill.toml",
        *,
        database_url: str | None = None,
        version: str | None = None,
        import_string: str | None = None,
        usage_limits: UsageLimits | None = None,
    ) -> None:
        global _registered
        if _registered is not None:
            raise AgentError(
                "one DurableAgent per process: its tasks are the workflow "
                f"{TASK_WORKFLOW!r} of the task database"
            )
        from .._config import Config, load

        self.config = config if isinstance(config, Config) else load(config)
        self.url = database_url or _database_url(self.config)
        self.version = (
            version or self.config.agent.version or os.environ.get("ZSKILL_LOOP_VERSION") or "1"
        )
        self.agent = agent
        # A task is long by nature: pydantic-ai's default of 50 model requests
        # a run would end a 50-step task one request short.
        self.usage_limits = usage_limits or UsageLimits(request_limit=DEFAULT_REQUEST_LIMIT)
        self.import_string = import_string or self.config.agent.agent or ""
        if agent.model is None:
            raise AgentError("the agent needs a model to run durably (Agent(model, ...))")
        self.model = DurableModel(infer_model(agent.model), self.version)
        for toolset in agent.toolsets:
            toolset.apply(self._version_toolset)
        durable = self

        async def task(prompt: str, info: dict[str, Any]) -> Any:
            return await durable._task(prompt, info)

        self._workflow = DBOS.workflow(name=TASK_WORKFLOW)(task)
        _registered = self

    def _version_toolset(self, toolset: Any) -> None:
        if isinstance(toolset, SkillToolset):
            toolset.loop_version = self.version

    async def _task(self, prompt: str, info: dict[str, Any]) -> Any:
        # Tool calls one at a time: DBOS numbers steps as they start, and a
        # replay must meet them in the same order.
        with (
            self.agent.override(model=self.model),
            self.agent.parallel_tool_call_execution_mode("sequential"),
        ):
            result = await self.agent.run(prompt, usage_limits=self.usage_limits)
        return result.output

    # --- running tasks ------------------------------------------------------------

    def launch(self, *, queues: tuple[str, ...] = ()) -> Engine:
        engine = Engine.launch(self.url, queues=queues, concurrency=self.config.agent.concurrency)
        engine.executors.set_loop_version(self.version)
        return engine

    def run_sync(self, prompt: str, *, task_id: str | None = None) -> TaskResult:
        return asyncio.run(self._run_closing(prompt, task_id))

    async def _run_closing(self, prompt: str, task_id: str | None) -> TaskResult:
        try:
            return await self.run(prompt, task_id=task_id)
        finally:
            for toolset in self.agent.toolsets:
                if isinstance(toolset, SkillToolset):
                    await toolset.aclose()

    async def run(self, prompt: str, *, task_id: str | None = None) -> TaskResult:
        """Run a new task, or resume ``task_id`` if it exists; its output."""
        self.launch()
        task_id = task_id or new_task_id()
        status = await asyncio.to_thread(DBOS.get_workflow_status, task_id)
        if status is None:
            with SetWorkflowID(task_id):
                output = await self._workflow(prompt, self._info())
            return TaskResult(task_id, output)
        return await self.resume(task_id)

    async def resume(self, task_id: str) -> TaskResult:
        """Wait for ``task_id``'s output, taking it over if its process is gone."""
        engine = self.launch()
        status = await asyncio.to_thread(DBOS.get_workflow_status, task_id)
        if status is None:
            raise TaskNotFound(f"no task {task_id!r} in {self.url}")
        if status.status == "ERROR":
            raise TaskFailed(f"task {task_id} failed: {status.error!r}", task_id=task_id)
        if status.status in ("CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED") or (
            status.status == "PENDING" and not engine.executors.alive(status.executor_id)
        ):
            # Onto DBOS's own queue, which every process running tasks takes
            # from (this one included): exactly one of them dequeues it.
            await asyncio.to_thread(DBOS.resume_workflow, task_id)
        handle: Any = await DBOS.retrieve_workflow_async(task_id)
        try:
            output = await handle.get_result()
        except Exception as exc:
            raise TaskFailed(f"task {task_id} failed: {exc!r}", task_id=task_id) from exc
        return TaskResult(task_id, output)

    def _info(self) -> dict[str, Any]:
        return {"agent": self.import_string, "loop_version": self.version}


def _database_url(config: Config) -> str:
    return database_url(config)
