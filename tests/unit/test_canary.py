"""Canaries without processes: the plan, the step's judge, the weighted
split with its sessions, and the rollout machine's canary and instances."""

from __future__ import annotations

import pytest

from ipc import BadRequest, ToolSpec
from orchestrator._daemon.canary import MIN_CALLS_P99, CanaryPlan, Window, judge
from orchestrator._daemon.rollout import (
    CheckHealth,
    DrainNew,
    Finish,
    Judge,
    KillNew,
    Phase,
    Report,
    Rollout,
    SetWeight,
    Step,
    Switch,
)
from orchestrator._daemon.router import Instance, InstanceState, PendingCall, Router
from orchestrator._daemon.stats import BOUNDS, VersionTotals
from orchestrator._daemon.weights import Split

PLAN = CanaryPlan((5, 25, 100), step_s=10, max_error_rate=0.02, max_p99_ratio=2.0)


def kinds(actions: list[object]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Report)]


def totals(calls: int, errors: int, latency_s: float) -> VersionTotals:
    t = VersionTotals()
    t.calls, t.errors = calls, errors
    idx = next(i for i, b in enumerate(BOUNDS) if b >= latency_s)
    t.hist[idx] = calls
    return t


# --- the plan and the judge ------------------------------------------------------


def test_plan_from_args_checks_every_field() -> None:
    p = CanaryPlan.from_args({"weights": [5, 25, 100], "step_s": 2, "max_p99_ratio": 3})
    assert p.weights == (5, 25, 100) and p.step_s == 2.0 and p.max_p99_ratio == 3.0
    for bad in (
        {"weights": []},
        {"weights": [50, 25]},
        {"weights": [0, 100]},
        {"weights": [5, 101]},
        {"weights": [5], "step_s": -1},
        {"weights": [5], "max_error_rate": 2},
        {"weights": [5], "max_p99_ratio": 0.5},
        {"weights": [True]},
    ):
        with pytest.raises(BadRequest):
            CanaryPlan.from_args(bad)


def test_window_between_two_totals() -> None:
    base = Window.snapshot(totals(100, 1, 0.001))
    now = totals(100, 1, 0.001)
    now.calls, now.errors = 130, 4
    now.hist[next(i for i, b in enumerate(BOUNDS) if b >= 0.5)] += 30
    w = Window.between(now, base)
    assert (w.calls, w.errors) == (30, 3)
    assert w.p99_ms is not None and w.p99_ms >= 500
    assert Window.between(None, base) == Window()


def test_judge_error_rate_is_compared_with_stable() -> None:
    stable = Window.snapshot(totals(1000, 0, 0.001))
    bad = Window.snapshot(totals(50, 15, 0.001))
    v = judge(PLAN, stable, bad)
    assert not v.ok and "error rate 30.0%" in v.detail
    assert v.canary["errors"] == 15 and v.stable["errors"] == 0
    # A stable version that errors as often passes the same canary.
    assert judge(PLAN, Window.snapshot(totals(1000, 300, 0.001)), bad).ok


def test_judge_p99_only_with_enough_calls() -> None:
    stable = Window.snapshot(totals(1000, 0, 0.001))
    slow = Window.snapshot(totals(MIN_CALLS_P99, 0, 0.1))
    v = judge(PLAN, stable, slow)
    assert not v.ok and "p99" in v.detail
    few = Window.snapshot(totals(MIN_CALLS_P99 - 1, 0, 0.1))
    assert judge(PLAN, stable, few).ok
    # Ten times slower, but by less than P99_SLACK_MS: noise, not a regression.
    assert judge(PLAN, stable, Window.snapshot(totals(100, 0, 0.01))).ok


def test_judge_at_full_weight_uses_stable_s_earlier_steps() -> None:
    before = Window.snapshot(totals(1000, 0, 0.001))
    v = judge(PLAN, Window(), Window.snapshot(totals(100, 10, 0.001)), before)
    assert not v.ok and v.stable["calls"] == 1000


# --- the split and sessions ----------------------------------------------------


def test_split_sends_exactly_its_share() -> None:
    s = Split([], 5)
    lanes = [s.lane(None) for _ in range(200)]
    assert sum(lanes) == 10 and lanes[19] and not any(lanes[:19])
    s.percent = 100
    assert all(s.lane(None) for _ in range(10))


def test_sessions_stay_on_their_first_lane_and_the_map_is_bounded() -> None:
    s = Split([], 50, max_sessions=3)
    first = {k: s.lane(k) for k in "abc"}
    assert set(first.values()) == {True, False}
    s.percent = 100
    assert all(s.lane(k) == first[k] for k in "abc" for _ in range(5))
    s.lane("d")  # forgets "a", the least recently used
    assert "a" not in s.sessions and len(s.sessions) == 3
    assert s.pinned() == (sum(not v for v in s.sessions.values()), sum(s.sessions.values()))


def _inst(name: str, version: str) -> Instance:
    return Instance(name, "a", version, 4, {"t": ToolSpec("t", "", {})}, InstanceState.READY)


