"""What ``zskill reload`` would change: the difference between the config a
daemon runs and the one on disk, decided without I/O.

For each skill the plan says one of:

- ``add``: new in the file; it starts if ``autostart``;
- ``remove``: gone from the file; it drains and stops, then is forgotten;
- ``restart``: a setting its process was started with changed (``path``,
  ``command``, ``env``, ``env_file`` or the file's contents, ``concurrency``,
  ``memory_limit``: the kernel's backstop is set at the spawn), or any
  setting not known to be applied in place: a new process with the new
  settings replaces the old one through the usual zero-downtime overlap;
- ``update``: only settings the daemon reads each time it needs them changed
  (:data:`IN_PLACE_KEYS`: timeouts, ``grace_s``, the restart policy,
  ``max_queued``, ``autostart``, ``watch``, ...): taken in place, the
  process keeps running;
- ``keep``: nothing changed; its processes are not touched.

Settings of the ``[daemon]`` table are listed but not applied: the sockets,
the run dir and the limits they carry were fixed when the daemon started.

Only key names appear in a plan, never values: ``env`` and the env file
hold secrets.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ._config import DaemonSettings, SkillConfig, SkillSettings

IN_PLACE_KEYS = frozenset(
    {
        "start_timeout_s",
        "health_timeout_s",
        "grace_s",
        "kill_timeout_s",
        "cancel_grace_s",
        "autostart",
        "restart",
        "max_restarts",
        "restart_window_s",
        "backoff_s",
        "backoff_max_s",
        "max_queued",
        "watch",
    }
)
"""Settings the daemon reads whenever it needs them: a change takes effect
without a new process. Any other change restarts the skill -- the safe side
for a setting added later that a process is started with."""


class Action(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    RESTART = "restart"
    UPDATE = "update"
    KEEP = "keep"


@dataclass(frozen=True, slots=True)
class SkillPlan:
    name: str
    action: Action
    keys: tuple[str, ...] = ()  # the settings that changed, sorted


@dataclass(frozen=True, slots=True)
class Plan:
    skills: tuple[SkillPlan, ...]  # in the new file's order, then the removed ones
    daemon_keys: tuple[str, ...] = ()  # [daemon] settings that changed (not applied)

    def names(self, action: Action) -> list[str]:
        return [s.name for s in self.skills if s.action is action]

    def of(self, name: str) -> SkillPlan:
        return next(s for s in self.skills if s.name == name)

    @property
    def changes_anything(self) -> bool:
        return any(s.action is not Action.KEEP for s in self.skills)

    def summary(self, failed: Collection[str] = ()) -> str:
        """``1 added, 1 removed, 1 restarted, 2 unchanged``; the skills in
        ``failed`` counted as failed, not as what was planned for them."""
        words = {
            Action.ADD: "added",
            Action.REMOVE: "removed",
            Action.RESTART: "restarted",
            Action.UPDATE: "updated in place",
            Action.KEEP: "unchanged",
        }
        counts = {w: sum(n not in failed for n in self.names(a)) for a, w in words.items()}
        parts = [f"{n} {w}" for w, n in counts.items() if n]
        if failed:
            parts.append(f"{len(failed)} failed")
        return ", ".join(parts) or "no skills"


def changed_keys(old: SkillConfig, new: SkillConfig) -> list[str]:
    """The settings of ``old`` and ``new`` that differ. Paths are compared
    resolved: ``./echo`` and ``echo`` are the same place."""
    keys = []
    for key in SkillSettings.model_fields:
        if key == "path":
            differs = old.path != new.path
        elif key == "env_file":
            differs = old.env_file != new.env_file
        else:
            differs = getattr(old.settings, key) != getattr(new.settings, key)
        if differs:
            keys.append(key)
    return keys


def plan(
    running: Mapping[str, SkillConfig],
    new: Mapping[str, SkillConfig],
    *,
    env_running: Mapping[str, str] | None = None,
    env_now: Mapping[str, str] | None = None,
    daemon_old: DaemonSettings | None = None,
    daemon_new: DaemonSettings | None = None,
) -> Plan:
    """The plan that takes the skills from ``running`` to ``new``.

    ``env_running``: for each skill whose process serves and has an
    env_file, the digest of the file it was started with; ``env_now``: the
    digest of each env_file as it reads now. A skill whose file changed
    under the same path is restarted (key ``env_file``)."""
    env_running = env_running or {}
    env_now = env_now or {}
    out = []
    for name, cfg in new.items():
        old = running.get(name)
        if old is None:
            out.append(SkillPlan(name, Action.ADD))
            continue
        keys = changed_keys(old, cfg)
        env_changed = name in env_running and env_running[name] != env_now.get(name)
        if env_changed and "env_file" not in keys:
            keys.append("env_file")
        keys.sort()
        if not keys:
            action = Action.KEEP
        elif IN_PLACE_KEYS.issuperset(keys):
            action = Action.UPDATE
        else:
            action = Action.RESTART
        out.append(SkillPlan(name, action, tuple(keys)))
    out.extend(SkillPlan(name, Action.REMOVE) for name in running if name not in new)
    daemon_keys: tuple[str, ...] = ()
    if daemon_old is not None and daemon_new is not None:
        daemon_keys = tuple(
            k
            for k in DaemonSettings.model_fields
            if getattr(daemon_old, k) != getattr(daemon_new, k)
        )
    return Plan(tuple(out), daemon_keys)


__all__ = ["IN_PLACE_KEYS", "Action", "Plan", "SkillPlan", "changed_keys", "plan"]
