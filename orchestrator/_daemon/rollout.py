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

HANDING_OFF comes between the health check and the switch only when the
old version exports state and the new one imports it (``hello(...,
handoff_wait_s=...)``):

    healthy -> HANDING_OFF: HoldCalls (new calls wait in the daemon's queue)
                 | old_idle (its last call answered)      -> ExportState
                 | exported(ok) (the state, from the old) -> ImportState
                 | imported(ok)                           -> the switch, DRAINING
                 +-- old calls still running after handoff_wait_s, export or
                     import raised or timed out (handoff_timeout_s), either
                     process exited -> ResumeCalls, then the usual rollback:
                     the old version, state and all, serves the held calls

Decisions only: every method takes ``now`` and returns the actions for the
daemon to carry out, so the machine is unit-tested with a fake clock.
"""

from __future__ import annotations

from enum import Enum

from .._status import StepStatus
from .rollout_actions import (
    Action,
    CheckHealth,
    ExportState,
    Finish,
    HoldCalls,
    ImportState,
    KillNew,
    Prepare,
    Report,
    ResumeCalls,
    Spawn,
    Step,
    Switch,
)


class Phase(Enum):
    PREPARING = "preparing"
    SPAWNING = "spawning"
    WAITING_HELLO = "waiting_hello"
    HEALTH_CHECKING = "health_checking"
    HANDING_OFF = "handing_off"
    DRAINING = "draining"
    DONE = "done"
    ROLLED_BACK = "rolled_back"


_BEFORE_SWITCH = (
    Phase.PREPARING,
    Phase.SPAWNING,
    Phase.WAITING_HELLO,
    Phase.HEALTH_CHECKING,
    Phase.HANDING_OFF,
)
_STEP_OF = {
    Phase.PREPARING: Step.PREPARE,
    Phase.SPAWNING: Step.SPAWN,
    Phase.WAITING_HELLO: Step.HELLO,
    Phase.HEALTH_CHECKING: Step.HEALTH,
    Phase.HANDING_OFF: Step.HANDOFF,
    Phase.DRAINING: Step.DRAIN,
}


class Stage(Enum):
    """Where a handoff is (in Phase.HANDING_OFF)."""

    WAITING_IDLE = "waiting for the old version's calls to end"
    EXPORTING = "export_state"
    IMPORTING = "import_state"


class Rollout:
    def __init__(
        self,
        *,
        start_timeout_s: float,
        health_timeout_s: float,
        has_old: bool = True,
        handoff_timeout_s: float = 30.0,
    ) -> None:
        """``has_old``: an old version serves (an upgrade), or nothing does
        (a first start): what a rollback leaves behind differs.
        ``handoff_timeout_s``: for export and import of state together."""
        self.has_old = has_old
        self.start_timeout_s = start_timeout_s
        self.health_timeout_s = health_timeout_s
        self.handoff_timeout_s = handoff_timeout_s
        self.stage: Stage | None = None  # in HANDING_OFF only
        self._handoff_wait_s: float | None = None
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

    def hello(
        self,
        now: float,
        *,
        has_health: bool,
        detail: str = "",
        handoff_wait_s: float | None = None,
    ) -> list[Action]:
        """``handoff_wait_s``: state is to be handed over (the old version
        exports it, the new one imports it), and the old version's calls get
        that long to end before it does; None: no handoff."""
        if self.phase is not Phase.WAITING_HELLO:
            return []
        self._handoff_wait_s = handoff_wait_s
        out: list[Action] = [self._report(Step.HELLO, StepStatus.OK, now, detail)]
        if not has_health:
            return out + self._next_after_health(now)
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
        return [
            self._report(Step.HEALTH, StepStatus.OK, now, detail),
            *self._next_after_health(now),
        ]

    def old_idle(self, now: float) -> list[Action]:
        """The old process runs no call any more (checked by the runner)."""
        if self.stage is not Stage.WAITING_IDLE:
            return []
        self.stage, self._deadline = Stage.EXPORTING, now + self.handoff_timeout_s
        return [ExportState(self.handoff_timeout_s)]

    def exported(self, now: float, ok: bool, detail: str = "") -> list[Action]:
        if self.stage is not Stage.EXPORTING:
            return []
        if not ok:
            return self._fail(now, f"export_state of the old version failed: {detail}")
        self.stage = Stage.IMPORTING
        assert self._deadline is not None
        return [ImportState(max(0.0, self._deadline - now))]

    def imported(self, now: float, ok: bool, detail: str = "") -> list[Action]:
        if self.stage is not Stage.IMPORTING:
            return []
        if not ok:
            return self._fail(now, f"import_state of the new version failed: {detail}")
        self.stage = None
        return [self._report(Step.HANDOFF, StepStatus.OK, now, detail), *self._switch(now)]

    def old_exited(self, now: float, how: str) -> list[Action]:
        """An old process exited. During a handoff, before its state reached
        the new process, that ends the rollout."""
        if self.phase is Phase.HANDING_OFF and self.stage is not Stage.IMPORTING:
            return self._fail(now, f"the old version {how} before handing its state over")
        return []

    def new_exited(self, now: float, how: str) -> list[Action]:
        """The new process exited. Before the switch that is a failed rollout;
        after it, the rollout itself is done and restart policy takes over."""
        if self.phase in _BEFORE_SWITCH:
            return self._fail(now, f"the new process {how} before serving")
        return []

    def old_drained(self, now: float, detail: str = "") -> list[Action]:
        """The old processes are gone; ``detail``: how long they took, for which calls."""
        if self.phase is not Phase.DRAINING:
            return []
        self.phase, self.finished_at, self._deadline = Phase.DONE, now, None
        return [
            self._report(Step.DRAIN, StepStatus.OK, now, detail),
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
        if self.stage is Stage.WAITING_IDLE:
            return self._fail(
                now,
                f"the old version's calls did not end within {self._handoff_wait_s or 0:g} s "
                "(its drain window); the state can be handed over only once they have",
            )
        if self.stage is not None:
            return self._fail(
                now,
                f"{self.stage.value} did not answer within "
                f"handoff_timeout_s={self.handoff_timeout_s:g}",
            )
        return []

    def cancel(self, now: float, reason: str) -> list[Action]:
        if self.phase in _BEFORE_SWITCH:
            return self._fail(now, reason)
        return []

    # --- internals -------------------------------------------------------------

    def _next_after_health(self, now: float) -> list[Action]:
        if self._handoff_wait_s is None:
            return self._switch(now)
        self.phase, self._step_at, self.stage = Phase.HANDING_OFF, now, Stage.WAITING_IDLE
        self._deadline = now + self._handoff_wait_s
        return [self._report(Step.HANDOFF, StepStatus.STARTED, now), HoldCalls()]

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
        resume: list[Action] = [ResumeCalls()] if self.phase is Phase.HANDING_OFF else []
        self.phase, self.finished_at, self._deadline = Phase.ROLLED_BACK, now, None
        self.stage = None
        return [
            self._report(step, StepStatus.FAILED, now, reason),
            *resume,
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


__all__ = [
    "Action",
    "CheckHealth",
    "ExportState",
    "Finish",
    "HoldCalls",
    "ImportState",
    "KillNew",
    "Phase",
    "Prepare",
    "Report",
    "ResumeCalls",
    "Rollout",
    "Spawn",
    "Stage",
    "Step",
    "Switch",
]
