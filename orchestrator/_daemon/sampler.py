"""CPU and memory of every skill's processes, read off the daemon's thread.

Reading them means a scan of the whole process table (to find each skill
process's descendants) and a few /proc files per process: 20-60 ms on a busy
host, every ``SAMPLE_S``. On the daemon's thread that was a stall callers saw
as tail latency, so the reading is a job (:mod:`.jobs`); what acts on the
numbers (``memory_limit``, :class:`.memory.MemoryGuard`) runs back on the
daemon's thread once they are in. One sample at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from .jobs import Jobs
from .memory import MemoryGuard
from .runtime import SkillRuntime
from .stats import children_map

log = logging.getLogger("zskill.sampler")

SAMPLE_S = 2.0
"""How often skill processes are sampled."""


class Sampler:
    def __init__(self, jobs: Jobs, memory: MemoryGuard, clock: Callable[[], float]) -> None:
        self.jobs = jobs
        self.memory = memory
        self.clock = clock
        self._next = 0.0
        self._running = False

    def tick(self, now: float, skills: Mapping[str, SkillRuntime]) -> None:
        if now < self._next or self._running:
            return
        self._next = now + SAMPLE_S
        taken = [
            (rt, [p.pid for p in rt.procs.values() if p.child.alive]) for rt in skills.values()
        ]

        def measure(cancelled: threading.Event) -> None:
            kids = children_map()  # one scan of the process table for every skill
            for rt, pids in taken:
                if cancelled.is_set():
                    return
                rt.stats.sample(pids, kids)  # its process cache: touched by this job alone

        def measured(_: None, exc: BaseException | None) -> None:
            self._running = False
            if exc is not None:
                log.warning("sampling skill processes failed: %s", exc)
                return
            now = self.clock()
            for rt, _pids in taken:
                if skills.get(rt.name) is rt:  # not removed by a reload meanwhile
                    self.memory.check(rt, now)  # memory_limit: replace what grew over it

        self._running = True
        self.jobs.submit(measure, measured)


__all__ = ["SAMPLE_S", "Sampler"]
