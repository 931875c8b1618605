"""The Lifecycle on fakes: start, stop with waiters, hello and health
replies routed through it, and the restart policy carried out when a
serving process dies. No child process is started (test_daemon_fakes)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_fakes import Harness, hello_msg

from ipc import ControlError, Drain, HealthCheck, HealthReply, Reject, UpgradeFailed
from orchestrator._daemon.memory import MemoryGuard, hold_s


class Waiter:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Exception | None]] = []

    def __call__(self, body: Any, err: Exception | None) -> None:
        self.calls.append((body, err))


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path, backoff_s=0.5, max_restarts=1)
    yield harness
    harness.close()


def test_start_runs_a_rollout_and_answers_with_the_status(h: Harness) -> None:
    done = Waiter()
    h.life.start(h.rt, done)
    proc = h.newest()
    assert h.sup.status(h.rt, h.clock())["state"] == "starting"
    assert done.calls == []
    h.hello(proc, version="1.0.0")
    ((status, err),) = done.calls
    assert err is None and status["state"] == "running" and status["pid"] == proc.pid
    current = h.releases.current("echo")
    assert current is not None and current.version == "1.0.0" and h.rt.release == current.id
    steps = [
        (e["data"]["step"], e["data"]["status"])
        for e in h.events.query("echo", 100)
        if e["type"] == "rollout"
    ]
    assert steps == [
        ("prepare", "started"),  # the code hashed and copied, off the daemon's thread
        ("prepare", "ok"),
        ("spawn", "started"),
        ("spawn", "ok"),
        ("hello", "started"),
        ("hello", "ok"),
        ("switch", "ok"),
        ("drain", "started"),  # nothing to drain: over at once, but never after done
        ("drain", "ok"),
        ("done", "ok"),
    ]
    assert h.types()[-2:] == ["ready", "deployed"]
    # Starting what runs answers at once and spawns nothing.
    again = Waiter()
    h.life.start(h.rt, again)
    assert again.calls[0][1] is None and len(h.procs.spawned) == 1


def test_a_refused_hello_fails_the_start_through_the_lifecycle(h: Harness) -> None:
    done = Waiter()
    h.life.start(h.rt, done)
    proc = h.newest()
    h.life.hello(proc, hello_msg(h.procs, proc, secret="f" * 32), h.clock())
    assert [m.reason for m in h.wire.to(proc, Reject)] == ["hello without this instance's secret"]
    assert h.procs.signalled(proc) == [signal.SIGKILL]
    ((_, err),) = done.calls
    assert isinstance(err, UpgradeFailed) and err.details["step"] == "hello"
    # The start failed with nothing serving: the restart policy backs off.
    assert h.rt.restart_at == h.clock() + 0.5


def test_a_stale_health_reply_is_ignored(h: Harness) -> None:
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc, has_health=True)
    (check,) = h.wire.to(proc, HealthCheck)
    h.life.health_reply(proc, HealthReply(check.check_id - 1, False, "old"), h.clock())
    assert h.rt.rollout is not None and h.procs.signals == []
    h.life.health_reply(proc, HealthReply(check.check_id, True), h.clock())
    assert h.rt.rollout is None and h.rt.active() == [proc]


def test_a_crash_backs_off_then_restarts_then_errors(h: Harness) -> None:
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc)
    h.exit(proc, 1)  # it was serving: unexpected
    assert h.rt.restart_at == h.clock() + 0.5
    backoff = h.events.query("echo", 1)[0]
    assert backoff["type"] == "backoff" and backoff["data"]["failures"] == 1
    assert h.sup.status(h.rt, h.clock())["state"] == "backoff"
    h.clock.now += 0.4
    h.life.tick(h.clock())
    assert len(h.procs.spawned) == 1  # not yet
    h.clock.now += 0.1
    h.life.tick(h.clock())
    assert len(h.procs.spawned) == 2 and h.rt.restarts == 1
    assert "restart" in h.types()
    second = h.newest()
    h.hello(second)
    h.exit(second, 1)  # max_restarts = 1: a second failure in the window
    assert h.rt.errored and h.rt.restart_at is None
    assert h.sup.status(h.rt, h.clock())["state"] == "errored"
    h.router.accept(b"c", 5, "echo", "say", b"", 10.0, h.clock())
    ((req_id, error, _),) = h.io_answers.answered
    assert req_id == 5 and error is not None and "is errored" in error.message


def test_restart_never_stops_the_skill(tmp_path: Path) -> None:
    h = Harness(tmp_path, restart="never")
    try:
        h.life.start(h.rt)
        proc = h.newest()
        h.hello(proc)
        h.exit(proc, 3)
        assert h.rt.desired == "stopped" and h.rt.restart_at is None
        assert h.events.query("echo", 1)[0]["type"] == "stopped"
        assert h.sup.status(h.rt, h.clock())["state"] == "stopped"
    finally:
        h.close()


def test_a_retired_process_exiting_is_not_a_crash(h: Harness) -> None:
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc)
    h.life.stop(h.rt)
    h.exit(proc, 0)
    assert (
        h.rt.restart_at is None
        and not h.rt.errored
        and h.rt.crash_times == type(h.rt.crash_times)()
    )


def test_stop_answers_its_waiters_when_the_last_process_is_gone(h: Harness) -> None:
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc)
    first, second = Waiter(), Waiter()
    h.life.stop(h.rt, first)
    h.life.stop(h.rt, second)
    assert len(h.wire.to(proc, Drain)) == 1
    assert h.sup.status(h.rt, h.clock())["state"] == "stopping"
    assert first.calls == [] and second.calls == []
    h.procs.lingering.add(proc.pid)
    h.exit(proc, 0)
    assert first.calls == []  # reaped, but its tree is not gone yet
    h.procs.lingering.clear()
    h.sup.tick(h.clock())
    for w in (first, second):
        ((status, err),) = w.calls
        assert err is None and status["state"] == "stopped"
    assert h.types()[-1] == "stopped"
    # Stopping what is stopped answers at once.
    third = Waiter()
    h.life.stop(h.rt, third)
    assert third.calls[0][0]["state"] == "stopped"


def test_stop_during_a_start_cancels_it(h: Harness) -> None:
    started, stopped = Waiter(), Waiter()
    h.life.start(h.rt, started)
    proc = h.newest()
    h.life.stop(h.rt, stopped)
    ((_, err),) = started.calls
    assert isinstance(err, UpgradeFailed)
    assert h.procs.signalled(proc)[0] is signal.SIGKILL
    assert stopped.calls == []
    h.exit(proc, -9)
    assert stopped.calls[0][0]["state"] == "stopped"
    assert h.rt.restart_at is None  # stopped on purpose: no backoff


def test_a_stop_overtaken_by_a_start_is_answered_when_its_process_is_gone(h: Harness) -> None:
    """Hardening 3: a start while a stop drained spawned a new process, so
    "no process left" never held and the stop was never answered."""
    h.life.start(h.rt)
    old = h.newest()
    h.hello(old)
    h.router.accept(b"c", 1, "echo", "say", b"", 60.0, h.clock())  # a slow call in flight
    stopped, started = Waiter(), Waiter()
    h.life.stop(h.rt, stopped)
    assert len(h.wire.to(old, Drain)) == 1
    h.life.start(h.rt, started)
    new = h.newest()
    assert new is not old
    h.hello(new)
    assert started.calls[0][1] is None and started.calls[0][0]["state"] == "running"
    assert stopped.calls == []  # its process still drains
    h.router.result(old.inst, 1, None, b"", h.clock())
    h.exit(old, 0)
    ((body, err),) = stopped.calls
    assert body is None and isinstance(err, ControlError)
    assert err.message.startswith("stop of 'echo' was overtaken: a start put it back in service")
    assert err.details["state"] == "running" and err.details["overtaken_by"] == "start"
    assert "stopped" not in h.types()[-3:]  # it is not stopped: no such event
    assert h.rt.stop_waiters == []


def test_an_upgrade_overtakes_a_stop_too_and_a_second_stop_restores_it(h: Harness) -> None:
    h.life.start(h.rt)
    first = h.newest()
    h.hello(first)
    h.router.accept(b"c", 1, "echo", "say", b"", 60.0, h.clock())
    one = Waiter()
    h.life.stop(h.rt, one)
    h.life.upgrade(h.rt, None)
    second = h.newest()
    h.hello(second, version="2.0.0")
    # Stopped again before the first stop's process is gone: that stop holds
    # after all, and both wait for every process the second one retired.
    two = Waiter()
    h.life.stop(h.rt, two)
    h.exit(second, 0)
    assert one.calls == [] and two.calls == []
    h.router.result(first.inst, 1, None, b"", h.clock())
    h.exit(first, 0)
    for w in (one, two):
        ((status, err),) = w.calls
        assert err is None and status["state"] == "stopped"
    assert h.types()[-1] == "stopped"


def test_a_stop_with_its_process_gone_before_the_start_serves_is_answered(h: Harness) -> None:
    h.life.start(h.rt)
    old = h.newest()
    h.hello(old)
    stopped = Waiter()
    h.life.stop(h.rt, stopped)
    h.life.start(h.rt)  # spawned, no hello yet
    h.exit(old, 0)
    ((_, err),) = stopped.calls
    assert isinstance(err, ControlError) and err.details["state"] == "starting"


def test_a_skill_that_cannot_start_says_why_not_that_an_old_version_serves(
    h: Harness,
) -> None:
    """Hardening 14: a skill whose path is gone errored with "the old
    version keeps serving" as its last exit (the rollback step's note)."""
    h.procs.spawn_error = FileNotFoundError(2, "No such file or directory")
    h.life.start(h.rt)
    assert h.sup.status(h.rt, h.clock())["state"] == "backoff"
    h.clock.now += 1.0
    h.life.tick(h.clock())  # max_restarts = 1: the second failure errors it
    status = h.sup.status(h.rt, h.clock())
    assert status["state"] == "errored"
    last = status["last_exit"] or ""
    assert last.startswith("start failed: cannot start `"), last
    assert "No such file or directory" in last and "keeps serving" not in last
    (errored,) = [e for e in h.events.query("echo", 100) if e["type"] == "errored"]
    assert errored["data"]["last_exit"] == last


