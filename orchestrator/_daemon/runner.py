"""The RolloutRunner carries out rollouts (start, restart, upgrade,
rollback): it feeds what happens to the new process (spawned, hello, health
reply, exit, time) into the skill's :class:`~.rollout.Rollout` and performs
the actions the machine decides (spawn, health check, switch, kill the new
process, report), through the :class:`~.supervisor.Supervisor`.

One rollout per skill at a time -- a second gets ``UpgradeInProgress`` --
while rollouts of different skills run side by side. When one ends, its
:class:`RolloutListener` (the Lifecycle) hears first, then the event
stream, then whoever waits for the answer.

Why this module is long: it is the one place where each action of the
machine meets the daemon (a case per action; the state handoff's and the
canary's own work is in :mod:`.handoff` and :mod:`.steering`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ipc import ConfigError, StateReply, UpgradeFailed, UpgradeInProgress

from .._status import EventKind, RolloutOp
from .canary import CanaryPlan
from .events import EventLog
from .handoff import Handoff
from .jobs import Jobs
from .releases import Release
from .rollout import (
    Action,
    CheckHealth,
    DrainNew,
    ExportState,
    Finish,
    HoldCalls,
    ImportState,
    Judge,
    KillNew,
    Phase,
    Prepare,
    Report,
    ResumeCalls,
    Rollout,
    SetWeight,
    Spawn,
    Stage,
    Step,
    Switch,
)
from .router import InstanceState
from .runtime import ActiveRollout, Done, Prepared, PrepareJob, Proc, ProgressFn, SkillRuntime
from .steering import Steering, gate
from .supervisor import Supervisor

log = logging.getLogger("zskill.upgrade")


class RolloutListener(Protocol):
    """Told when a rollout ends, before anyone else (the Lifecycle)."""

    def rollout_finished(self, rt: SkillRuntime, ar: ActiveRollout, ok: bool) -> None: ...

    def release_unused(self, rt: SkillRuntime, release: Release) -> None:
        """A release prepared for a rollout that ended before it was ready."""
        ...


class RolloutRunner:
    def __init__(
        self,
        supervisor: Supervisor,
        events: EventLog,
        listener: RolloutListener,
        *,
        jobs: Jobs,
        clock: Callable[[], float],
    ) -> None:
        self.sup = supervisor
        self.events = events
        self._listener = listener
        self._jobs = jobs
        self._clock = clock
        self.handoff = Handoff(supervisor)
        self.steering = Steering(supervisor)

    def begin(
        self,
        rt: SkillRuntime,
        op: RolloutOp,
        source: Path,
        now: float,
        *,
        release: Release | None = None,
        prepare: PrepareJob | None = None,
        done: Done | None = None,
        progress: ProgressFn | None = None,
        instances: int | None = None,
        canary: CanaryPlan | None = None,
        allow_breaking: bool = False,
    ) -> ActiveRollout:
        """Start a rollout of ``rt`` from ``source``; with ``prepare``, the
        new code is first made ready off the daemon's thread, and the source
        and release it returns replace those given here."""
        self.ensure_idle(rt)
        s = rt.config.settings
        # A scale-up adds processes beside the serving ones: none is replaced.
        old = [] if op is RolloutOp.SCALE else rt.active()
        ar = ActiveRollout(
            op=op,
            machine=Rollout(
                start_timeout_s=s.start_timeout_s,
                health_timeout_s=s.health_timeout_s,
                has_old=bool(rt.active()),
                handoff_timeout_s=s.handoff_timeout_s,
                instances=instances if instances is not None else rt.instances,
                canary=canary,
            ),
            source=source,
            old=old,
            old_version=old[0].inst.version if old else rt.last_version,
            release=release,
            prepare=prepare,
            allow_breaking=allow_breaking,
        )
        if old:
            ar.old_tools = dict(old[0].inst.tools)
        if done is not None:
            ar.done.append(done)
        if progress is not None:
            ar.progress.append(progress)
        rt.rollout = ar
        self._apply(rt, ar, ar.machine.start(now, prepare=prepare is not None), now)
        return ar

    def ensure_idle(self, rt: SkillRuntime) -> None:
        """Raise UpgradeInProgress if a rollout of ``rt`` is running."""
        if rt.rollout is not None:
            raise UpgradeInProgress(
                f"skill {rt.name!r}: a {rt.rollout.op} is already in progress "
                f"(phase {rt.rollout.machine.phase.value}); try again when it ends",
                skill=rt.name,
            )

    # --- what happens to the new process -------------------------------------

    def hello(self, rt: SkillRuntime, proc: Proc, refused: str | None, now: float) -> None:
        ar = rt.rollout
        if ar is None or proc not in ar.news:
            return
        if refused is not None:
            self._apply(rt, ar, ar.machine.refused(now, refused), now)
            return
        if ar.tool_diff is None and ar.old_tools is not None:
            why = gate(ar, proc)
            if why:
                self._apply(rt, ar, ar.machine.gate_failed(now, why), now)
                return
        detail = f"version {proc.inst.version}, {len(proc.inst.tools)} tools"
        wait_s = self.handoff.wait_s(rt, ar, proc, now)
        hello = ar.machine.hello(
            now, has_health=proc.has_health, detail=detail, handoff_wait_s=wait_s
        )
        self._apply(rt, ar, hello, now)

    def health(self, rt: SkillRuntime, proc: Proc, ok: bool, detail: str, now: float) -> None:
        ar = rt.rollout
        if ar is None or proc not in ar.news:
            return
        self._apply(rt, ar, ar.machine.health(now, ok, detail), now)

    def proc_exited(self, rt: SkillRuntime, proc: Proc, how: str, now: float) -> None:
        ar = rt.rollout
        if ar is not None and proc in ar.news:
            if proc.bye and proc.ready_at is None:
                how = f"{how} ({proc.bye})"
            self._apply(rt, ar, ar.machine.new_exited(now, how), now)
        elif ar is not None and proc in ar.old:
            self._apply(rt, ar, ar.machine.old_exited(now, how), now)

    def state_reply(self, rt: SkillRuntime, proc: Proc, msg: StateReply, now: float) -> None:
        """An export or import of state answered (see .handoff)."""
        ar = rt.rollout
        outcome = self.handoff.outcome(ar, proc, msg) if ar is not None else None
        if ar is None or outcome is None:
            return
        what, ok, detail = outcome
        step = ar.machine.exported if what == "exported" else ar.machine.imported
        self._apply(rt, ar, step(now, ok, detail), now)

    def proc_gone(self, rt: SkillRuntime, proc: Proc, now: float) -> None:
        ar = rt.rollout
        if ar is None or ar.machine.switched_at is None:
            return
        if not any(p.id in rt.procs for p in ar.old):
            detail = proc.drain.describe(now) if proc.drain is not None else ""
            self._apply(rt, ar, ar.machine.old_drained(now, detail), now)

    def tick(self, rt: SkillRuntime, now: float) -> None:
        ar = rt.rollout
        if ar is not None and ar.machine.stage is Stage.WAITING_IDLE:
            self._check_idle(rt, ar, now)
        if ar is not None and ar.machine.deadline is not None:
            self._apply(rt, ar, ar.machine.tick(now), now)

    def _check_idle(self, rt: SkillRuntime, ar: ActiveRollout, now: float) -> None:
        if self.handoff.idle(ar):
            self._apply(rt, ar, ar.machine.old_idle(now), now)

    def cancel(self, rt: SkillRuntime, reason: str, now: float) -> None:
        ar = rt.rollout
        if ar is not None:
            self._apply(rt, ar, ar.machine.cancel(now, reason), now)

    def steer(self, rt: SkillRuntime, action: str, now: float) -> None:
        """``zskill rollout SKILL --pause/--resume/--promote/--abort``."""
        ar = rt.rollout
        actions = self.steering.steer(rt, ar, action, now)
        if ar is not None:
            self._apply(rt, ar, actions, now)

    # --- actions ---------------------------------------------------------------

    def _apply(
        self, rt: SkillRuntime, ar: ActiveRollout, actions: list[Action], now: float
    ) -> None:
        switched = False
        for action in actions:
            match action:
                case Report():
                    self._report(rt, ar, action)
                case Prepare():
                    self._prepare(rt, ar)
                case Spawn():
                    self._spawn(rt, ar, now)
                case CheckHealth(timeout_s=timeout_s):
                    for proc in ar.news:
                        self.sup.check_health(proc, timeout_s)
                case HoldCalls():
                    self.handoff.hold(rt, now)
                    self._check_idle(rt, ar, now)
                case ExportState(timeout_s=timeout_s):
                    self.handoff.export(ar, timeout_s)
                case ImportState(timeout_s=timeout_s):
                    self.handoff.import_(ar, timeout_s)
                case ResumeCalls():
                    self.handoff.resume(rt, ar, now)
                case Switch():
                    self._switch(rt, ar, now)
                    switched = True
                case KillNew(reason=reason):
                    for proc in ar.news:
                        if proc.child.alive:
                            self.sup.kill(proc, f"{ar.op} rolled back: {reason}")
                case SetWeight(percent=pct):
                    self.steering.set_weight(rt, ar, pct, now)
                case Judge():
                    verdict = self.steering.judge(rt, ar)
                    self._apply(rt, ar, ar.machine.judged(now, verdict.ok, verdict.detail), now)
                case DrainNew(reason=reason):
                    self.steering.drain_canary(rt, ar, reason, now)
                case Finish():
                    self._finish(rt, ar, action)
        # Nothing left to drain (a start, or the old ones already gone): the
        # drain is over as soon as it is reported begun, not before.
        if switched and not any(p.id in rt.procs for p in ar.old):
            self._apply(rt, ar, ar.machine.old_drained(now), now)

    def _prepare(self, rt: SkillRuntime, ar: ActiveRollout) -> None:
        assert ar.prepare is not None
        job = ar.prepare

        def done(result: Prepared | None, exc: BaseException | None) -> None:
            self._prepared(rt, ar, result, exc)

        ar.stop_preparing = self._jobs.submit(job, done)

    def _prepared(
        self,
        rt: SkillRuntime,
        ar: ActiveRollout,
        result: Prepared | None,
        exc: BaseException | None,
    ) -> None:
        """The new code is ready (or could not be made so): on the daemon's
        thread again, where the rollout goes on -- if it is still wanted."""
        now = self._clock()
        if rt.rollout is not ar or ar.machine.phase is not Phase.PREPARING:
            if result is not None and result.release is not None:
                self._listener.release_unused(rt, result.release)
            return
        if exc is not None or result is None:
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "no result"
            self._apply(
                rt, ar, ar.machine.prepare_failed(now, f"cannot prepare the code: {why}"), now
            )
            return
        ar.source, ar.release = result.source, result.release
        self._apply(rt, ar, ar.machine.prepared(now, result.detail), now)

    def _spawn(self, rt: SkillRuntime, ar: ActiveRollout, now: float) -> None:
        try:
            for _ in range(ar.machine.instances):
                ar.news.append(self.sup.spawn(rt, ar.source, now, origin=self._origin(rt, ar)))
        except (OSError, ConfigError) as exc:  # ConfigError: its env_file
            argv = " ".join(rt.config.argv())
            more = ar.machine.spawn_failed(now, f"cannot start `{argv}` in {ar.source}: {exc}")
        else:
            more = ar.machine.spawned(now, "pid " + ", ".join(str(p.pid) for p in ar.news))
        self._apply(rt, ar, more, now)

    @staticmethod
    def _origin(rt: SkillRuntime, ar: ActiveRollout) -> Path:
        """Where the code to run came from: a release's source, or, for a
        restart from the running copy, the running release's."""
        if ar.release is not None:
            return Path(ar.release.source)
        if ar.source == rt.source and rt.origin is not None:
            return rt.origin
        return ar.source

    def _switch(self, rt: SkillRuntime, ar: ActiveRollout, now: float) -> None:
        assert ar.news
        if ar.op is RolloutOp.SCALE:
            self.sup.promote(rt, ar.news, now, add=True)
            return
        self.steering.end_split(rt, now)
        ar.old = self.sup.promote(rt, ar.news, now)
        rt.source, rt.origin = ar.source, self._origin(rt, ar)
        diff = ar.tool_diff
        ar.tools_changed = diff is not None and diff.any
        if diff is not None and diff.any:
            self.events.emit(
                rt.name,
                EventKind.TOOLS_CHANGED,
                version=ar.new_version,
                added=diff.added,
                removed=diff.removed,
                changed=diff.changed,
            )

    def _report(self, rt: SkillRuntime, ar: ActiveRollout, r: Report) -> None:
        body = {
            "step": r.step.value,
            "status": r.status.value,
            "elapsed_s": round(r.elapsed_s, 4),
            "detail": r.detail,
        }
        new_version = ar.new_version
        self.events.emit(
            rt.name,
            EventKind.ROLLOUT,
            op=ar.op.value,
            old_version=ar.old_version,
            new_version=new_version,
            **body,
        )
        for fn in ar.progress:
            fn(body)

    def _finish(self, rt: SkillRuntime, ar: ActiveRollout, f: Finish) -> None:
        rt.rollout = None
        if ar.stop_preparing is not None:
            ar.stop_preparing.set()  # a copy still running is no longer wanted
        new = ar.new
        report = ar.report(rt.name, f.ok, rt.stats.by_version)
        # What the new process said last on stderr: a failure's traceback.
        tail = list(new.err_tail) if new is not None and not f.ok else []
        self._listener.rollout_finished(rt, ar, f.ok)
        self.events.emit(
            rt.name,
            EventKind.DEPLOYED if f.ok else EventKind.ROLLED_BACK,
            op=ar.op.value,
            old_version=ar.old_version,
            new_version=report["new_version"],
            reason=f.reason,
            **({"stderr_tail": tail} if tail else {}),
        )
        err: Exception | None = None
        if not f.ok:
            step = f.failed_step.value if isinstance(f.failed_step, Step) else "?"
            still = (
                f"; version {ar.old_version} keeps serving"
                if any(p.state is InstanceState.READY for p in rt.procs.values())
                else ""
            )
            extra: dict[str, Any] = {}
            if ar.tool_diff is not None:
                extra["tools"] = ar.tool_diff.to_dict()
            if ar.machine.canary is not None:
                extra["canary"] = report["canary"]
            err = UpgradeFailed(
                f"{ar.op} of {rt.name!r} rolled back at step {step!r}: {f.reason}{still}",
                skill=rt.name,
                step=step,
                reason=f.reason,
                old_version=ar.old_version,
                stderr_tail=tail,
                **extra,
            )
            log.warning("%s", err)
        else:
            log.info(
                "%s: %s %s -> %s in %.3f s",
                rt.name,
                ar.op,
                ar.old_version or "-",
                report["new_version"],
                report["duration_s"],
            )
        for fn in ar.done:
            fn(report if f.ok else None, err)


__all__ = ["RolloutListener", "RolloutRunner"]
