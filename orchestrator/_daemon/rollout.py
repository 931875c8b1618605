"""A rollout brings a new process of a skill into service, beside the old
ones, and retires the old ones only once the new one has proven itself.
Start, restart, upgrade and rollback are all rollouts (a start simply has
no old process to drain).

PREPARING -prepared-> SPAWNING -spawned-> WAITING_HELLO -hello-> HEALTH_CHECKING -healthy-> DRAINING
  |                     |                  |  (no health hook: on) |       (the switch:   |
  |                     |                  |                       |     new calls go to  |
  |                     |                  |                       |     the new process) |
  +-- copy error -------+-- spawn error ---+-- timeout, exit, -----+-- unhealthy,   old ones gone
                                           |   refused hello            timeout          |
                                           v                                             v
                ROLLED_BACK: the new process is killed;                                 DONE
                nothing else changed, the old ones still serve

PREPARING comes first only when the rollout brings new code (a release to
copy, a tree to hash); it runs off the daemon's thread, and its end comes
back as ``prepared``. Other rollouts start at SPAWNING.

Decisions only: every method takes ``now`` and returns the actions for the
daemon to carry out, so the machine is unit-tested with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from .._status import StepStatus


class Phase(Enum):
    PREPARING = "preparing"
    SPAWNING = "spawning"
    WAITING_HELLO = "waiting_hello"
    HEALTH_CHECKING = "health_checking"
    DRAINING = "draining"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


class Step(StrEnum):
    PREPARE = "prepare"
    SPAWN = "spawn"
    HELLO = "hello"
    HEALTH = "health"
    SWITCH = "switch"
    DRAIN = "drain"
    DONE = "done"
    ROLLBACK = "rollback"


# --- actions for the daemon ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prepare:
    """Copy and hash the new code, off the daemon's thread."""


@dataclass(frozen=True, slots=True)
class Spawn:
    pass


@dataclass(frozen=True, slots=True)
class CheckHealth:
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Switch:
    """Route all queued and new calls to the new process; drain the old ones."""


@dataclass(frozen=True, slots=True)
class KillNew:
    reason: str


@dataclass(frozen=True, slots=True)
class Report:
    """A step's progress, for the caller's live output and the event stream."""

    step: Step
    status: StepStatus
    elapsed_s: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Finish:
    ok: bool
    reason: str = ""
    failed_step: Step | None = None


Action = Prepare | Spawn | CheckHealth | Switch | KillNew | Report | Finish

_BEFORE_SWITCH = (Phase.PREPARING, Phase.SPAWNING, Phase.WAITING_HELLO, Phase.HEALTH_CHECKING)
_STEP_OF = {
    Phase.PREPARING: Step.PREPARE,
    Phase.SPAWNING: Step.SPAWN,
    Phase.WAITING_HELLO: Step.HELLO,
    Phase.HEALTH_CHECKING: Step.HEALTH,
    Phase.DRAINING: Step.DRAIN,
}