def test_a_failed_start_says_why_and_its_calls_fail_at_once(h: Harness) -> None:
    """Issue 15: a skill that cannot start kept calls waiting through its
    retries until their deadlines; its last exit did not say why."""
    h.router.accept(b"c", 1, "echo", "say", b"", 60.0, h.clock())  # waits for the start
    h.life.start(h.rt)
    proc = h.newest()
    traceback = ["Traceback (most recent call last):", '  File "main.py", line 3', "SyntaxError: x"]
    proc.err_tail.extend(traceback)  # what the capture of its stderr kept
    h.exit(proc, 1)
    status = h.sup.status(h.rt, h.clock())
    assert status["state"] == "backoff"
    assert status["last_exit"] == (
        "start failed: the new process exited with code 1 before serving (SyntaxError: x)"
    )
    assert status["last_stderr"] == traceback
    (rolled_back,) = [e for e in h.events.query("echo", 100) if e["type"] == "rolled_back"]
    assert rolled_back["data"]["stderr_tail"] == traceback
    # The call that waited, and one made during the backoff: answered at once, with why.
    h.router.accept(b"c", 2, "echo", "say", b"", 60.0, h.clock())
    assert [a[0] for a in h.io_answers.answered] == [1, 2]
    for _, error, _ in h.io_answers.answered:
        assert error is not None and error.type == "SkillUnavailable"
        assert "cannot start: start failed" in error.message and "(SyntaxError: x)" in error.message
        assert "next try in 0.5 s" in error.message
    # The retry serves: calls are taken again.
    h.clock.now += 1.0
    h.life.tick(h.clock())
    h.hello(h.newest())
    assert h.sup.status(h.rt, h.clock())["state"] == "running"
    h.router.accept(b"c", 3, "echo", "say", b"", 60.0, h.clock())
    assert len(h.io_answers.answered) == 2 and len(h.io_answers.sent) == 1


