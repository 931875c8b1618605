"""Steering a canary: what the rollout machine's canary actions do.

``SetWeight`` admits the new processes (on the first step) and gives them
the step's share of calls through the router's split; ``Judge`` compares
the two versions' calls over the step just ended (:func:`.canary.judge`);
``DrainNew`` sets the canary's share to 0 and drains its processes, whose
calls in flight still finish. ``zskill rollout SKILL --pause/--promote/
--abort`` reaches the machine through :meth:`RolloutRunner.steer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ipc import BadRequest

from .._status import RolloutOp
from .canary import Verdict, Window, judge
from .rollout import Action, Phase
from .runtime import ActiveRollout, Proc, SkillRuntime
from .schema_diff import diff_tools

if TYPE_CHECKING:
    from .supervisor import Supervisor


class Steering:
    def __init__(self, supervisor: Supervisor) -> None:
        self.sup = supervisor
        self.router = supervisor.router

    def set_weight(self, rt: SkillRuntime, ar: ActiveRollout, percent: int, now: float) -> None:
        if ar.news and ar.news[0].ready_at is None:
            stable_version = rt.last_version
            self.sup.admit(rt, ar.news, now)
            rt.last_version = stable_version  # the canary is not the skill's version yet
        live = [p.inst for p in ar.news if p.child.alive and not p.stop_reason]
        self.router.set_split(rt.name, live, percent, now)
        by_version = rt.stats.by_version
        ar.step_base = {
            v: Window.snapshot(by_version.get(v)) for v in (ar.old_version, ar.new_version)
        }

    def judge(self, rt: SkillRuntime, ar: ActiveRollout) -> Verdict:
        """The step just ended: the canary against the stable version."""
        assert ar.machine.canary is not None
        stable, canary = ar.step_windows(rt.stats.by_version)
        before = ar.stable_before if ar.stable_before.calls else None
        verdict = judge(ar.machine.canary, stable, canary, before)
        ar.stable_before = ar.stable_before.plus(stable)
        ar.verdict = verdict
        return verdict

    def drain_canary(self, rt: SkillRuntime, ar: ActiveRollout, reason: str, now: float) -> None:
        self.router.set_split(rt.name, [], 0, now)
        for proc in ar.news:
            if proc.child.alive:
                self.sup.retire(proc, now, f"canary rolled back: {reason}")

    def steer(
        self, rt: SkillRuntime, ar: ActiveRollout | None, action: str, now: float
    ) -> list[Action]:
        """What a hand on the canary asks of the machine; BadRequest when
        there is no canary to steer or the action is unknown."""
        m = ar.machine if ar is not None else None
        if m is None or m.canary is None or m.phase is not Phase.CANARY:
            raise BadRequest(
                f"skill {rt.name!r} has no canary in progress "
                f"(`zskill upgrade {rt.name} --canary 5,25,100` starts one)",
                skill=rt.name,
            )
        match action:
            case "pause":
                return m.pause(now)
            case "resume":
                return m.resume(now)
            case "promote":
                return m.promote(now)
            case "abort":
                return m.cancel(now, f"aborted by hand at {m.weight}% (zskill rollout --abort)")
        raise BadRequest(f"unknown rollout action {action!r}: pause, resume, promote or abort")

    def end_split(self, rt: SkillRuntime, now: float) -> None:
        self.router.set_split(rt.name, [], 0, now)


def gate(ar: ActiveRollout, proc: Proc) -> str:
    """Why the new version may not take calls (at its first hello): its
    tools would break callers of the old ones, or a canary could not tell
    the two versions' figures apart. Records the rollout's tool diff."""
    ar.tool_diff = diff = diff_tools(ar.old_tools or {}, proc.inst.tools)
    if ar.machine.canary is not None and proc.inst.version == ar.old_version:
        return (
            f"a canary compares two versions by their figures, and the new one says "
            f"version {ar.old_version} too: give it a version of its own"
        )
    if diff.breaking and ar.op is RolloutOp.UPGRADE and not ar.allow_breaking:
        s = "s" if len(diff.breaking) > 1 else ""
        return (
            f"breaking change{s} to the tools: {'; '.join(diff.breaking)} "
            "(--allow-breaking upgrades anyway)"
        )
    return ""


__all__ = ["Steering", "gate"]
