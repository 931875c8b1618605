"""``SkillToolset``: the daemon's live catalog as pydantic-ai tools.

Every running skill's tools, named ``skill__tool`` exactly as the MCP bridge
names them (:func:`orchestrator._mcp.names.tool_name`), with the schemas and
descriptions the skills announce. Calls go over ZeroMQ through the daemon
(:class:`~orchestrator.AsyncClient`), never through MCP.

Live: pydantic-ai asks a toolset for its tools at every run step (each model
request), and this one asks the daemon each time, so after an upgrade that
changed a skill's tools the next model request sees the new list.

What the model sees when a call does not return a value:

- the tool ran and raised (``RemoteError``), the skill is unavailable or
  overloaded, the call timed out: a failed tool result with the error
  (``ToolFailed``), to adapt to;
- its arguments do not fit the schema, the tool or skill is gone: a retry
  prompt (``ModelRetry``), to correct the call;
- ``OutcomeUnknown`` (the process serving it died mid-call): a tool result
  saying the outcome is unknown, so the model can check before repeating.

In a durable task (:class:`~orchestrator.agent.DurableAgent`) the tool list
and every call are checkpointed steps, and each call carries an idempotency
key made of the task id, the step number and the model's tool call id: a task
resumed after a crash never repeats a call that happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS
from pydantic_ai.exceptions import ModelRetry, ToolFailed
from pydantic_ai.tools import RunContext, ToolDefinition
from pydantic_ai.toolsets import AbstractToolset, ToolsetTool
from pydantic_ai.toolsets.external import TOOL_SCHEMA_VALIDATOR

from ipc import (
    CallTimeout,
    DaemonUnavailable,
    InvalidArguments,
    OutcomeUnknown,
    RemoteError,
    SkillNotFound,
    ToolNotFound,
    ZskillError,
)

from .._client.aio import AsyncClient
from .._mcp.names import object_schema, tool_name
from . import gate
from .model import in_task
from .records import TOOL_LIST_STEP, TOOL_STEP, ToolList, ToolStep
from .spans import span

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["SkillToolset"]

_META = "zskill"
DAEMON_WAIT_S = 30.0
"""How long a call waits for a daemon that is away (restarting) before failing."""


class SkillToolset(AbstractToolset[Any]):
    """The tools of every running skill (or of ``skills`` only)."""

    def __init__(
        self,
        config: str | Path | Config | AsyncClient = "zskill.toml",
        *,
        skills: list[str] | None = None,
        id: str = "zskill",
        timeout_s: float | None = None,
        max_retries: int = 2,
    ) -> None:
        self._target = config
        self._skills = set(skills) if skills is not None else None
        self._id = id
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._clients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}
        self.loop_version = ""  # set by DurableAgent, recorded with each step

    @property
    def id(self) -> str:
        return self._id

    def client(self) -> AsyncClient:
        """The client for the running event loop (an AsyncClient serves one loop)."""
        if isinstance(self._target, AsyncClient):
            return self._target
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            target = self._target
            if isinstance(target, (str, Path)) and Path(target).suffix == ".toml":
                from .._config import load

                target = load(target)
            client = AsyncClient(target)
            self._clients[loop] = client
        return client

    async def __aexit__(self, *args: Any) -> bool | None:
        return None

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # --- the tool list ---------------------------------------------------------

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        if in_task():
            async with gate.step():
                listed = await DBOS.run_step_async({"name": TOOL_LIST_STEP}, self._list)
        else:
            listed = await self._list()
        return {name: self._tool(name, spec) for name, spec in listed.tools.items()}

    async def _list(self) -> ToolList:
        listing = await self._with_daemon(lambda c: c.tools())
        tools: dict[str, Any] = {}
        for skill, items in sorted(listing.items()):
            if self._skills is not None and skill not in self._skills:
                continue
            for item in items:
                name = item.get("name")
                if not isinstance(name, str):
                    continue  # one odd entry must not hide the others
                description = item.get("description")
                tools.setdefault(
                    tool_name(skill, name),
                    {
                        "skill": skill,
                        "tool": name,
                        "description": description if isinstance(description, str) else "",
                        "input_schema": object_schema(item.get("input_schema")),
                    },
                )
        return ToolList(tools, self.loop_version)

    def _tool(self, name: str, spec: dict[str, Any]) -> ToolsetTool[Any]:
        return ToolsetTool(
            toolset=self,
            tool_def=ToolDefinition(
                name=name,
                parameters_json_schema=spec["input_schema"],
                description=spec["description"] or f"{spec['tool']} of the skill {spec['skill']}",
                metadata={_META: {"skill": spec["skill"], "tool": spec["tool"]}},
            ),
            max_retries=self._max_retries,
            # The daemon checks the arguments against the skill's schema.
            args_validator=TOOL_SCHEMA_VALIDATOR,
        )

    # --- a call ----------------------------------------------------------------

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        route = (tool.tool_def.metadata or {}).get(_META) or {}
        skill, tool_name = str(route.get("skill", "")), str(route.get("tool", ""))
        call_id = ctx.tool_call_id or ""

        async def call() -> ToolStep:
            key = None
            if DBOS.workflow_id is not None:
                key = f"{DBOS.workflow_id}:{DBOS.step_id}:{call_id}"
            return await self._call(name, skill, tool_name, tool_args, key)

        if in_task():
            async with gate.step():
                step = await DBOS.run_step_async({"name": TOOL_STEP}, call)
        else:
            step = await call()
        return _to_model(step)

    async def _call(
        self, name: str, skill: str, tool: str, args: dict[str, Any], key: str | None
    ) -> ToolStep:
        started = time.perf_counter()

        def done(
            outcome: Any, value: Any, error: ZskillError | None, version: str | None
        ) -> ToolStep:
            return ToolStep(
                name=name,
                skill=skill,
                tool=tool,
                key=key or "",
                outcome=outcome,
                value=value,
                error_type=type(error).__name__ if error is not None else None,
                skill_version=version,
                loop_version=self.loop_version,
                duration_s=time.perf_counter() - started,
            )

        task = key.rsplit(":", 2)[0] if key else None
        with span(
            "agent.tool_call", task=task, skill=skill, tool=tool, loop_version=self.loop_version
        ) as current:
            step = await self._outcome(skill, tool, args, key, done)
            current.set(skill_version=step.skill_version, outcome=step.outcome)
        return step

    async def _outcome(
        self,
        skill: str,
        tool: str,
        args: dict[str, Any],
        key: str | None,
        done: Callable[..., ToolStep],
    ) -> ToolStep:
        try:
            result = await self._with_daemon(
                lambda c: _call_keyed(c, skill, tool, args, key, self._timeout_s)
            )
        except OutcomeUnknown as exc:
            text = (
                f"outcome unknown: {skill}.{tool} may or may not have run ({exc.message}); "
                "check its effect before calling it again"
            )
            return done("unknown", text, exc, None)
        except ZskillError as exc:
            return done("error", _describe(exc), exc, exc.details.get("version"))
        return done("ok", result.value, None, result.version)

    async def _with_daemon(self, op: Any) -> Any:
        """``op(client)``, waiting out a daemon that is away for a moment
        (restarting): a call it never accepted is safe to send again."""
        deadline = time.monotonic() + DAEMON_WAIT_S
        delay_s = 0.05
        while True:
            try:
                return await op(self.client())
            except DaemonUnavailable:
                if time.monotonic() + delay_s > deadline:
                    raise
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 1.0)


async def _call_keyed(
    client: AsyncClient,
    skill: str,
    tool: str,
    args: dict[str, Any],
    key: str | None,
    timeout_s: float | None,
) -> Any:
    return await client.call_detailed(skill, tool, args, timeout=timeout_s, key=key)


def _describe(exc: ZskillError) -> str:
    kind = exc.details.get("type") or type(exc).__name__
    if isinstance(exc, RemoteError) and exc.remote_type:
        kind = exc.remote_type
    return f"{kind}: {exc.message}"


def _to_model(step: ToolStep) -> Any:
    """What the model sees of a recorded call."""
    if step.outcome == "ok":
        return step.value
    if step.outcome == "unknown":
        return step.value
    if step.error_type in (
        InvalidArguments.__name__,
        ToolNotFound.__name__,
        SkillNotFound.__name__,
    ):
        raise ModelRetry(f"{step.skill}.{step.tool}: {step.value}")
    if step.error_type == CallTimeout.__name__:
        return f"timed out: {step.skill}.{step.tool} ({step.value}); its outcome is unknown"
    raise ToolFailed(f"{step.skill}.{step.tool} failed: {step.value}")
