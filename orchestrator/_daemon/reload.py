"""``zskill reload`` and SIGHUP: read zskill.toml again and apply the
difference to the running daemon.

    read the file ──► check it whole ──► plan (.._config_diff) ──► apply ──► answer
    (ConfigError)     env files read,     add / remove /            each skill's
                      paths exist,        restart / update /        outcome as it
                      no rollout in the   keep, per skill           comes (progress),
                      way                                           then the summary

Nothing changes unless the whole file is good: a file that does not parse,
an unknown key, an env_file that cannot be read, a path that does not exist
all refuse the reload with the reason, before any skill is touched.

Then, per skill: a new one starts (if ``autostart``); a removed one drains
like ``zskill stop`` and is forgotten once its processes are gone; one whose
process settings changed gets a zero-downtime restart with them (from its
new path, when the path changed); one whose other settings changed takes
them in place; the rest are not touched, and keep their pids. A restart
that rolls back puts the skill's old settings back: what serves is always
what the daemon says it runs, and the next reload tries again.

The answer comes once every restart and start has finished and every
removed skill's processes are gone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ipc import ConfigError, ControlError, UpgradeInProgress, ZskillError

from .._config import Config, SkillConfig, load
from .._config_diff import Action, Plan, plan
from .._envfile import env_digest
from .._rundir import RunDir
from .._status import EventKind
from .events import EventLog
from .lifecycle import Lifecycle
from .logfiles import LogFile
from .runtime import Done, ProgressFn, SkillRuntime
from .source import entry_file

log = logging.getLogger("zskill.reload")


def new_runtime(sc: SkillConfig, layout: RunDir, config: Config) -> SkillRuntime:
    """A skill's place in the daemon, not started yet."""
    d = config.daemon
    lf = LogFile(layout.skill_log(sc.name), max_bytes=d.log_max_bytes, keep=d.log_keep)
    return SkillRuntime(config=sc, log=lf, source=sc.path)


def watching_all(config: Config) -> Config:
    """``config`` with ``watch = true`` for every skill (``zskill up --watch``)."""
    skills = {
        name: replace(sc, settings=sc.settings.model_copy(update={"watch": True}))
        for name, sc in config.skills.items()
    }
    return replace(config, skills=skills)


@dataclass(eq=False)
class _Pass:
    """One reload in progress: what is still awaited, and the outcomes."""

    plan: Plan
    done: Done | None
    progress: ProgressFn | None
    waiting: set[str] = field(default_factory=set)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)


