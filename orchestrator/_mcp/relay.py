"""A call forwarded for an MCP host, with its progress relayed and its
cancellation honoured.

- A host that sent a ``progressToken`` with ``tools/call`` gets each
  :class:`~orchestrator.Progress` the tool reports as ``notifications/progress``
  (progress, total, message), in the order the handler made them: the
  client's callback only queues them, one relay task sends them, and the
  call's result goes back only after the last one.
- A host that sends ``notifications/cancelled`` makes the SDK cancel the
  handler's task; the AsyncClient call it awaits then sends Cancel, so the
  daemon drops the call if it is queued or tells the skill to stop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import anyio
from mcp.server import ServerRequestContext

from .._client.aio import AsyncClient
from .._client.common import CallResult
from .._client.progress import Progress

Ctx = ServerRequestContext[Any, Any]


def wants_progress(ctx: Ctx | None) -> bool:
    """The host sent a progressToken with this request."""
    return ctx is not None and ctx.meta is not None and "progress_token" in ctx.meta


async def call(
    client: AsyncClient,
    skill: str,
    tool: str,
    args: Mapping[str, Any],
    timeout_s: float,
    ctx: Ctx | None,
) -> CallResult:
    """``skill.tool(**args)`` through the daemon; progress to the host if it asked."""
    if ctx is None or not wants_progress(ctx):
        return await client.call_detailed(skill, tool, args, timeout=timeout_s)
    send, receive = anyio.create_memory_object_stream[Progress](max_buffer_size=math.inf)

    async def relay() -> None:
        async with receive:
            async for update in receive:
                await ctx.session.report_progress(update.done, update.total, update.message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(relay)
        with send:  # closed: the relay sends what is left, then ends
            result = await client.call_detailed(
                skill, tool, args, timeout=timeout_s, on_progress=send.send_nowait
            )
    return result


__all__ = ["call", "wants_progress"]
