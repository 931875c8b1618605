"""What the daemon holds per skill process and per skill, and what
``zskill list`` shows of it."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipc import ToolSpec

from .._config import SkillConfig
from .._status import (
    InstanceStatus,
    LongestCall,
    RolloutOp,
    SkillState,
    SkillStatus,
    StepStatus,
    VersionStatus,
)
from .canary import Verdict, Window
from .drains import CallTail, DrainLog
from .logfiles import LogFile, StreamCapture, new_tail
from .process import Child
from .releases import Release
from .rollout import Phase, Rollout
from .router import Instance, InstanceState
from .schema_diff import ToolDiff
from .stats import SkillStats, VersionTotals


@dataclass(eq=False, slots=True)
class Proc:
    """One skill process: the router's view plus the OS process and timers."""

    inst: Instance
    child: Child
    secret: str
    ready_at: float | None = None
    last_seen: float = 0.0
    last_heartbeat_sent: float = 0.0
    has_health: bool = False
    exports_state: bool = False  # it has export_state / import_state hooks
    imports_state: bool = False
    drain_deadline: float | None = None  # grace over: SIGTERM
    kill_deadline: float | None = None  # SIGTERM ignored: SIGKILL
    stop_reason: str = ""  # set when the daemon decided to retire it
    fault: str = ""  # set when the daemon killed it for misbehaving (a crash, for policy)
    captures: dict[int, StreamCapture] = field(default_factory=dict)
    health_check_id: int = 0
    env_digest: str = ""  # of the env_file it was started with ("" without one)
    # Its last stderr lines (see logfiles.TAIL_LINES): what a failure shows.
    err_tail: deque[str] = field(default_factory=new_tail)
    drain: DrainLog | None = None  # set when its drain began
    bye: str = ""  # the reason its Bye gave (an on_start that raised: its traceback)

    @property
    def id(self) -> str:
        return self.inst.id

    @property
    def state(self) -> InstanceState:
        return self.inst.state

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def cancelling(self) -> int:
        """Calls answered (cancelled, or past their deadline) whose handler
        has not returned: its skill was told to stop them, and they still
        hold their slot (see .cancels)."""
        return sum(1 for c in self.inst.in_flight.values() if c.answered)

    def status(self) -> InstanceStatus:
        return {
            "instance": self.id,
            "version": self.inst.version,
            "pid": self.pid,
            "state": self.state.value,
            "in_flight": len(self.inst.in_flight),
            "cancelling": self.cancelling,
        }


Done = Callable[[Any, Exception | None], None]
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Prepared:
    """New code made ready to run: where from, and the release recording it."""

    source: Path
    release: Release | None
    detail: str


PrepareJob = Callable[[threading.Event], Prepared]
"""Copies and hashes new code, off the daemon's thread (see ``jobs``)."""


