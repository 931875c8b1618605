"""The rollout machine's handoff step (state from the old version to the
new), driven with a fake clock."""

from __future__ import annotations

from orchestrator._daemon.rollout import (
    CheckHealth,
    ExportState,
    Finish,
    HoldCalls,
    ImportState,
    KillNew,
    Phase,
    Report,
    ResumeCalls,
    Rollout,
    Stage,
    Step,
    Switch,
)
from orchestrator._status import StepStatus


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Report)]


def healthy(wait_s: float | None = 5.0, handoff_timeout_s: float = 3.0) -> Rollout:
    """A machine whose new process just said hello (with a health hook)."""
    m = Rollout(start_timeout_s=10, health_timeout_s=5, handoff_timeout_s=handoff_timeout_s)
    m.start(0.0)
    m.spawned(0.0)
    assert kinds(m.hello(1.0, has_health=True, handoff_wait_s=wait_s)) == [CheckHealth]
    return m


def test_handoff_holds_exports_imports_then_switches() -> None:
    m = healthy()
    assert kinds(m.health(1.5, True)) == [HoldCalls]
    assert m.phase is Phase.HANDING_OFF and m.stage is Stage.WAITING_IDLE
    assert m.switched_at is None
    assert m.deadline == 6.5  # the old calls' window: handoff_wait_s
    out = m.old_idle(2.0)
    assert out == [ExportState(3.0)] and m.stage is Stage.EXPORTING
    assert m.deadline == 5.0  # handoff_timeout_s, for export and import together
    out = m.exported(2.5, True, "10 bytes")
    assert out == [ImportState(2.5)] and m.stage is Stage.IMPORTING
    out = m.imported(3.0, True, "10 bytes handed")
    assert kinds(out) == [Switch] and m.phase is Phase.DRAINING and m.switched_at == 3.0
    handoff = [r for r in m.reports if r.step is Step.HANDOFF]
    assert [(r.status, r.elapsed_s) for r in handoff] == [
        (StepStatus.STARTED, 0.0),
        (StepStatus.OK, 1.5),
    ]
    assert kinds(m.old_drained(4.0)) == [Finish]


def test_without_a_handoff_health_switches_at_once() -> None:
    m = healthy(wait_s=None)
    assert kinds(m.health(1.5, True)) == [Switch]
    assert m.old_idle(2.0) == [] and m.exported(2.0, True) == []


def test_no_health_hook_goes_straight_to_the_handoff() -> None:
    m = Rollout(start_timeout_s=10, health_timeout_s=5)
    m.start(0.0)
    m.spawned(0.0)
    assert kinds(m.hello(1.0, has_health=False, handoff_wait_s=2.0)) == [HoldCalls]


def test_an_import_that_raises_resumes_the_old_version_and_rolls_back() -> None:
    m = healthy()
    m.health(1.5, True)
    m.old_idle(2.0)
    m.exported(2.5, True)
    out = m.imported(2.6, False, "ValueError: bad state")
    assert kinds(out) == [ResumeCalls, KillNew, Finish]
    fin = out[-1]
    assert isinstance(fin, Finish) and not fin.ok and fin.failed_step is Step.HANDOFF
    assert "import_state of the new version failed: ValueError: bad state" in fin.reason
    assert m.phase is Phase.ROLLED_BACK and m.stage is None
    # The calls come back to the old version before the new one is killed.
    assert out.index(ResumeCalls()) < next(i for i, a in enumerate(out) if isinstance(a, KillNew))


def test_an_export_that_fails_rolls_back() -> None:
    m = healthy()
    m.health(1.5, True)
    m.old_idle(2.0)
    out = m.exported(2.1, False, "boom")
    assert kinds(out) == [ResumeCalls, KillNew, Finish]
    assert m.imported(2.2, True) == []  # too late: nothing changes


def test_old_calls_that_outlast_the_window_roll_back() -> None:
    m = healthy(wait_s=5.0)
    m.health(1.0, True)
    assert m.tick(5.9) == []
    out = m.tick(6.0)
    assert kinds(out) == [ResumeCalls, KillNew, Finish]
    fin = out[-1]
    assert isinstance(fin, Finish) and "did not end within 5 s" in fin.reason


def test_export_and_import_share_one_timeout() -> None:
    m = healthy(handoff_timeout_s=3.0)
    m.health(1.0, True)
    m.old_idle(2.0)
    m.exported(4.0, True)
    assert m.tick(4.9) == []
    out = m.tick(5.0)
    fin = out[-1]
    assert isinstance(fin, Finish) and "import_state did not answer" in fin.reason


def test_old_exit_before_export_fails_after_export_does_not() -> None:
    m = healthy()
    m.health(1.0, True)
    out = m.old_exited(1.5, "exited with code 1")
    assert kinds(out) == [ResumeCalls, KillNew, Finish]

    m = healthy()
    m.health(1.0, True)
    m.old_idle(1.1)
    m.exported(1.2, True)
    assert m.old_exited(1.3, "exited with code 1") == []  # the state is on its way
    assert kinds(m.imported(1.4, True)) == [Switch]


def test_new_exit_or_cancel_during_handoff_resume_the_old() -> None:
    m = healthy()
    m.health(1.0, True)
    assert kinds(m.new_exited(1.5, "was killed by SIGKILL")) == [ResumeCalls, KillNew, Finish]
    m = healthy()
    m.health(1.0, True)
    m.old_idle(1.1)
    assert kinds(m.cancel(1.2, "stopped")) == [ResumeCalls, KillNew, Finish]


def test_drain_detail_reaches_the_report() -> None:
    m = healthy(wait_s=None)
    m.health(1.0, True)
    m.old_drained(3.0, "waited 2.00 s for 1 call(s) (#7 work)")
    drain = [r for r in m.reports if r.step is Step.DRAIN and r.status is StepStatus.OK]
    assert drain[0].detail == "waited 2.00 s for 1 call(s) (#7 work)"
