"""What ``zskill up --detach`` waits for once the daemon answers: every
autostart skill ready, or known not to be.

    1. poll ``list`` until each autostart skill is running (ready), or in
       backoff or errored (its start failed: the daemon says why), or the
       bound passes (the slowest skill's start_timeout_s + health_timeout_s,
       and a margin for copying its code);
    2. print one line per skill: its state, and why when it is not serving,
       with the last lines its process wrote on stderr (a traceback);
    3. the caller exits 1 if any could not start; the daemon keeps running
       the others either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._status import SkillState, SkillStatus

if TYPE_CHECKING:
    from .._client.sync import Client
    from .._config import Config

MARGIN_S = 5.0  # on top of the slowest start + health: preparing the code, a busy machine
FAILED = (SkillState.BACKOFF, SkillState.ERRORED)
STDERR_LINES = 10  # of the tail the daemon keeps, what the start-up report shows


@dataclass(frozen=True, slots=True)
class Startup:
    """The autostart skills as the wait left them."""

    statuses: list[SkillStatus]  # every skill of the config, in its order
    wanted: frozenset[str]  # the autostart ones
    waited_s: float
    timed_out: bool

    def failed(self) -> list[SkillStatus]:
        """Skills meant to start that do not serve."""
        return [
            s
            for s in self.statuses
            if s["name"] in self.wanted and s["state"] != SkillState.RUNNING
        ]


def bound_s(config: Config) -> float:
    """How long the skills of ``config`` may take to be ready."""
    slowest = max(
        (
            s.settings.start_timeout_s + s.settings.health_timeout_s
            for s in config.skills.values()
            if s.settings.autostart
        ),
        default=0.0,
    )
    return slowest + MARGIN_S


def wait_ready(client: Client, config: Config, *, poll_s: float = 0.1) -> Startup:
    """Poll the daemon until every autostart skill serves or failed to start."""
    wanted = frozenset(n for n, s in config.skills.items() if s.settings.autostart)
    t0 = time.monotonic()
    deadline = t0 + bound_s(config)
    while True:
        statuses: list[SkillStatus] = client.list()  # type: ignore[assignment]
        pending = [
            s
            for s in statuses
            if s["name"] in wanted and s["state"] not in (SkillState.RUNNING, *FAILED)
        ]
        now = time.monotonic()
        if not pending or now > deadline:
            return Startup(statuses, wanted, now - t0, timed_out=bool(pending))
        time.sleep(poll_s)


def report_lines(startup: Startup) -> list[str]:
    """``echo  running  1.0.0 (pid 42)``, and for a skill that does not
    serve, why, with its last stderr lines under it."""
    rows = startup.statuses
    if not rows:
        return []
    width = max(len(s["name"]) for s in rows)
    state_w = max(len(s["state"]) for s in rows)
    lines = []
    for s in rows:
        head = f"{s['name'].ljust(width)}  {s['state'].ljust(state_w)}"
        state = s["state"]
        if state == SkillState.RUNNING:
            lines.append(f"{head}  {s['version']} (pid {s['pid']})")
        elif state in FAILED:
            lines.append(f"{head}  {s.get('last_exit') or 'could not start'}")
            tail = s.get("last_stderr") or []
            lines.extend(f"{' ' * width}  | {ln}" for ln in tail[-STDERR_LINES:])
        elif state == SkillState.STOPPED and s["name"] not in startup.wanted:
            lines.append(f"{head}  (autostart = false)")
        elif state in (SkillState.STOPPED, SkillState.STOPPING):
            lines.append(f"{head}  {s.get('last_exit') or 'stopped'}")
        else:
            lines.append(f"{head}  not ready after {startup.waited_s:.0f} s")
    return lines


__all__ = ["Startup", "bound_s", "report_lines", "wait_ready"]