@dataclass(eq=False, slots=True)
class ActiveRollout:
    """A rollout in progress and who waits for it."""

    op: RolloutOp
    machine: Rollout
    source: Path
    old: list[Proc]
    old_version: str
    news: list[Proc] = field(default_factory=list)  # the new processes, once spawned
    release: Release | None = None
    done: list[Done] = field(default_factory=list)
    progress: list[ProgressFn] = field(default_factory=list)
    # The tools the serving version had when the rollout began (None: nothing
    # served), and whether the new version's differ: decided at the switch.
    old_tools: dict[str, ToolSpec] | None = None
    tools_changed: bool = False
    # The tools added, removed, changed (and what breaks callers), from the
    # first hello; an upgrade that breaks callers is refused unless allowed.
    tool_diff: ToolDiff | None = None
    allow_breaking: bool = False
    # A canary's figures when its step began (by version), the stable's
    # calls over the earlier steps, and the last step's verdict.
    step_base: dict[str, Window] = field(default_factory=dict)
    stable_before: Window = field(default_factory=Window)
    verdict: Verdict | None = None
    # New code to prepare before the spawn, and the Event that stops it.
    prepare: PrepareJob | None = None
    stop_preparing: threading.Event | None = None
    # A state handoff: the request the awaited StateReply answers, and the
    # state the old version exported, on its way to the new one.
    state_request: int = 0
    state: bytes = b""

    @property
    def new(self) -> Proc | None:
        """The first new process (a rollout of one instance has only it)."""
        return self.news[0] if self.news else None

    @property
    def new_version(self) -> str:
        return self.news[0].inst.version if self.news else ""

    def step_windows(self, by_version: dict[str, VersionTotals]) -> tuple[Window, Window]:
        """The stable's and the canary's calls since the current step began."""
        old, new = self.old_version, self.new_version
        return (
            Window.between(by_version.get(old), self.step_base.get(old)),
            Window.between(by_version.get(new), self.step_base.get(new)),
        )

    def report(self, skill: str, ok: bool, by_version: dict[str, VersionTotals]) -> dict[str, Any]:
        """The rollout's report, as its caller gets it when it ends."""
        new, m = self.new, self.machine
        report: dict[str, Any] = {
            "skill": skill,
            "op": self.op.value,
            "ok": ok,
            "old_version": self.old_version,
            "new_version": new.inst.version if new is not None else "",
            "pid": new.pid if new is not None else None,
            "pids": [p.pid for p in self.news],
            "release": self.release.id if self.release is not None else None,
            "source": str(self.source),
            "duration_s": round((m.finished_at or 0.0) - m.started_at, 4),
            "steps": [
                {"step": r.step.value, "status": r.status.value, "elapsed_s": round(r.elapsed_s, 4)}
                for r in m.reports
                if r.status is not StepStatus.STARTED
            ],
        }
        if self.tool_diff is not None:
            report["tools"] = self.tool_diff.to_dict()
        if m.canary is not None:
            report["canary"] = self.view(by_version)
        if ok:
            report["tools_changed"] = self.tools_changed
        return report

    def view(self, by_version: dict[str, VersionTotals]) -> dict[str, Any]:
        """The rollout as ``list`` and ``zskill rollout`` show it."""
        m = self.machine
        out: dict[str, Any] = {
            "op": self.op.value,
            "phase": m.phase.value,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "instances": m.instances,
        }
        if m.canary is None:
            return out
        stable, canary = self.step_windows(by_version)
        out.update(
            plan=m.canary.to_dict(),
            step=m.step_index + 1,
            steps=len(m.canary.weights),
            weight=m.weight,
            paused=m.paused,
            this_step={"stable": stable.figures(), "canary": canary.figures()},
        )
        if self.verdict is not None:
            v = self.verdict
            out["last_verdict"] = {
                "ok": v.ok,
                "detail": v.detail,
                "stable": v.stable,
                "canary": v.canary,
            }
        return out


@dataclass(eq=False, slots=True)
class StopWaiter:
    """A ``stop`` waiting for the processes it retired to be gone."""

    procs: frozenset[str]  # instance ids
    done: Done
    # The operation (start, upgrade, rollback) that put the skill back in
    # service while those processes drained; "" while the stop still holds.
    overtaken_by: str = ""


