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

import functools
import time
from collections import deque
from collections.abc import Mapping

from ipc import Call, SkillUnavailable, ToolNotFound

from ._executors import AsyncWorker, ThreadWorkers
from ._inline import FAST_S, MAX_INLINE_AFTER, TAKEOVER_PENALTY, Deposed, InlineGuard
from ._log import log
from ._mailbox import Mailbox
from ._outcome import error_frames, failure_frames, success_frames
from ._tool import Tool
from ._trace import CallTracing


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
        self._running = 0
        self._queued: deque[tuple[Tool, Call]] = deque()
        self._ready: deque[tuple[Tool, Call]] = deque()
        self._draining = False

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
        if self._running < self._limit:
            if tool.runs_inline():
                self._running += 1
                self._run_inline(tool, call)
            else:
                self._start(tool, call)
        else:
            self._queued.append((tool, call))
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
            tool, call = ready.popleft()
            if tool.is_async:
                assert self._loop is not None
                self._loop.submit(self._run_async(tool, call))
            elif tool.runs_inline():
                self._run_inline(tool, call)
            else:
                assert self._threads is not None
                self._threads.submit(functools.partial(self._run_sync, tool, call))

    def _run_inline(self, tool: Tool, call: Call) -> None:
        guard = self._guard
        if guard is None:
            self._run_sync(tool, call)
            return
        run = guard.begin(tool.name)
        self._run_sync(tool, call)  # posts its own Result
        if guard.end(run):
            tool.fast_runs = 0
            tool.inline_after = min(tool.inline_after * TAKEOVER_PENALTY, MAX_INLINE_AFTER)
            if not tool.inline:
                log(
                    f"tool {tool.name!r} ended; it runs on the pool "
                    f"until {tool.inline_after} fast calls in a row"
                )
            raise Deposed

    def _start(self, tool: Tool, call: Call) -> None:
        self._running += 1
        self._ready.append((tool, call))

    def _run_sync(self, tool: Tool, call: Call) -> None:
        started = time.perf_counter()
        try:
            with self._tracing.span(tool.name, call.traceparent):
                value = tool.fn(**tool.arguments(call.payload))
            frames = success_frames(call.call_id, tool.name, value, self._max_bytes)
        except BaseException as exc:
            # BaseException too: a handler calling sys.exit() must still
            # answer its call, and must not kill the worker thread.
            frames = failure_frames(call.call_id, exc)
        if time.perf_counter() - started < FAST_S:
            tool.fast_runs += 1
        else:
            tool.fast_runs = 0
        self._mailbox.post_result(frames)

    async def _run_async(self, tool: Tool, call: Call) -> None:
        try:
            with self._tracing.span(tool.name, call.traceparent):
                value = await tool.fn(**tool.arguments(call.payload))
            frames = success_frames(call.call_id, tool.name, value, self._max_bytes)
        except BaseException as exc:  # CancelledError included: still answer
            frames = failure_frames(call.call_id, exc)
        self._mailbox.post_result(frames)