class Reloader:
    def __init__(
        self,
        config: Config,
        life: Lifecycle,
        events: EventLog,
        layout: RunDir,
        applied: Callable[[Config], None],
        *,
        watch_all: bool = False,
    ) -> None:
        self.config = config  # what the daemon runs: its [daemon] table never changes
        self.life = life
        self.sup = life.sup
        self.router = life.router
        self.events = events
        self.layout = layout
        self._applied = applied
        self._watch_all = watch_all
        self._pass: _Pass | None = None
        self.closing = False  # the daemon is shutting down: no more reloads
        for name, sc in config.skills.items():
            self.sup.skills[name] = new_runtime(sc, layout, config)
            self.router.limit(name, sc.settings.max_queued)

    def start_all(self) -> None:
        """At the daemon's start: start each skill with ``autostart``."""
        for rt in self.sup.skills.values():
            if rt.config.settings.autostart:
                self.life.start(rt)
            else:
                rt.desired = "stopped"
                self.router.close(rt.name, f"skill {rt.name!r} is not started (autostart = false)")

    # --- the operation -----------------------------------------------------------

    def reload(self, done: Done | None = None, progress: ProgressFn | None = None) -> None:
        """Read the config file again and apply it; ``done`` gets the summary.
        Raises (nothing changed) when the file is not good as a whole."""
        try:
            if self.closing:
                raise ControlError("the daemon is shutting down; nothing was reloaded")
            if self._pass is not None:
                raise ControlError("a reload is already in progress; try again when it ends")
            new = load(self.config.path)
            if self._watch_all:
                new = watching_all(new)
            the_plan = self._plan(new)
            self._check(the_plan, new)
        except (ConfigError, ControlError) as exc:
            self.events.emit("", EventKind.RELOAD, ok=False, error=exc.message)
            log.warning("reload refused: %s", exc.message)
            raise
        lists = {a.value: the_plan.names(a) for a in Action if a is not Action.KEEP}
        lists["daemon_not_applied"] = list(the_plan.daemon_keys)
        self.events.emit(
            "",
            EventKind.RELOAD,
            ok=True,
            summary=the_plan.summary(),
            **{k: v for k, v in lists.items() if v},  # the empty ones are noise
        )
        log.info("reload: %s", the_plan.summary())
        p = self._pass = _Pass(the_plan, done, progress)
        p.waiting = {s.name for s in the_plan.skills}
        for sp in the_plan.skills:
            self._apply(p, sp.name, sp.action, sp.keys, new)
        self.config = replace(
            self.config,
            skills={rt.name: rt.config for rt in self.sup.skills.values() if not rt.removing},
        )
        self._applied(self.config)
        self._maybe_finish(p)

    def reload_logged(self) -> None:
        """SIGHUP: a reload whose outcome goes to the log and the events."""
        log.info("SIGHUP: reloading %s", self.config.path)
        with contextlib.suppress(ConfigError, ControlError):  # refused: logged already
            self.reload(lambda r, _e: log.info("reload done: %s", r["summary"]))

    def tick(self) -> None:
        """Forget removed skills whose processes are gone."""
        for rt in list(self.sup.skills.values()):
            if rt.removing and not rt.procs and rt.rollout is None:
                self._forget(rt)

    # --- checking ----------------------------------------------------------------

    def _plan(self, new: Config) -> Plan:
        env_now: dict[str, str] = {}
        for name, sc in new.skills.items():
            if sc.env_file is not None:
                env_now[name] = env_digest(sc.file_env())  # ConfigError: refused whole
        env_running = {}
        for rt in self.sup.skills.values():
            serving = rt.active()
            if serving and rt.config.env_file is not None:
                env_running[rt.name] = serving[0].env_digest
        running = {rt.name: rt.config for rt in self.sup.skills.values() if not rt.removing}
        return plan(
            running,
            new.skills,
            env_running=env_running,
            env_now=env_now,
            daemon_old=self.config.daemon,
            daemon_new=new.daemon,
        )

    def _check(self, the_plan: Plan, new: Config) -> None:
        for sp in the_plan.skills:
            sc = new.skills.get(sp.name)
            if sc is None:
                continue
            if sp.action is Action.ADD or "path" in sp.keys or "command" in sp.keys:
                _check_path(new.path, sc)
            rt = self.sup.skills.get(sp.name)
            if sp.action is Action.RESTART and rt is not None and rt.rollout is not None:
                raise UpgradeInProgress(
                    f"cannot reload: skill {sp.name!r} is in a {rt.rollout.op} "
                    f"(phase {rt.rollout.machine.phase.value}); nothing was changed, "
                    "try again when it ends",
                    skill=sp.name,
                )

    # --- applying ----------------------------------------------------------------

    def _apply(
        self, p: _Pass, name: str, action: Action, keys: tuple[str, ...], new: Config
    ) -> None:
        rt = self.sup.skills.get(name)
        if action is Action.REMOVE:
            assert rt is not None
            rt.removing = True
            self.life.stop(rt, reason=f"skill {name!r} was removed from the config")
            return  # answered once forgotten (tick)
        sc = new.skills[name]
        if action is Action.KEEP:
            self._outcome(p, name, True, "unchanged", rt)
            return
        if rt is None:
            rt = self.sup.skills[name] = new_runtime(sc, self.layout, self.config)
        old, rt.config, rt.removing = rt.config, sc, False
        self.router.limit(name, sc.settings.max_queued)
        if action is Action.UPDATE:
            self._outcome(p, name, True, "updated in place", rt)
        elif action is Action.ADD and not sc.settings.autostart:
            rt.desired = "stopped"
            self.router.close(name, f"skill {name!r} is not started (autostart = false)")
            self._outcome(p, name, True, "added; not started (autostart = false)", rt)
        elif action is Action.ADD:
            self.life.start(rt, self._waiter(p, name, "started"))
        elif rt.desired != "running":  # stopped by request: it stays so
            self._outcome(p, name, True, "stopped; the new settings apply at its start", rt)
        elif rt.active() and not rt.errored:
            undo = self._undo(rt, sc, old)
            if "path" in keys:  # the code is elsewhere now: start it from there
                self.life.upgrade(rt, None, self._waiter(p, name, "restarted", undo))
            else:
                self.life.restart(rt, self._waiter(p, name, "restarted", undo))
        else:  # errored, or waiting to restart: a fresh start with the new settings
            self.life.start(rt, self._waiter(p, name, "started"))

    def _undo(self, rt: SkillRuntime, new: SkillConfig, old: SkillConfig) -> Callable[[], None]:
        def undo() -> None:
            if rt.config is new:  # no later reload changed it again
                rt.config = old
                self.router.limit(rt.name, old.settings.max_queued)
                self.config = replace(self.config, skills={**self.config.skills, rt.name: old})
                self._applied(self.config)

        return undo

    def _waiter(
        self, p: _Pass, name: str, what: str, undo: Callable[[], None] | None = None
    ) -> Done:
        def done(_result: Any, err: Exception | None) -> None:
            rt = self.sup.skills.get(name)
            if err is None:
                self._outcome(p, name, True, what, rt)
                return
            details = err.details if isinstance(err, ZskillError) else {}
            why = str(details.get("reason") or err)
            if details.get("step"):
                why += f" (step {details['step']})"
            if undo is not None:
                undo()
                why += "; the old settings keep serving"
            error = {"type": type(err).__name__, "message": str(err), "details": details}
            self._outcome(p, name, False, f"not {what}", rt, why=why, error=error)

        return done

    def _forget(self, rt: SkillRuntime) -> None:
        """A removed skill's processes are gone: it leaves the daemon."""
        del self.sup.skills[rt.name]
        rt.log.close()
        self.events.emit(rt.name, EventKind.REMOVED)
        log.info("%s: removed", rt.name)
        p = self._pass
        if p is not None and rt.name in p.waiting:
            self._outcome(p, rt.name, True, "drained and stopped; removed", None)

    def _outcome(
        self,
        p: _Pass,
        name: str,
        ok: bool,
        detail: str,
        rt: SkillRuntime | None,
        *,
        why: str = "",
        error: dict[str, Any] | None = None,
    ) -> None:
        sp = p.plan.of(name)
        out: dict[str, Any] = {
            "skill": name,
            "action": sp.action.value,
            "keys": list(sp.keys),
            "ok": ok,
            "detail": detail,
        }
        if not ok:
            out["why"], out["error"] = why, error
        if rt is not None:
            serving = rt.active()
            out["version"] = serving[0].inst.version if serving else rt.last_version
            out["pid"] = serving[0].pid if serving else None
            out["state"] = rt.state().value
        p.outcomes[name] = out
        p.waiting.discard(name)
        if p.progress is not None:
            p.progress(out)
        if p is self._pass:
            self._maybe_finish(p)

    def _maybe_finish(self, p: _Pass) -> None:
        if p.waiting or self._pass is not p:
            return
        self._pass = None
        skills = [p.outcomes[s.name] for s in p.plan.skills if s.name in p.outcomes]
        failed = [o["skill"] for o in skills if not o["ok"]]
        result = {
            "config": str(self.config.path),
            "summary": p.plan.summary(failed),
            "ok": not failed,
            "skills": skills,
            "daemon_not_applied": list(p.plan.daemon_keys),
        }
        if failed:
            log.warning("reload: %s failed", ", ".join(failed))
        if p.done is not None:
            p.done(result, None)


def _check_path(config: Path, sc: SkillConfig) -> None:
    """The skill's path must be a directory holding its command's script."""
    where = f"{config}: skill {sc.name!r}: path {sc.path}"
    if not sc.path.is_dir():
        why = "does not exist" if not sc.path.exists() else "is not a directory"
        raise ConfigError(f"{where} {why}", file=str(config), skill=sc.name)
    entry = entry_file(sc.command)
    if entry is not None and not (sc.path / entry).is_file():
        raise ConfigError(
            f"{where} has no {entry} (its command runs it)", file=str(config), skill=sc.name
        )


__all__ = ["Reloader", "new_runtime", "watching_all"]