@dataclass(eq=False, slots=True)
class SkillRuntime:
    """A configured skill inside the daemon."""

    config: SkillConfig
    log: LogFile
    source: Path  # where its current release runs from
    release: int | None = None
    desired: str = "running"  # running | stopped
    errored: bool = False
    procs: dict[str, Proc] = field(default_factory=dict)
    rollout: ActiveRollout | None = None
    restarts: int = 0
    crash_times: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    last_exit: str = ""
    last_stderr: list[str] = field(default_factory=list)  # of the process that failed last
    last_version: str = ""
    stop_waiters: list[StopWaiter] = field(default_factory=list)
    removing: bool = False  # gone from the config: forgotten once its processes are
    stats: SkillStats = field(default_factory=SkillStats)
    tail: CallTail = field(default_factory=CallTail)  # recent run times, for grace "auto"
    # Where its current code came from (the source of its release): a
    # relative command such as .venv/bin/python is found there.
    origin: Path | None = None
    scaled_to: int | None = None  # set by `zskill scale`; else the config's `instances`

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def instances(self) -> int:
        """How many processes should serve the skill."""
        return self.scaled_to or self.config.settings.instances

    def active(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.state is InstanceState.READY]

    def state(self) -> SkillState:
        main = self.active()
        if self.errored:
            return SkillState.ERRORED
        if main and self.rollout is not None and self.rollout.op in _REPLACING:
            return SkillState.UPGRADING
        if main:
            return SkillState.RUNNING
        if self.desired == "stopped":
            return SkillState.STOPPING if self.procs else SkillState.STOPPED
        if self.restart_at is not None:
            return SkillState.BACKOFF
        return SkillState.STARTING

    def status(self, now: float, *, queued: int) -> SkillStatus:
        """The skill as ``list`` returns it; ``queued``: calls in its queue."""
        active = self.active()
        main = active[0] if active else None
        window = self.stats.window(now)
        return {
            "name": self.name,
            "state": self.state().value,
            "version": main.inst.version if main else self.last_version,
            "pid": main.pid if main else None,
            "uptime_s": round(now - main.ready_at, 3) if main and main.ready_at else 0.0,
            "restarts": self.restarts,
            "in_flight": sum(len(p.inst.in_flight) for p in self.procs.values()),
            "cancelling": sum(p.cancelling for p in self.procs.values()),
            "queued": queued,
            "longest_call": self._longest_call(now),
            "concurrency": self.config.settings.concurrency,
            "tools": sorted(main.inst.tools) if main else [],
            "last_exit": self.last_exit or None,
            "last_stderr": self.last_stderr,
            "calls_per_s": window["calls_per_s"],
            "errors": window["errors"],
            "error_rate": window["error_rate"],
            "p50_ms": window["p50_ms"],
            "p99_ms": window["p99_ms"],
            "cpu_percent": self.stats.cpu_percent,
            "rss_bytes": self.stats.rss_bytes,
            "release": self.release,
            "source": str(self.source),
            "instances": [p.status() for p in self.procs.values()],
            "instances_wanted": self.instances,
            "versions": self._versions(now),
            "rollout": None if self.rollout is None else self.rollout.view(self.stats.by_version),
        }

    def _longest_call(self, now: float) -> LongestCall | None:
        best: tuple[float, int, str, str] | None = None
        for p in self.procs.values():
            for call in p.inst.in_flight.values():
                if call.sent_at and (best is None or call.sent_at < best[0]):
                    best = (call.sent_at, call.call_id, call.tool, p.id)
        if best is None:
            return None
        sent_at, call_id, tool, inst = best
        return {
            "call_id": call_id,
            "tool": tool,
            "instance": inst,
            "running_s": round(now - sent_at, 3),
        }

    def _versions(self, now: float) -> list[VersionStatus]:
        """Each live version, its share of calls and its figures."""
        ar = self.rollout
        split = ar is not None and ar.machine.phase is Phase.CANARY
        canary = {p.id for p in ar.news} if ar is not None and split else set()
        groups: dict[tuple[str, bool], int] = {}
        for p in self.active():
            key = (p.inst.version, p.id in canary)
            groups[key] = groups.get(key, 0) + 1
        weight = ar.machine.weight if ar is not None and split else 0
        out: list[VersionStatus] = []
        for (version, on_canary), n in groups.items():
            w = self.stats.window(now, version)
            out.append(
                {
                    "version": version,
                    "role": "canary" if on_canary else "stable",
                    "weight": weight if on_canary else 100 - weight,
                    "instances": n,
                    "calls_per_s": w["calls_per_s"],
                    "errors": w["errors"],
                    "error_rate": w["error_rate"],
                    "p50_ms": w["p50_ms"],
                    "p99_ms": w["p99_ms"],
                }
            )
        return out


# A rollout that replaces a serving version: the skill shows as "upgrading".
_REPLACING = (RolloutOp.UPGRADE, RolloutOp.ROLLBACK)
