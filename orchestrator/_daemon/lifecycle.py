"""Skill lifecycle: start, stop, restart, upgrade, rollback, and the restart
policy for processes that die while serving.

The Lifecycle owns the skill's :class:`~.supervisor.Supervisor` and its
:class:`~.runner.RolloutRunner`, and listens to both: a process that exits
or is gone (:class:`~.supervisor.ProcListener`), a rollout that ends
(:class:`~.runner.RolloutListener`). What a skill process says that matters
to a rollout (its hello, a health reply) comes in here too, so the daemon's
dispatch talks to the Lifecycle alone.

The restart policy's decisions live in :mod:`.restart_policy`; this module
carries them out (close the queue, mark errored, schedule the restart).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ipc import ControlError, HealthReply, Hello

from .._config import Config
from .._status import EventKind, RolloutOp, StepStatus
from .canary import CanaryPlan
from .events import EventLog
from .instances import Scaler
from .jobs import Jobs
from .releases import Release, ReleaseStore, tree_digest
from .restart_policy import Errored, Restart, Stop, decide
from .router import InstanceState, Router
from .runner import RolloutRunner
from .runtime import (
    ActiveRollout,
    Done,
    Prepared,
    PrepareJob,
    Proc,
    ProgressFn,
    SkillRuntime,
    StopWaiter,
)
from .source import check_source, entry_file, rollback_target
from .supervisor import ProcExit, Supervisor, SupervisorIo
from .treecopy import Exclude

log = logging.getLogger("zskill.lifecycle")

Clock = Callable[[], float]


class Lifecycle:
    def __init__(
        self,
        config: Config,
        router: Router,
        events: EventLog,
        releases: ReleaseStore,
        clock: Clock,
        io: SupervisorIo,
        jobs: Jobs,
    ) -> None:
        self.router = router
        self.events = events
        self.releases = releases
        self.clock = clock
        self.sup = Supervisor(config, router, events, io, listener=self)
        self.runner = RolloutRunner(self.sup, events, listener=self, jobs=jobs, clock=clock)
        self.scaler = Scaler(self.sup, self.runner, clock)

    # --- operations ------------------------------------------------------------

    def start(self, rt: SkillRuntime, done: Done | None = None) -> None:
        now = self.clock()
        if rt.desired == "running" and not rt.errored and (rt.active() or rt.rollout):
            if rt.rollout is not None and done is not None:
                rt.rollout.done.append(lambda _r, e: done(self.sup.status(rt, self.clock()), e))
            elif done is not None:
                done(self.sup.status(rt, now), None)
            return
        self._resume(rt, RolloutOp.START)
        rt.crash_times.clear()
        cur = self.releases.current(rt.name)
        if cur is not None and Path(cur.source) != rt.config.path and cur.run_dir().is_dir():
            # The current release came from --from and is still there: run it.
            source, release, prepare = cur.run_dir(), cur, None
        else:
            source, release = rt.config.path, None
            prepare = self._snapshot_job(rt, rt.config.path)
        self.runner.begin(
            rt,
            RolloutOp.START,
            source,
            now,
            release=release,
            prepare=prepare,
            done=self._status_done(rt, done),
        )

    def stop(self, rt: SkillRuntime, done: Done | None = None, reason: str = "") -> None:
        """Drain and end every process of ``rt``; refuse its calls until a start.

        ``done`` is answered once the processes this stop retired are gone
        (each within its ``grace_s`` and ``kill_timeout_s``), with the skill's
        status. If a start, upgrade or rollback put the skill back in service
        meanwhile, the answer is a ControlError saying so -- the skill is not
        stopped, and a script that waited for it must not think so -- but
        still only once the retired processes are gone. A later stop takes
        the earlier waiters along: they are answered when its processes,
        too, are gone."""
        now = self.clock()
        rt.desired, rt.restart_at = "stopped", None
        self.runner.cancel(rt, reason or "the skill was stopped", now)
        self.router.close(
            rt.name,
            reason or f"skill {rt.name!r} is stopped (`zskill start {rt.name}` starts it)",
        )
        for proc in list(rt.procs.values()):
            self.sup.retire(proc, now, reason or "stopped by request")
        for w in rt.stop_waiters:  # stopped again: their stop holds after all
            w.procs, w.overtaken_by = frozenset(rt.procs), ""
        if done is not None:
            if rt.procs:
                rt.stop_waiters.append(StopWaiter(frozenset(rt.procs), done))
            else:
                done(self.sup.status(rt, now), None)
        self.events.emit(rt.name, EventKind.STOPPING, reason=reason or "requested")

    def restart(self, rt: SkillRuntime, done: Done | None = None) -> None:
        """A zero-downtime restart: a new process from the same release
        replaces the running one through the usual overlap."""
        if not rt.active() or rt.desired != "running" or rt.errored:
            self.start(rt, done)
            return
        # Counted once begun: a restart refused (another rollout runs) changed nothing.
        self.runner.begin(
            rt, RolloutOp.RESTART, rt.source, self.clock(), done=self._status_done(rt, done)
        )
        rt.restarts += 1

    def upgrade(
        self,
        rt: SkillRuntime,
        from_dir: str | None,
        done: Done | None = None,
        progress: ProgressFn | None = None,
        *,
        canary: CanaryPlan | None = None,
        allow_breaking: bool = False,
    ) -> None:
        self.runner.ensure_idle(rt)
        if from_dir is not None:
            src = Path(from_dir).expanduser()
            check_source(rt, src)
            prepare = self._release_job(rt, src.resolve())
        else:
            src = rt.config.path
            check_source(rt, src)
            prepare = self._snapshot_job(rt, src)
        self._resume(rt, RolloutOp.UPGRADE)
        self.runner.begin(
            rt,
            RolloutOp.UPGRADE,
            src,
            self.clock(),
            prepare=prepare,
            done=done,
            progress=progress,
            canary=canary,
            allow_breaking=allow_breaking,
        )

    def rollback(
        self,
        rt: SkillRuntime,
        done: Done | None = None,
        progress: ProgressFn | None = None,
        to: int | None = None,
    ) -> None:
        """Back to the previous release, or to release ``to`` if given."""
        prev = rollback_target(self.releases, rt, to)
        run_from = prev.run_dir()
        self._resume(rt, RolloutOp.ROLLBACK)
        self.runner.begin(
            rt,
            RolloutOp.ROLLBACK,
            run_from,
            self.clock(),
            release=prev,
            done=done,
            progress=progress,
        )

    # --- time ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for rt in self.sup.skills.values():
            self.runner.tick(rt, now)
            if rt.restart_at is not None and now >= rt.restart_at and rt.rollout is None:
                rt.restart_at = None
                rt.restarts += 1
                self.events.emit(rt.name, EventKind.RESTART, restarts=rt.restarts)
                self.runner.begin(rt, RolloutOp.START, rt.source, now)
            self.scaler.tick(rt, now)

    # --- what skill processes say ---------------------------------------------

    def hello(self, proc: Proc, msg: Hello, now: float) -> None:
        """A process announced itself: welcome or refuse it, and tell its rollout."""
        refused = self.sup.on_hello(proc, msg, now)
        if refused is not None:
            log.warning("%s: hello refused: %s", proc.id, refused)
        self.runner.hello(self.sup.skills[proc.inst.skill], proc, refused, now)

    def health_reply(self, proc: Proc, msg: HealthReply, now: float) -> None:
        """The answer to a health check; one to an earlier check is stale."""
        if msg.check_id == proc.health_check_id:
            rt = self.sup.skills[proc.inst.skill]
            self.runner.health(rt, proc, msg.ok, msg.detail, now)

    # --- what the supervisor and the runner report -------------------------------

    def proc_exited(self, proc: Proc, exit: ProcExit) -> None:
        now = self.clock()
        rt = self.sup.skills[proc.inst.skill]
        self.runner.proc_exited(rt, proc, exit.how, now)
        if exit.unexpected and exit.serving:
            self._crashed(rt, now, exit.how, exit_code=proc.child.exit_code)

    def proc_gone(self, proc: Proc) -> None:
        rt = self.sup.skills[proc.inst.skill]
        self.runner.proc_gone(rt, proc, self.clock())
        self._settle(rt)

    def release_unused(self, rt: SkillRuntime, release: Release) -> None:
        self.releases.discard(rt.name, release)

    def rollout_finished(self, rt: SkillRuntime, ar: ActiveRollout, ok: bool) -> None:
        now = self.clock()
        rel = ar.release
        if ok and ar.new is not None:
            if rel is not None:
                self.releases.commit(rt.name, rel, ar.new.inst.version, sorted(ar.new.inst.tools))
                rt.release = rel.id
            # Stopped (or replaced) while the old version drained: not ready.
            if ar.new.state is InstanceState.READY and not ar.new.stop_reason:
                self.events.emit(
                    rt.name, EventKind.READY, version=ar.new.inst.version, pid=ar.new.pid
                )
        elif rel is not None:
            self.releases.discard(rt.name, rel)
        if ok and rt.desired == "running" and not rt.errored:
            self.router.reopen(rt.name)  # closed while it could not start
        if not ok and rt.desired == "running" and not rt.active():
            # Why the step failed; the reports after it say what was undone.
            failed = [r.detail for r in ar.machine.reports if r.status is StepStatus.FAILED]
            why = failed[-1] if failed else "start failed"
            tail = list(ar.new.err_tail) if ar.new is not None else []
            said = last_line(tail)
            rt.last_exit = f"{ar.op} failed: {why}" + (f" ({said})" if said else "")
            rt.last_stderr = tail
            self._crashed(rt, now, f"{ar.op} failed", exit_code=None, detail=why)

    # --- internals -------------------------------------------------------------

    def _status_done(self, rt: SkillRuntime, done: Done | None) -> Done | None:
        if done is None:
            return None
        return lambda _report, err: done(None if err else self.sup.status(rt, self.clock()), err)

    # The jobs below read and copy whole trees: they run off the daemon's
    # thread (see .jobs) and touch nothing but the release store's files.

    def _release_job(self, rt: SkillRuntime, src: Path) -> PrepareJob:
        """For ``upgrade --from``: a private copy of ``src``, run from there."""
        releases, name, skip = self.releases, rt.name, self._exclude(rt)

        def job(cancelled: threading.Event) -> Prepared:
            rel = releases.prepare(name, src, cancelled, skip)
            return Prepared(rel.run_dir(), rel, _copied(rel, src))

        return job

    def _snapshot_job(self, rt: SkillRuntime, src: Path) -> PrepareJob:
        """For code run in place: reuse the current release if the code did
        not change, else keep a copy for a later rollback; run from ``src``."""
        releases, name, skip = self.releases, rt.name, self._exclude(rt)

        def job(cancelled: threading.Event) -> Prepared:
            if not src.is_dir():
                return Prepared(src, None, f"{src} is not a directory")
            cur = releases.current(name)
            same = cur is not None and cur.source == str(src)
            if cur is not None and same and cur.digest == tree_digest(src, cancelled, skip):
                return Prepared(src, cur, f"code unchanged since release {cur.id}")
            rel = releases.prepare(name, src, cancelled, skip)
            return Prepared(src, rel, _copied(rel, src))

        return job

    def _exclude(self, rt: SkillRuntime) -> Exclude:
        return Exclude.of(rt.config.settings.release_exclude, self.sup.config.data_dir(rt.config))

    def _resume(self, rt: SkillRuntime, op: RolloutOp) -> None:
        """``rt`` is wanted in service again: calls are taken, and a stop
        still waiting for its processes is overtaken."""
        rt.desired, rt.errored, rt.restart_at = "running", False, None
        self.router.reopen(rt.name)
        for w in rt.stop_waiters:
            w.overtaken_by = w.overtaken_by or op.value

    def _settle(self, rt: SkillRuntime) -> None:
        """Answer each stop whose retired processes are all gone."""
        ready = [w for w in rt.stop_waiters if not w.procs & rt.procs.keys()]
        if not ready:
            return
        rt.stop_waiters = [w for w in rt.stop_waiters if w not in ready]
        status = self.sup.status(rt, self.clock())
        if rt.desired == "stopped" and not rt.procs:
            self.events.emit(rt.name, EventKind.STOPPED)
        for w in ready:
            if not w.overtaken_by:
                w.done(status, None)
                continue
            w.done(
                None,
                ControlError(
                    f"stop of {rt.name!r} was overtaken: a {w.overtaken_by} put it back "
                    f"in service while it drained; the processes the stop retired are "
                    f"gone, and the skill is {status['state']} now",
                    skill=rt.name,
                    overtaken_by=w.overtaken_by,
                    state=status["state"],
                ),
            )

    def _crashed(
        self, rt: SkillRuntime, now: float, how: str, *, exit_code: int | None, detail: str = ""
    ) -> None:
        if rt.rollout is not None or rt.active() or rt.desired != "running":
            return  # another process serves, or a rollout will decide
        s = rt.config.settings
        match decide(s, rt.crash_times, now, exit_code):
            case Stop():
                rt.desired = "stopped"
                self.router.close(
                    rt.name,
                    f"skill {rt.name!r} exited ({how}) and its restart policy is {s.restart!r}",
                )
                self.events.emit(rt.name, EventKind.STOPPED, reason=how)
            case Errored(failures=n):
                rt.errored = True
                rt.last_exit = rt.last_exit or f"{how} {detail}".strip()
                reason = (
                    f"skill {rt.name!r} is errored: it failed {n} times within "
                    f"{s.restart_window_s:g} s (last: {rt.last_exit}); "
                    f"`zskill start {rt.name}` tries again"
                )
                self.router.close(rt.name, reason)
                self.events.emit(rt.name, EventKind.ERRORED, failures=n, last_exit=rt.last_exit)
                log.error("%s", reason)
            case Restart(delay_s=delay, failures=n):
                rt.restart_at = now + delay
                if detail:
                    rt.last_exit = rt.last_exit or detail
                if exit_code is None:
                    # It could not start: calls fail at once with why, rather
                    # than wait out their deadline through the retries. (After
                    # a crash of a serving process they wait for the restart,
                    # which comes within backoff_s; if that start fails too,
                    # they are answered here.)
                    self.router.close(
                        rt.name,
                        f"skill {rt.name!r} cannot start: {rt.last_exit}; next try in "
                        f"{delay:g} s (`zskill logs {rt.name} --err` shows its output)",
                    )
                self.events.emit(
                    rt.name, EventKind.BACKOFF, delay_s=delay, failures=n, how=how, detail=detail
                )
                log.warning("%s: %s; restarting in %.2f s", rt.name, how, delay)


def last_line(lines: list[str]) -> str:
    """The last line a process wrote that says something: of a traceback,
    the exception (``SyntaxError: '(' was never closed``)."""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def _copied(rel: Release, src: Path) -> str:
    if rel.path:
        return f"release {rel.id}: a copy kept" + (f"; {rel.placed}" if rel.placed else "")
    return f"release {rel.id}: too large to copy; a rollback reruns it in place"


__all__ = ["Lifecycle", "check_source", "entry_file", "last_line"]
