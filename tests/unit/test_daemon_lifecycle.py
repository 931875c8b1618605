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

from ipc import Drain, HealthCheck, HealthReply, Reject, UpgradeFailed


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
