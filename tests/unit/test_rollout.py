"""The rollout state machine, driven with a fake clock."""

from __future__ import annotations

from orchestrator._daemon.rollout import (
    CheckHealth,
    Finish,
    KillNew,
    Phase,
    Prepare,
    Report,
    Rollout,
    Spawn,
    Step,
    Switch,
)


def machine() -> Rollout:
    return Rollout(start_timeout_s=10, health_timeout_s=5)


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Report)]


def test_happy_path_with_health_hook() -> None:
    m = machine()
    assert kinds(m.start(0.0)) == [Spawn]
    assert kinds(m.spawned(0.1)) == []
    assert m.phase is Phase.WAITING_HELLO
    assert kinds(m.hello(0.5, has_health=True)) == [CheckHealth]
    assert m.phase is Phase.HEALTH_CHECKING
    assert kinds(m.health(0.6, True)) == [Switch]
    assert m.phase is Phase.DRAINING and m.switched_at == 0.6
    out = m.old_drained(2.0)
    assert kinds(out) == [Finish]
    fin = out[-1]
    assert isinstance(fin, Finish) and fin.ok
    assert m.phase is Phase.DONE
    done = [r for r in m.reports if r.step is Step.DONE]
    assert done and done[0].elapsed_s == 2.0


def test_no_health_hook_switches_on_hello() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    assert kinds(m.hello(0.2, has_health=False)) == [Switch]


def test_hello_timeout_rolls_back() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    assert m.tick(9.9) == []
    out = m.tick(10.0)
    assert kinds(out) == [KillNew, Finish]
    fin = out[-1]
    assert isinstance(fin, Finish) and not fin.ok and fin.failed_step is Step.HELLO
    assert "start_timeout_s" in fin.reason
    assert m.phase is Phase.ROLLED_BACK


def test_health_timeout_and_failure() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    m.hello(1.0, has_health=True)
    out = m.tick(6.0)
    assert kinds(out) == [KillNew, Finish]

    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    m.hello(1.0, has_health=True)
    out = m.health(1.1, False, "db down")
    fin = out[-1]
    assert isinstance(fin, Finish) and "db down" in fin.reason and fin.failed_step is Step.HEALTH


def test_exit_before_switch_fails_after_switch_does_not() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    out = m.new_exited(0.3, "exited with code 1")
    assert kinds(out) == [KillNew, Finish]

    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    m.hello(0.1, has_health=False)
    assert m.new_exited(0.3, "exited with code 1") == []
    assert m.phase is Phase.DRAINING


def test_spawn_failure_and_late_events_are_ignored() -> None:
    m = machine()
    m.start(0.0)
    out = m.spawn_failed(0.0, "no such file")
    assert kinds(out) == [KillNew, Finish]
    # Anything after the end changes nothing.
    assert m.hello(1.0, has_health=False) == []
    assert m.health(1.0, True) == []
    assert m.tick(100.0) == []
    assert m.old_drained(100.0) == []


def test_refused_hello() -> None:
    m = machine()
    m.start(0.0)
    m.spawned(0.0)
    out = m.refused(0.1, "speaks protocol version 999")
    fin = out[-1]
    assert isinstance(fin, Finish) and "999" in fin.reason and fin.failed_step is Step.HELLO


def test_prepare_comes_first_and_times_its_own_step() -> None:
    r = Rollout(start_timeout_s=5, health_timeout_s=5)
    first = r.start(10.0, prepare=True)
    assert [type(a) for a in first] == [Report, Prepare]
    assert r.tick(1000.0) == []  # a long copy has no deadline of its own
    actions = r.prepared(12.5, "release 2")
    reports = [a for a in actions if isinstance(a, Report)]
    assert (reports[0].step, reports[0].elapsed_s, reports[0].detail) == (
        Step.PREPARE,
        2.5,
        "release 2",
    )
    assert isinstance(actions[-1], Spawn)
    assert r.prepared(13.0) == []  # only once


def test_a_failed_or_cancelled_prepare_rolls_back_at_that_step() -> None:
    r = Rollout(start_timeout_s=5, health_timeout_s=5)
    r.start(0.0, prepare=True)
    actions = r.cancel(1.0, "the skill was stopped")
    fin = actions[-1]
    assert isinstance(fin, Finish) and not fin.ok and fin.failed_step is Step.PREPARE
    r2 = Rollout(start_timeout_s=5, health_timeout_s=5)
    r2.start(0.0, prepare=True)
    fin2 = r2.prepare_failed(1.0, "cannot prepare the code: OSError")[-1]
    assert isinstance(fin2, Finish) and fin2.reason.startswith("cannot prepare")


def test_a_rollback_says_what_is_left_serving() -> None:
    upgrade = Rollout(start_timeout_s=5, health_timeout_s=5, has_old=True)
    upgrade.start(0.0)
    first_start = Rollout(start_timeout_s=5, health_timeout_s=5, has_old=False)
    first_start.start(0.0)
    details = []
    for r in (upgrade, first_start):
        reports = [a for a in r.spawn_failed(1.0, "no such file") if isinstance(a, Report)]
        details.append(next(a.detail for a in reports if a.step is Step.ROLLBACK))
    assert details[0] == "the old version keeps serving"
    assert "keeps serving" not in details[1] and "no earlier version" in details[1]
