"""Instances: N processes of one skill sharing its queue in the daemon.

``instances = N`` in a skill's table (default 1) is how many processes a
start, restart, upgrade or rollback brings up (the rollout waits for all N
to pass before the switch); ``zskill scale SKILL N`` changes it live:

- up: a ``scale`` rollout spawns the missing processes beside the serving
  ones, and each joins the queue once all have passed hello and health;
- down: the newest processes beyond N are retired (no new calls; their
  calls in flight finish, within ``grace_s``).

A process that dies while others of its skill still serve is replaced
the same way (``tick`` tops the skill up), after a delay that doubles
while replacements keep failing (``backoff_s`` .. ``backoff_max_s``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipc import BadRequest

from .._config import MAX_INSTANCES
from .._status import RolloutOp
from .runner import RolloutRunner
from .runtime import Done, SkillRuntime
from .supervisor import Supervisor


def missing(rt: SkillRuntime) -> int:
    """Processes to add to bring ``rt`` up to its instances (0: none, or
    not now: it is not meant to run, or nothing serves to add to)."""
    if rt.desired != "running" or rt.errored or rt.rollout is not None:
        return 0
    serving = len(rt.active())
    return max(0, rt.instances - serving) if serving else 0


class Scaler:
    def __init__(
        self, supervisor: Supervisor, runner: RolloutRunner, clock: Callable[[], float]
    ) -> None:
        self.sup = supervisor
        self.runner = runner
        self.clock = clock
        self._not_before: dict[str, float] = {}  # skill -> no top-up before
        self._delay_s: dict[str, float] = {}

    def scale(self, rt: SkillRuntime, n: object, done: Done) -> None:
        """``zskill scale``: answered with the skill's status once the new
        processes serve (up) or at once, the extra ones draining (down)."""
        if type(n) is not int or not 1 <= n <= MAX_INSTANCES:
            raise BadRequest(f"instances must be a whole number in 1..{MAX_INSTANCES} (got {n!r})")
        self.runner.ensure_idle(rt)
        now = self.clock()
        rt.scaled_to = n
        serving = sorted(rt.active(), key=lambda p: p.ready_at or 0.0)
        for proc in serving[n:][::-1]:
            self.sup.retire(proc, now, f"scaled down to {n}")
        add = missing(rt)
        if add:
            self._not_before.pop(rt.name, None)
            self._begin(rt, add, now, done)
        else:
            done(self.sup.status(rt, now), None)

    def tick(self, rt: SkillRuntime, now: float) -> None:
        """Top ``rt`` up when one of its processes died while others serve."""
        add = missing(rt)
        if add and now >= self._not_before.get(rt.name, 0.0):
            self._begin(rt, add, now, None)

    def _begin(self, rt: SkillRuntime, add: int, now: float, done: Done | None) -> None:
        s = rt.config.settings
        delay = self._delay_s.get(rt.name, s.backoff_s)
        self._not_before[rt.name] = now + delay

        def finished(report: Any, err: Exception | None) -> None:
            # Failing again: wait longer before the next try; passing: reset.
            if err is None:
                self._delay_s.pop(rt.name, None)
            else:
                self._delay_s[rt.name] = min(max(2 * delay, 0.1), s.backoff_max_s)
            if done is not None:
                done(None if err else self.sup.status(rt, self.clock()), err)

        self.runner.begin(rt, RolloutOp.SCALE, rt.source, now, done=finished, instances=add)


__all__ = ["Scaler", "missing"]