def test_no_ready_event_for_an_upgrade_stopped_while_it_drained(h: Harness) -> None:
    """Hardening 14: stopped after the switch, while the old version drained,
    the upgrade still said its new process was 'ready' after 'stopping'."""
    h.life.start(h.rt)
    old = h.newest()
    h.hello(old)
    h.router.accept(b"c", 1, "echo", "say", b"", 60.0, h.clock())  # keeps the old one busy
    upgraded, stopped = Waiter(), Waiter()
    h.life.upgrade(h.rt, None, upgraded)
    new = h.newest()
    h.hello(new, version="2.0.0")  # switched; the old one drains
    h.life.stop(h.rt, stopped)
    h.exit(new, 0)
    h.router.result(old.inst, 1, None, b"", h.clock())
    h.exit(old, 0)
    kinds = h.types()
    after_stop = kinds[kinds.index("stopping") :]
    assert "ready" not in after_stop, kinds
    assert after_stop[-1] == "stopped" and stopped.calls[0][0]["state"] == "stopped"
    assert upgraded.calls[0][1] is None  # the upgrade itself went through


def test_the_drain_is_reported_before_the_rollout_is_deployed(h: Harness) -> None:
    """Hardening 14: 'drain started' came after 'deployed' (fixed in the
    runner); with an old version to drain, and without."""
    h.life.start(h.rt)
    old = h.newest()
    h.hello(old)
    h.router.accept(b"c", 1, "echo", "say", b"", 60.0, h.clock())
    h.life.upgrade(h.rt, None)
    h.hello(h.newest(), version="2.0.0")
    h.router.result(old.inst, 1, None, b"", h.clock())
    h.exit(old, 0)
    seq = [
        f"{e['data']['step']} {e['data']['status']}" if e["type"] == "rollout" else e["type"]
        for e in h.events.query("echo", 1000)
        if e["type"] in ("rollout", "deployed")
    ]
    one = ["prepare started", "prepare ok", "spawn started", "spawn ok", "hello started"]
    one += ["hello ok", "switch ok", "drain started", "drain ok", "done ok", "deployed"]
    assert seq == one + one  # the start (nothing to drain), then the upgrade


