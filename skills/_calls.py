"""Running calls: at most ``concurrency`` at once, the rest queued in order.

The daemon never sends more calls than the skill's credit, but a skill must
not break if it does (a daemon restarted without the skill, a future daemon
with another policy): extra calls wait here rather than in a thread pool
that would grow without bound.

The I/O loop owns this object: ``submit``, ``finished``, ``drain`` and
``start_ready`` run on the loop's thread only, so the counters need no lock.
The jobs it starts run on a worker thread, the asyncio thread, or -- small
sync handlers, see :mod:`skills._inline` -- right there on the loop's thread;
all report through the Mailbox, and the loop calls ``finished`` once it has
sent their Result.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Mapping

from ipc import Call, SkillUnavailable, ToolNotFound

from ._context import Context
from ._executors import AsyncWorker, ThreadWorkers
from ._inline import FAST_S, MAX_INLINE_AFTER, TAKEOVER_PENALTY, Deposed, InlineGuard
from ._log import log
from ._mailbox import Mailbox
from ._outcome import error_frames, failure_frames, success_frames
from ._progress import ProgressOut
from ._tool import Tool
from ._trace import CallTracing

Job = tuple[Tool, Context, Call]


class CallRunner:
    def __init__(
        self,
        skill: str,
        tools: Mapping[str, Tool],
        *,
        concurrency: int,
        max_bytes: int,
        mailbox: Mailbox,
        threads: ThreadWorkers | None,
        loop: AsyncWorker | None,
        guard: InlineGuard | None = None,
        tracing: CallTracing | None = None,
        progress: ProgressOut | None = None,
    ) -> None:
        if any(t.is_async for t in tools.values()) and loop is None:
            raise ValueError("async tools need an AsyncWorker")
        if any(not t.is_async for t in tools.values()) and threads is None:
            raise ValueError("sync tools need ThreadWorkers")
        self._skill = skill
        self._tools = dict(tools)
        self._limit = concurrency
        self._max_bytes = max_bytes
        self._mailbox = mailbox
        self._threads = threads
        self._loop = loop
        self._guard = guard
        self._tracing = tracing if tracing is not None else CallTracing(skill)
        self.progress = progress if progress is not None else ProgressOut(lambda: None)
        self._running = 0
        self._queued: deque[Job] = deque()
        self._ready: deque[Job] = deque()
        self._draining = False
        # Every accepted call not answered yet, for Cancel. Workers remove
        # their own (dict operations are atomic under the GIL).
        self._contexts: dict[int, Context] = {}

    @property
    def in_flight(self) -> int:
        """Calls accepted and not yet answered: running or queued."""
        return self._running + len(self._queued)

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Refuse new calls from now on; accepted ones still run."""
        self._draining = True

    def submit(self, call: Call) -> list[bytes] | None:
        """Accept ``call``, or return the frames of its immediate error Result.

        A call to a tool that runs inline, with a slot free, runs right here:
        its Result is in the Mailbox on return, and the loop can send it
        before it reads the next message. Raises Deposed (see start_ready)."""
        tool = self._tools.get(call.tool)
        if tool is None:
            return error_frames(
                call.call_id,
                ToolNotFound(
                    f"skill {self._skill!r} has no tool {call.tool!r} "
                    f"(it has: {', '.join(sorted(self._tools)) or 'none'})",
                    skill=self._skill,
                    tool=call.tool,
                ).to_wire(),
            )
        if self._draining:
            return error_frames(
                call.call_id,
                SkillUnavailable(
                    f"skill {self._skill!r} is draining and takes no new call",
                    skill=self._skill,
                    reason="draining",
                ).to_wire(),
            )
        ctx = Context(
            call.call_id,
            tool.name,
            time.monotonic() + call.timeout_s,
            getattr(call, "session", None),  # a newer daemon's header field
            self.progress if call.progress else None,
        )
        self._contexts[call.call_id] = ctx
        if self._running < self._limit:
            if tool.runs_inline():
                self._running += 1
                self._run_inline(tool, ctx, call)
            else:
                self._start(tool, ctx, call)
        else:
            self._queued.append((tool, ctx, call))
        return None

    def cancel(self, call_id: int, reason: str) -> list[bytes] | None:
        """The daemon cancelled ``call_id``: a call still queued here is
        answered Cancelled at once (the frames returned); a running one is
        told (its context; an async handler's task is cancelled)."""
        ctx = self._contexts.get(call_id)
        if ctx is None:
            return None  # answered already
        ctx.cancel(reason)
        for job in self._queued:
            if job[1] is ctx:
                self._queued.remove(job)
                del self._contexts[call_id]
                return error_frames(call_id, ctx.error().to_wire())
        return None

    def finished(self) -> None:
        """One started call's Result has been sent: start the next queued one."""
        self._running -= 1
        if self._queued and self._running < self._limit:
            self._start(*self._queued.popleft())

    def start_ready(self) -> None:
        """Hand the calls accepted since the last time to their executors.

        The loop calls this once per turn, after reading the socket, not as
        each call arrives: a worker woken while this thread still runs Python
        would only wake up to wait for the GIL, and a burst of calls would
        bounce the GIL between the loop and the workers it just woke.

        Raises Deposed if an inline handler blocked long enough for another
        thread to take the loop over; the calls not started yet stay ready
        for that thread.
        """
        ready = self._ready
        while ready:
            tool, ctx, call = ready.popleft()
            if tool.is_async:
                assert self._loop is not None
                self._loop.submit(self._run_async(tool, ctx, call))
            elif tool.runs_inline():
                self._run_inline(tool, ctx, call)
            else:
                assert self._threads is not None
                self._threads.submit(functools.partial(self._run_sync, tool, ctx, call))

    def _run_inline(self, tool: Tool, ctx: Context, call: Call) -> None:
        guard = self._guard
        if guard is None:
            self._run_sync(tool, ctx, call)
            return
        run = guard.begin(tool.name)
        self._run_sync(tool, ctx, call)  # posts its own Result
        if guard.end(run):
            tool.fast_runs = 0
            tool.inline_after = min(tool.inline_after * TAKEOVER_PENALTY, MAX_INLINE_AFTER)
            if not tool.inline:
                log(
                    f"tool {tool.name!r} ended; it runs on the pool "
                    f"until {tool.inline_after} fast calls in a row"
                )
            raise Deposed

    def _start(self, tool: Tool, ctx: Context, call: Call) -> None:
        self._running += 1
        self._ready.append((tool, ctx, call))

    def _run_sync(self, tool: Tool, ctx: Context, call: Call) -> None:
        started = time.perf_counter()
        call_id = ctx.call_id
        try:
            if ctx._cancelled:
                raise ctx.error()  # cancelled before it began
            kwargs = tool.arguments(call.payload)
            if tool.context_param is not None:
                kwargs[tool.context_param] = ctx
            with self._tracing.span(tool.name, call.traceparent):
                value = tool.fn(**kwargs)
            frames = success_frames(call_id, tool.name, value, self._max_bytes)
        except BaseException as exc:
            # BaseException too: a handler calling sys.exit() must still
            # answer its call, and must not kill the worker thread.
            frames = failure_frames(call_id, exc)
        if time.perf_counter() - started < FAST_S:
            tool.fast_runs += 1
        else:
            tool.fast_runs = 0
        self._done(ctx, frames)

    async def _run_async(self, tool: Tool, ctx: Context, call: Call) -> None:
        call_id = ctx.call_id
        ctx._loop = asyncio.get_running_loop()
        ctx._task = asyncio.current_task()
        try:
            if ctx._cancelled:
                raise ctx.error()  # cancelled before it began (or just now)
            kwargs = tool.arguments(call.payload)
            if tool.context_param is not None:
                kwargs[tool.context_param] = ctx
            with self._tracing.span(tool.name, call.traceparent):
                value = await tool.fn(**kwargs)
            frames = success_frames(call_id, tool.name, value, self._max_bytes)
        except asyncio.CancelledError as exc:  # still answer
            frames = failure_frames(call_id, ctx.error() if ctx._cancelled else exc)
        except BaseException as exc:
            frames = failure_frames(call_id, exc)
        self._done(ctx, frames)

    def _done(self, ctx: Context, frames: list[bytes]) -> None:
        """The handler's thread: its last progress update, then its Result."""
        self._contexts.pop(ctx.call_id, None)
        self.progress.finish(ctx)
        self._mailbox.post_result(frames)
