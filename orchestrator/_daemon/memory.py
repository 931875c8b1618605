"""memory_limit by RSS sampling: a skill process whose tree grew over its
skill's ``memory_limit`` is replaced through a zero-downtime restart.

The daemon samples every skill's memory (``SAMPLE_S``, off its thread: see
:mod:`.sampler`); after each sample :meth:`MemoryGuard.check` looks at the
processes that serve. One over the limit is not killed: a new process of
the same release starts beside it, takes its calls at the switch, and the
old one drains (:meth:`~.lifecycle.Lifecycle.restart`), so no call fails.
The ``restart`` event says why (``reason = "memory_limit"``); it is not a
crash, so the restart policy does not count it.

No restart storm: one restart at a time per skill (none while any rollout
runs), and when a skill needs them again and again -- its fresh process is
over the limit at once -- each waits longer than the last (``hold_s``).

Where cgroups allow, the kernel also limits the tree, at twice the limit
(:func:`.cgroups.backstop_bytes`): a tree growing faster than the sampling
is killed there, an exit the restart policy handles as a crash.
"""

from __future__ import annotations

import logging
from collections import deque

from .._status import EventKind
from .events import EventLog
from .lifecycle import Lifecycle
from .runtime import SkillRuntime

log = logging.getLogger("zskill.memory")

HOLD_S = 10.0
"""The wait after a second memory restart in ``WINDOW_S``; doubled for each more."""
HOLD_MAX_S = 300.0
WINDOW_S = 600.0
"""Memory restarts further apart than this do not make the next one wait."""


def hold_s(recent: int) -> float:
    """How long after a memory restart the next may happen, given how many
    happened in the window (this one included): none after the first."""
    if recent <= 1:
        return 0.0
    return min(HOLD_MAX_S, HOLD_S * 2.0 ** (recent - 2))


class MemoryGuard:
    def __init__(self, lifecycle: Lifecycle, events: EventLog) -> None:
        self.life = lifecycle
        self.events = events
        self._restarts: dict[str, deque[float]] = {}
        self._held_until: dict[str, float] = {}
        self._warned: set[str] = set()

    def check(self, rt: SkillRuntime, now: float) -> None:
        """After a sample: replace a serving process of ``rt`` that is over the limit."""
        limit = rt.config.settings.memory_limit
        if limit is None or rt.rollout is not None or rt.desired != "running" or rt.errored:
            return
        sampled = rt.stats.rss_by_pid
        over = [(p, sampled[p.pid]) for p in rt.active() if sampled.get(p.pid, 0) > limit]
        if not over:
            self._warned.discard(rt.name)
            return
        proc, rss = max(over, key=lambda o: o[1])
        why = (
            f"{proc.id} (pid {proc.pid}) uses {mib(rss)} of memory, over the skill's "
            f"memory_limit of {mib(limit)}"
        )
        held_until = self._held_until.get(rt.name, 0.0)
        if now < held_until:
            if rt.name not in self._warned:
                self._warned.add(rt.name)
                log.warning(
                    "%s: %s; replaced too often already, the next restart waits %.0f s",
                    rt.name,
                    why,
                    held_until - now,
                )
            return
        recent = self._restarts.setdefault(rt.name, deque())
        while recent and recent[0] <= now - WINDOW_S:
            recent.popleft()
        recent.append(now)
        self._held_until[rt.name] = now + hold_s(len(recent))
        self._warned.discard(rt.name)
        log.warning("%s: %s; replacing it (zero-downtime restart)", rt.name, why)
        self.events.emit(
            rt.name,
            EventKind.RESTART,
            reason="memory_limit",
            why=f"{why}: replaced by a zero-downtime restart",
            instance=proc.id,
            pid=proc.pid,
            rss_bytes=rss,
            memory_limit=limit,
            restarts=rt.restarts + 1,
        )
        self.life.restart(rt)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 10 << 20 else f"{n / (1 << 20):.1f} MiB"


__all__ = ["MemoryGuard", "hold_s"]