def test_a_process_over_its_memory_limit_is_replaced_without_a_storm(tmp_path: Path) -> None:
    """Hardening 12: over memory_limit (RSS sampled on the tick), a process
    is replaced by a zero-downtime restart, the event says why, the restart
    policy counts no crash; a fresh process over the limit at once waits."""
    h = Harness(tmp_path, memory_limit="80MiB")
    guard = MemoryGuard(h.life, h.events)
    try:
        h.life.start(h.rt)
        first = h.newest()
        h.hello(first)
        h.rt.stats.rss_by_pid = {first.pid: 79 << 20}
        guard.check(h.rt, h.clock())
        assert len(h.procs.spawned) == 1  # under the limit
        h.rt.stats.rss_by_pid = {first.pid: 100 << 20}
        guard.check(h.rt, h.clock())
        second = h.newest()
        assert second is not first and h.rt.rollout is not None
        event = h.events.query("echo", 100)
        (restart,) = [e["data"] for e in event if e["type"] == "restart"]
        assert restart["reason"] == "memory_limit" and restart["rss_bytes"] == 100 << 20
        assert restart["why"] == (
            f"{first.id} (pid {first.pid}) uses 100 MiB of memory, over the skill's "
            "memory_limit of 80 MiB: replaced by a zero-downtime restart"
        )
        guard.check(h.rt, h.clock())  # one at a time: the restart runs
        assert len(h.procs.spawned) == 2
        h.hello(second)
        assert h.rt.active() == [second] and h.wire.to(first, Drain)  # the old one drains
        h.exit(first, 0)
        assert not h.rt.crash_times and h.rt.restarts == 1
        assert h.sup.status(h.rt, h.clock())["state"] == "running"

        # The new one is over at once too: replaced once more, then held back.
        h.clock.now += 2
        h.rt.stats.rss_by_pid = {second.pid: 90 << 20}
        guard.check(h.rt, h.clock())
        third = h.newest()
        h.hello(third)
        h.exit(second, 0)
        h.clock.now += 2
        h.rt.stats.rss_by_pid = {third.pid: 90 << 20}
        guard.check(h.rt, h.clock())
        assert len(h.procs.spawned) == 3  # held: hold_s(2) = 10 s
        h.clock.now += 8.5
        guard.check(h.rt, h.clock())
        assert len(h.procs.spawned) == 4
        assert [hold_s(n) for n in (1, 2, 3, 4, 10)] == [0.0, 10.0, 20.0, 40.0, 300.0]
    finally:
        h.close()


def test_no_memory_restart_without_a_limit_or_while_stopped(h: Harness) -> None:
    guard = MemoryGuard(h.life, h.events)
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc)
    h.rt.stats.rss_by_pid = {proc.pid: 10 << 30}
    guard.check(h.rt, h.clock())
    assert len(h.procs.spawned) == 1