class Rollout:
    def __init__(
        self, *, start_timeout_s: float, health_timeout_s: float, has_old: bool = True
    ) -> None:
        """``has_old``: an old version serves (an upgrade), or nothing does
        (a first start): what a rollback leaves behind differs."""
        self.has_old = has_old
        self.start_timeout_s = start_timeout_s
        self.health_timeout_s = health_timeout_s
        self.phase = Phase.SPAWNING
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.switched_at: float | None = None
        self._step_at = 0.0
        self._deadline: float | None = None
        self.reports: list[Report] = []

    @property
    def deadline(self) -> float | None:
        return self._deadline

    # --- inputs ----------------------------------------------------------------

    def start(self, now: float, *, prepare: bool = False) -> list[Action]:
        self.started_at = self._step_at = now
        if prepare:
            self.phase = Phase.PREPARING
            return [self._report(Step.PREPARE, StepStatus.STARTED, now), Prepare()]
        return [self._report(Step.SPAWN, StepStatus.STARTED, now), Spawn()]

    def prepared(self, now: float, detail: str = "") -> list[Action]:
        if self.phase is not Phase.PREPARING:
            return []
        done = self._report(Step.PREPARE, StepStatus.OK, now, detail)
        self.phase, self._step_at = Phase.SPAWNING, now
        return [done, self._report(Step.SPAWN, StepStatus.STARTED, now), Spawn()]

    def prepare_failed(self, now: float, reason: str) -> list[Action]:
        return self._fail(now, reason)

    def spawned(self, now: float, detail: str = "") -> list[Action]:
        if self.phase is not Phase.SPAWNING:
            return []
        out: list[Action] = [self._report(Step.SPAWN, StepStatus.OK, now, detail)]
        self.phase, self._step_at = Phase.WAITING_HELLO, now
        self._deadline = now + self.start_timeout_s
        out.append(self._report(Step.HELLO, StepStatus.STARTED, now))
        return out

    def spawn_failed(self, now: float, reason: str) -> list[Action]:
        return self._fail(now, reason)

    def hello(self, now: float, *, has_health: bool, detail: str = "") -> list[Action]:
        if self.phase is not Phase.WAITING_HELLO:
            return []
        out: list[Action] = [self._report(Step.HELLO, StepStatus.OK, now, detail)]
        if not has_health:
            return out + self._switch(now)
        self.phase, self._step_at = Phase.HEALTH_CHECKING, now
        self._deadline = now + self.health_timeout_s
        out += [
            self._report(Step.HEALTH, StepStatus.STARTED, now),
            CheckHealth(self.health_timeout_s),
        ]
        return out

    def refused(self, now: float, reason: str) -> list[Action]:
        """The new process's hello broke a rule (protocol, name, secret)."""
        return self._fail(now, reason)

    def health(self, now: float, ok: bool, detail: str = "") -> list[Action]:
        if self.phase is not Phase.HEALTH_CHECKING:
            return []
        if not ok:
            return self._fail(now, f"health check failed: {detail or 'the hook returned false'}")
        return [self._report(Step.HEALTH, StepStatus.OK, now, detail), *self._switch(now)]

    def new_exited(self, now: float, how: str) -> list[Action]:
        """The new process exited. Before the switch that is a failed rollout;
        after it, the rollout itself is done and restart policy takes over."""
        if self.phase in _BEFORE_SWITCH:
            return self._fail(now, f"the new process {how} before serving")
        return []

    def old_drained(self, now: float) -> list[Action]:
        if self.phase is not Phase.DRAINING:
            return []
        self.phase, self.finished_at, self._deadline = Phase.DONE, now, None
        return [
            self._report(Step.DRAIN, StepStatus.OK, now),
            self._report(Step.DONE, StepStatus.OK, now, "", since=self.started_at),
            Finish(True),
        ]

    def tick(self, now: float) -> list[Action]:
        if self._deadline is None or now < self._deadline:
            return []
        if self.phase is Phase.WAITING_HELLO:
            return self._fail(now, f"no hello within start_timeout_s={self.start_timeout_s:g}")
        if self.phase is Phase.HEALTH_CHECKING:
            return self._fail(
                now, f"health check did not pass within health_timeout_s={self.health_timeout_s:g}"
            )
        return []

    def cancel(self, now: float, reason: str) -> list[Action]:
        if self.phase in _BEFORE_SWITCH:
            return self._fail(now, reason)
        return []

    # --- internals -------------------------------------------------------------

    def _switch(self, now: float) -> list[Action]:
        self.phase, self._step_at, self._deadline = Phase.DRAINING, now, None
        self.switched_at = now
        return [
            self._report(Step.SWITCH, StepStatus.OK, now),
            Switch(),
            self._report(Step.DRAIN, StepStatus.STARTED, now),
        ]

    def _fail(self, now: float, reason: str) -> list[Action]:
        if self.phase not in _BEFORE_SWITCH:
            return []
        step = _STEP_OF[self.phase]
        self.phase, self.finished_at, self._deadline = Phase.ROLLED_BACK, now, None
        return [
            self._report(step, StepStatus.FAILED, now, reason),
            KillNew(reason),
            self._report(Step.ROLLBACK, StepStatus.OK, now, self._left_behind()),
            Finish(False, reason, step),
        ]

    def _left_behind(self) -> str:
        if self.has_old:
            return "the old version keeps serving"
        return "nothing else changed (no earlier version was serving)"

    def _report(
        self,
        step: Step,
        status: StepStatus,
        now: float,
        detail: str = "",
        since: float | None = None,
    ) -> Report:
        start = self._step_at if since is None else since
        elapsed_s = 0.0 if status is StepStatus.STARTED else max(0.0, now - start)
        r = Report(step, status, elapsed_s, detail)
        self.reports.append(r)
        return r
