"""What the rollout machine (:mod:`.rollout`) asks the daemon to do, and
the steps it reports: plain values, carried out by the RolloutRunner."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .._status import StepStatus


class Step(StrEnum):
    PREPARE = "prepare"
    SPAWN = "spawn"
    HELLO = "hello"
    GATE = "gate"
    HEALTH = "health"
    HANDOFF = "handoff"
    CANARY = "canary"
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
class HoldCalls:
    """Stop sending calls to the old process; new ones wait in the queue."""


@dataclass(frozen=True, slots=True)
class ExportState:
    """Ask the old process (idle now) for its state."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class ImportState:
    """Hand the state the old process exported to the new one."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class ResumeCalls:
    """The handoff failed: the old process serves again, held calls first."""


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


@dataclass(frozen=True, slots=True)
class SetWeight:
    """The canary takes ``percent`` of the calls from now on; a new step
    begins (the runner snapshots both versions' figures)."""

    percent: int


@dataclass(frozen=True, slots=True)
class Judge:
    """The canary's step is over: compare the versions and answer ``judged``."""


@dataclass(frozen=True, slots=True)
class DrainNew:
    """The canary failed: its weight goes to 0 and its processes drain."""

    reason: str


Action = (
    Prepare
    | Spawn
    | CheckHealth
    | HoldCalls
    | ExportState
    | ImportState
    | ResumeCalls
    | Switch
    | KillNew
    | SetWeight
    | Judge
    | DrainNew
    | Report
    | Finish
)
