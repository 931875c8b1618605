"""What the daemon holds per skill process and per skill."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import SkillConfig
from .logfiles import LogFile, StreamCapture
from .process import Child
from .releases import Release
from .rollout import Rollout
from .router import Instance, InstanceState
from .stats import SkillStats


@dataclass(eq=False, slots=True)
class Proc:
    """One skill process: the router's view plus the OS process and timers."""

    inst: Instance
    child: Child
    source: Path
    secret: str
    spawned_at: float
    spawned_wall: float
    ready_at: float | None = None
    last_seen: float = 0.0
    last_heartbeat_sent: float = 0.0
    has_health: bool = False
    hello_pid: int = 0
    drain_deadline: float | None = None  # grace over: SIGTERM
    kill_deadline: float | None = None  # SIGTERM ignored: SIGKILL
    stop_reason: str = ""  # set when the daemon decided to retire it
    fault: str = ""  # set when the daemon killed it for misbehaving (a crash, for policy)
    captures: dict[int, StreamCapture] = field(default_factory=dict)
    health_check_id: int = 0

    @property
    def id(self) -> str:
        return self.inst.id

    @property
    def state(self) -> InstanceState:
        return self.inst.state

    @property
    def pid(self) -> int:
        return self.child.pid


Done = Callable[[Any, Exception | None], None]
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(eq=False, slots=True)
class ActiveRollout:
    """A rollout in progress and who waits for it."""

    op: str  # start | restart | upgrade | rollback
    machine: Rollout
    source: Path
    old: list[Proc]
    old_version: str
    new: Proc | None = None
    release: Release | None = None
    done: list[Done] = field(default_factory=list)
    progress: list[ProgressFn] = field(default_factory=list)
    # The tools the serving version had when the rollout began (None: nothing
    # served), and whether the new version's differ: decided at the switch.
    old_tools: dict[str, Any] | None = None
    tools_changed: bool = False


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
    last_version: str = ""
    stop_waiters: list[Done] = field(default_factory=list)
    stats: SkillStats = field(default_factory=SkillStats)

    @property
    def name(self) -> str:
        return self.config.name

    def active(self) -> list[Proc]:
        return [p for p in self.procs.values() if p.state is InstanceState.READY]
