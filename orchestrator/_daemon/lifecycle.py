"""Skill lifecycle: start, stop, restart, upgrade, rollback, and the restart
policy for processes that die while serving.

The restart policy's decisions live in :mod:`._restart_policy`; this module
carries them out (close the queue, mark errored, schedule the restart).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipc import BadRequest

from .._config import Config
from .events import EventLog
from .releases import Release, ReleaseStore, tree_digest
from .restart_policy import Errored, Stop, decide
from .router import Router
from .runner import UpgradeCoordinator
from .runtime import ActiveRollout, Done, Proc, ProgressFn, SkillRuntime
from .supervisor import Supervisor

log = logging.getLogger("zskill.lifecycle")

Clock = Callable[[], float]


class Lifecycle:
    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        router: Router,
        events: EventLog,
        releases: ReleaseStore,
        clock: Clock,
    ) -> None:
        self.config = config
        self.sup = supervisor
        self.router = router
        self.events = events
        self.releases = releases
        self.clock = clock
        self.upgrades = UpgradeCoordinator(supervisor, events, self._rollout_finished)
        supervisor.on_proc_event = self._proc_event

    # --- operations ------------------------------------------------------------

    def start(self, rt: SkillRuntime, done: Done | None = None) -> None:
        now = self.clock()
        if rt.desired == "running" and not rt.errored and (rt.active() or rt.rollout):
            if rt.rollout is not None and done is not None:
                rt.rollout.done.append(lambda _r, e: done(self.sup.status(rt, self.clock()), e))
            elif done is not None:
                done(self.sup.status(rt, now), None)
            return
        rt.desired, rt.errored, rt.restart_at = "running", False, None
        rt.crash_times.clear()
        self.router.reopen(rt.name)
        source, release = self._start_source(rt)
        self.upgrades.begin(
            rt, "start", source, now, release=release, done=self._status_done(rt, done)
        )

    def stop(self, rt: SkillRuntime, done: Done | None = None, reason: str = "") -> None:
        now = self.clock()
        rt.desired, rt.restart_at = "stopped", None
        self.upgrades.cancel(rt, reason or "the skill was stopped", now)
        self.router.close(
            rt.name,
            reason or f"skill {rt.name!r} is stopped (`zskill start {rt.name}` starts it)",
        )
        for proc in list(rt.procs.values()):
            self.sup.retire(proc, now, reason or "stopped by request")
        if done is not None:
            if rt.procs:
                rt.stop_waiters.append(done)
            else:
                done(self.sup.status(rt, now), None)
        self.events.emit(rt.name, "stopping", reason=reason or "requested")

    def restart(self, rt: SkillRuntime, done: Done | None = None) -> None:
        """A zero-downtime restart: a new process from the same release
        replaces the running one through the usual overlap."""
        if not rt.active() or rt.desired != "running" or rt.errored:
            self.start(rt, done)
            return
        rt.restarts += 1
        self.upgrades.begin(
            rt, "restart", rt.source, self.clock(), done=self._status_done(rt, done)
        )

    def upgrade(
        self,
        rt: SkillRuntime,
        from_dir: str | None,
        done: Done | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        self.upgrades.ensure_idle(rt)
        if from_dir is not None:
            src = Path(from_dir).expanduser()
            check_source(rt, src)
            rel = self.releases.prepare(rt.name, src.resolve())
            release: Release | None = rel
            run_from = rel.run_dir()
        else:
            src = rt.config.path
            check_source(rt, src)
            release = self._snapshot(rt, src)
            run_from = src
        rt.desired, rt.errored, rt.restart_at = "running", False, None
        self.router.reopen(rt.name)
        self.upgrades.begin(
            rt, "upgrade", run_from, self.clock(), release=release, done=done, progress=progress
        )

    def rollback(
        self, rt: SkillRuntime, done: Done | None = None, progress: ProgressFn | None = None
    ) -> None:
        prev = self.releases.previous(rt.name)
        if prev is None:
            raise BadRequest(
                f"skill {rt.name!r} has no earlier release to roll back to "
                f"(`zskill releases {rt.name}` lists what is kept)",
                skill=rt.name,
            )
        run_from = prev.run_dir()
        if not run_from.is_dir():
            raise BadRequest(
                f"release {prev.id} of {rt.name!r} can no longer run: {run_from} is gone",
                skill=rt.name,
            )
        rt.desired, rt.errored, rt.restart_at = "running", False, None
        self.router.reopen(rt.name)
        self.upgrades.begin(
            rt, "rollback", run_from, self.clock(), release=prev, done=done, progress=progress
        )

    # --- time ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for rt in self.sup.skills.values():
            self.upgrades.tick(rt, now)
            if rt.restart_at is not None and now >= rt.restart_at and rt.rollout is None:
                rt.restart_at = None
                rt.restarts += 1
                self.events.emit(rt.name, "restart", restarts=rt.restarts)
                self.upgrades.begin(rt, "start", rt.source, now)

    # --- internals -------------------------------------------------------------

    def _status_done(self, rt: SkillRuntime, done: Done | None) -> Done | None:
        if done is None:
            return None
        return lambda _report, err: done(None if err else self.sup.status(rt, self.clock()), err)

    def _start_source(self, rt: SkillRuntime) -> tuple[Path, Release | None]:
        """Where a (re)start runs from: the current release if it came from
        ``--from`` and still exists, else the configured path."""
        cur = self.releases.current(rt.name)
        if cur is not None and Path(cur.source) != rt.config.path and cur.run_dir().is_dir():
            return cur.run_dir(), cur
        return rt.config.path, self._snapshot(rt, rt.config.path)

    def _snapshot(self, rt: SkillRuntime, src: Path) -> Release | None:
        """A release for code run in place: reuse the current one if the code
        did not change, else keep a copy for a later rollback."""
        if not src.is_dir():
            return None
        cur = self.releases.current(rt.name)
        if cur is not None and cur.source == str(src) and cur.digest == tree_digest(src):
            return cur
        return self.releases.prepare(rt.name, src)

    def _rollout_finished(self, rt: SkillRuntime, ar: ActiveRollout, ok: bool) -> None:
        now = self.clock()
        rel = ar.release
        if ok and ar.new is not None:
            if rel is not None:
                self.releases.commit(rt.name, rel, ar.new.inst.version, sorted(ar.new.inst.tools))
                rt.release = rel.id
            self.events.emit(rt.name, "ready", version=ar.new.inst.version, pid=ar.new.pid)
        elif rel is not None:
            self.releases.discard(rt.name, rel)
        if not ok and rt.desired == "running" and not rt.active():
            why = ar.machine.reports[-1].detail if ar.machine.reports else "start failed"
            self._crashed(rt, now, f"{ar.op} failed", exit_code=None, detail=why)
        self._settle(rt)

    def _proc_event(self, proc: Proc, event: str, data: dict[str, Any]) -> None:
        now = self.clock()
        rt = self.sup.skills[proc.inst.skill]
        if event == "exit":
            self.upgrades.proc_exited(rt, proc, str(data.get("how", "")), now)
            if data.get("unexpected") and data.get("serving"):
                self._crashed(rt, now, str(data.get("how")), exit_code=proc.child.exit_code)
        elif event == "gone":
            self.upgrades.proc_gone(rt, proc, now)
            self._settle(rt)

    def _settle(self, rt: SkillRuntime) -> None:
        if not rt.procs and rt.stop_waiters and rt.rollout is None:
            waiters, rt.stop_waiters = rt.stop_waiters, []
            status = self.sup.status(rt, self.clock())
            self.events.emit(rt.name, "stopped")
            for fn in waiters:
                fn(status, None)

    def _crashed(
        self, rt: SkillRuntime, now: float, how: str, *, exit_code: int | None, detail: str = ""
    ) -> None:
        if rt.rollout is not None or rt.active() or rt.desired != "running":
            return  # another process serves, or a rollout will decide
        s = rt.config.settings
        decision = decide(s, rt.crash_times, now, exit_code)
        if isinstance(decision, Stop):
            rt.desired = "stopped"
            self.router.close(
                rt.name,
                f"skill {rt.name!r} exited ({how}) and its restart policy is {s.restart!r}",
            )
            self.events.emit(rt.name, "stopped", reason=how)
            return
        if isinstance(decision, Errored):
            n = decision.failures
            rt.errored = True
            rt.last_exit = rt.last_exit or f"{how} {detail}".strip()
            reason = (
                f"skill {rt.name!r} is errored: it failed {n} times within "
                f"{s.restart_window_s:g} s (last: {rt.last_exit}); "
                f"`zskill start {rt.name}` tries again"
            )
            self.router.close(rt.name, reason)
            self.events.emit(rt.name, "errored", failures=n, last_exit=rt.last_exit)
            log.error("%s", reason)
            return
        delay, n = decision.delay_s, decision.failures
        rt.restart_at = now + delay
        if detail:
            rt.last_exit = rt.last_exit or detail
        self.events.emit(rt.name, "backoff", delay_s=delay, failures=n, how=how, detail=detail)
        log.warning("%s: %s; restarting in %.2f s", rt.name, how, delay)


def check_source(rt: SkillRuntime, src: Path) -> None:
    """A clear error before anything is spawned when ``src`` cannot run the skill."""
    if not src.exists():
        raise BadRequest(f"cannot upgrade {rt.name!r}: {src} does not exist", skill=rt.name)
    if not src.is_dir():
        raise BadRequest(f"cannot upgrade {rt.name!r}: {src} is not a directory", skill=rt.name)
    entry = entry_file(rt.config.command)
    if entry is not None and not (src / entry).is_file():
        raise BadRequest(
            f"cannot upgrade {rt.name!r}: {src} has no {entry} "
            f"(the skill's command is `{shlex.join(rt.config.command)}`)",
            skill=rt.name,
        )


def entry_file(command: tuple[str, ...]) -> str | None:
    """The script a python command runs (``python main.py`` -> main.py)."""
    if not command or "python" not in Path(command[0]).name:
        return None
    for arg in command[1:]:
        if arg in ("-m", "-c"):
            return None
        if arg.startswith("-"):
            continue
        return arg if not Path(arg).is_absolute() else None
    return None


__all__ = ["Lifecycle", "check_source", "entry_file"]