def test_router_splits_calls_by_weight_and_session() -> None:
    sent: list[tuple[str, str | None]] = []

    def send(inst: Instance, call: PendingCall, timeout_s: float) -> None:
        sent.append((inst.version, call.session))
        r.result(inst, call.call_id, None, b"", 0.0)

    r = Router(send, lambda *a: None)
    stable, canary = _inst("a-1", "1"), _inst("a-2", "2")
    r.set_active("a", [stable], 0.0)
    r.set_split("a", [canary], 25, 0.0)
    for n in range(100):
        r.accept(b"c", n, "a", "t", b"", 10, 0.0)
    assert sum(v == "2" for v, _ in sent) == 25
    sent.clear()
    for n in range(40):
        r.accept(b"c", n, "a", "t", b"", 10, 0.0, session=f"s{n % 8}")
    by_session: dict[str | None, set[str]] = {}
    for v, sess in sent:
        by_session.setdefault(sess, set()).add(v)
    assert all(len(vs) == 1 for vs in by_session.values())
    assert {next(iter(vs)) for vs in by_session.values()} == {"1", "2"}
    # The canary gone: every call goes to stable, sessions or not.
    r.set_split("a", [], 0, 0.0)
    sent.clear()
    r.accept(b"c", 1, "a", "t", b"", 10, 0.0, session="s1")
    assert sent == [("1", "s1")]


def test_a_full_lane_holds_the_queue_rather_than_overflow() -> None:
    sent: list[str] = []
    r = Router(lambda i, c, t: sent.append(i.version), lambda *a: None)
    stable, canary = _inst("a-1", "1"), _inst("a-2", "2")
    stable.concurrency = 100
    canary.concurrency = 1
    r.set_active("a", [stable], 0.0)
    r.set_split("a", [canary], 50, 0.0)
    for n in range(10):
        r.accept(b"c", n, "a", "t", b"", 10, 0.0)
    assert sent.count("2") == 1  # the canary's lane is full: it waits, stable does not take it
    assert r.queued("a") > 0


# --- the machine -----------------------------------------------------------------


def canary_machine(instances: int = 1) -> Rollout:
    m = Rollout(start_timeout_s=10, health_timeout_s=5, canary=PLAN, instances=instances)
    m.start(0.0)
    m.spawned(0.0)
    return m


def test_a_healthy_canary_walks_every_weight_then_switches() -> None:
    m = canary_machine()
    out = m.hello(0.1, has_health=False)
    assert kinds(out) == [SetWeight] and out[-1] == SetWeight(5)
    assert m.phase is Phase.CANARY and m.weight == 5 and m.deadline == 10.1
    assert m.tick(5.0) == [] and kinds(m.tick(10.1)) == [Judge]
    assert m.deadline is None  # nothing more until judged
    assert [a for a in m.judged(10.2, True, "fine") if isinstance(a, SetWeight)] == [SetWeight(25)]
    m.tick(20.2)
    assert [a for a in m.judged(20.3, True, "") if isinstance(a, SetWeight)] == [SetWeight(100)]
    m.tick(30.3)
    assert kinds(m.judged(30.4, True, "")) == [Switch]
    assert m.phase is Phase.DRAINING and m.weight == 100


def test_a_failed_step_drains_the_canary() -> None:
    m = canary_machine()
    m.hello(0.1, has_health=False)
    m.tick(10.1)
    out = m.judged(10.2, False, "error rate 30%")
    assert kinds(out) == [DrainNew, Finish]
    fin = out[-1]
    assert isinstance(fin, Finish) and fin.failed_step is Step.CANARY
    assert "failed at 5%: error rate 30%" in fin.reason


def test_pause_resume_promote_and_abort() -> None:
    m = canary_machine()
    m.hello(0.1, has_health=False)
    m.pause(1.0)
    assert m.paused and m.deadline is None and m.tick(100.0) == []
    assert [a for a in m.resume(2.0) if isinstance(a, SetWeight)] == [SetWeight(5)]
    assert m.deadline == 12.0
    assert kinds(m.promote(3.0)) == [Switch]
    m2 = canary_machine()
    m2.hello(0.1, has_health=False)
    assert kinds(m2.cancel(1.0, "aborted")) == [DrainNew, Finish]
    m3 = canary_machine()
    m3.hello(0.1, has_health=False)
    assert kinds(m3.new_exited(1.0, "exited with code 1")) == [DrainNew, Finish]


def test_instances_all_say_hello_and_pass_health_before_the_switch() -> None:
    m = Rollout(start_timeout_s=10, health_timeout_s=5, instances=3)
    m.start(0.0)
    m.spawned(0.0)
    assert m.hello(0.1, has_health=True) == [] and m.hello(0.2, has_health=True) == []
    assert kinds(m.hello(0.3, has_health=True)) == [CheckHealth]
    assert m.health(0.4, True) == [] and m.health(0.5, True) == []
    assert kinds(m.health(0.6, True)) == [Switch]
    m2 = Rollout(start_timeout_s=10, health_timeout_s=5, instances=3)
    m2.start(0.0)
    m2.spawned(0.0)
    for t in (0.1, 0.2, 0.3):
        m2.hello(t, has_health=True)
    m2.health(0.4, True)
    assert kinds(m2.health(0.5, False)) == [KillNew, Finish]


def test_the_gate_fails_at_its_own_step() -> None:
    m = Rollout(start_timeout_s=10, health_timeout_s=5)
    m.start(0.0)
    m.spawned(0.0)
    out = m.gate_failed(0.1, "breaking change")
    fin = out[-1]
    assert isinstance(fin, Finish) and fin.failed_step is Step.GATE
    assert kinds(out) == [KillNew, Finish]
