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

A rollout brings ``instances`` processes at once: the hello step ends when
all have said hello, the health step when all are healthy; one failing
fails them all. An upgrade's first hello passes the breaking-change gate
(``gate_failed``: the new tools break callers, see :mod:`.schema_diff`).

With a canary plan (an upgrade with ``--canary``; no state handoff then),
passing health leads to CANARY instead of the switch: both versions serve,
the new one taking each weight's share of calls in turn (``SetWeight``);
at each step's end the machine asks the runner to ``Judge`` the step, and
``judged`` moves on to the next weight, or after the last to the switch,
or rolls back (``DrainNew``: the canary's weight goes to 0 and it drains).
By hand: ``pause``, ``resume``, ``promote`` (the switch now), ``cancel``.

    HEALTH_CHECKING -healthy-> CANARY(w1) -passed-> CANARY(w2) ... -passed-> DRAINING
                                  |  failed, aborted, the canary exited
                                  v
                              ROLLED_BACK (the canary drains; stable serves)

Why this module is long: it is one state machine, and every transition of
it (handoff and canary included) is kept here so they read together.

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
from .canary import CanaryPlan
from .rollout_actions import (
    Action,
    CheckHealth,
    DrainNew,
    ExportState,
    Finish,
    HoldCalls,
    ImportState,
    Judge,
    KillNew,
    Prepare,
    Report,
    ResumeCalls,
    SetWeight,
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
    CANARY = "canary"
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
    Phase.CANARY: Step.CANARY,
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
        instances: int = 1,
        canary: CanaryPlan | None = None,
    ) -> None:
        """``has_old``: an old version serves (an upgrade), or nothing does
        (a first start): what a rollback leaves behind differs.
        ``handoff_timeout_s``: for export and import of state together.
        ``instances``: how many new processes must pass before the switch."""
        self.has_old = has_old
        self.instances = instances
        self.canary = canary
        self.step_index = -1  # the canary's current weight, once in CANARY
        self.paused = False
        self._hellos = 0
        self._healthy = 0
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
        self._hellos += 1
        if self._hellos < self.instances:
            return []
        if self.instances > 1:
            detail = f"{self.instances} processes, {detail}" if detail else ""
        # A canary hands no state over: both versions serve at once.
        self._handoff_wait_s = handoff_wait_s if self.canary is None else None
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

    def gate_failed(self, now: float, reason: str) -> list[Action]:
        """The new version's tools would break callers of the old one."""
        return self._fail(now, reason, Step.GATE)

    def health(self, now: float, ok: bool, detail: str = "") -> list[Action]:
        if self.phase is not Phase.HEALTH_CHECKING:
            return []
        if not ok:
            return self._fail(now, f"health check failed: {detail or 'the hook returned false'}")
        self._healthy += 1
        if self._healthy < self.instances:
            return []
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
        """The new process exited. Before the switch (or in a canary) that is
        a failed rollout; after it, restart policy takes over."""
        if self.phase in _BEFORE_SWITCH or self.phase is Phase.CANARY:
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
        if self.phase is Phase.CANARY:
            self._deadline = None  # until judged
            return [Judge()]
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
        """Stop the rollout (a stop, a shutdown, ``rollout --abort``)."""
        if self.phase in _BEFORE_SWITCH or self.phase is Phase.CANARY:
            return self._fail(now, reason)
        return []

    # --- the canary ------------------------------------------------------------

    def judged(self, now: float, ok: bool, detail: str) -> list[Action]:
        """The runner's verdict on the step that just ended."""
        if self.phase is not Phase.CANARY or self.canary is None:
            return []
        if not ok:
            return self._fail(now, f"canary failed at {self.weight}%: {detail}")
        done = self._report(Step.CANARY, StepStatus.OK, now, f"{self.weight}%: {detail}")
        if self.step_index + 1 < len(self.canary.weights):
            return [done, *self._step(now, self.step_index + 1)]
        return [done, *self._switch(now)]

    @property
    def weight(self) -> int:
        """The canary's share of calls now, in percent (0 outside CANARY)."""
        if self.phase is not Phase.CANARY or self.canary is None:
            return 100 if self.phase in (Phase.DRAINING, Phase.DONE) else 0
        return self.canary.weights[self.step_index]

    def pause(self, now: float) -> list[Action]:
        """Hold the current weight until ``resume`` or ``promote``."""
        if self.phase is not Phase.CANARY or self.paused:
            return []
        self.paused, self._deadline = True, None
        return [self._report(Step.CANARY, StepStatus.OK, now, f"paused at {self.weight}%")]

    def resume(self, now: float) -> list[Action]:
        """Go on from a pause: the current step begins again."""
        if self.phase is not Phase.CANARY or not self.paused:
            return []
        self.paused = False
        return self._step(now, self.step_index)

    def promote(self, now: float) -> list[Action]:
        """Skip the remaining steps: the canary takes every call now."""
        if self.phase is not Phase.CANARY:
            return []
        done = self._report(Step.CANARY, StepStatus.OK, now, f"promoted by hand at {self.weight}%")
        return [done, *self._switch(now)]

    # --- internals -------------------------------------------------------------

    def _next_after_health(self, now: float) -> list[Action]:
        if self.canary is not None:
            return self._step(now, 0)
        if self._handoff_wait_s is None:
            return self._switch(now)
        self.phase, self._step_at, self.stage = Phase.HANDING_OFF, now, Stage.WAITING_IDLE
        self._deadline = now + self._handoff_wait_s
        return [self._report(Step.HANDOFF, StepStatus.STARTED, now), HoldCalls()]

    def _step(self, now: float, index: int) -> list[Action]:
        assert self.canary is not None
        self.phase, self._step_at, self.step_index = Phase.CANARY, now, index
        self._deadline = None if self.paused else now + self.canary.step_s
        pct = self.canary.weights[index]
        started = f"{pct}% for {self.canary.step_s:g} s"
        return [self._report(Step.CANARY, StepStatus.STARTED, now, started), SetWeight(pct)]

    def _switch(self, now: float) -> list[Action]:
        self.phase, self._step_at, self._deadline = Phase.DRAINING, now, None
        self.switched_at = now
        return [
            self._report(Step.SWITCH, StepStatus.OK, now),
            Switch(),
            self._report(Step.DRAIN, StepStatus.STARTED, now),
        ]

    def _fail(self, now: float, reason: str, step: Step | None = None) -> list[Action]:
        canary = self.phase is Phase.CANARY
        if self.phase not in _BEFORE_SWITCH and not canary:
            return []
        step = step or _STEP_OF[self.phase]
        resume: list[Action] = [ResumeCalls()] if self.phase is Phase.HANDING_OFF else []
        self.phase, self.finished_at, self._deadline = Phase.ROLLED_BACK, now, None
        self.stage = None
        return [
            self._report(step, StepStatus.FAILED, now, reason),
            *resume,
            DrainNew(reason) if canary else KillNew(reason),
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
    "DrainNew",
    "ExportState",
    "Finish",
    "HoldCalls",
    "ImportState",
    "Judge",
    "KillNew",
    "Phase",
    "Prepare",
    "Report",
    "ResumeCalls",
    "Rollout",
    "SetWeight",
    "Spawn",
    "Stage",
    "Step",
    "Switch",
]
