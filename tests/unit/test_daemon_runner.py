"""The RolloutRunner on fakes: a rollout from spawn to the done reply, and
its rollbacks. Driven the way the daemon drives it, through the Lifecycle
that owns it (test_daemon_fakes.Harness); no child process is started."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_fakes import (
    DeferredJobs,
    FakeProcesses,
    FakeWire,
    Harness,
    Recorder,
    hello_msg,
    make_config,
)

from ipc import HealthCheck, UpgradeFailed, UpgradeInProgress
from orchestrator._daemon.events import EventLog
from orchestrator._daemon.jobs import InlineJobs
from orchestrator._daemon.logfiles import LogFile
from orchestrator._daemon.router import Router
from orchestrator._daemon.runner import RolloutRunner
from orchestrator._daemon.runtime import Proc, SkillRuntime
from orchestrator._daemon.supervisor import Supervisor, SupervisorIo
from orchestrator._status import RolloutOp


class Waiter:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Exception | None]] = []
        self.progress: list[dict[str, Any]] = []

    def done(self, body: Any, err: Exception | None) -> None:
        self.calls.append((body, err))

    def step(self, body: dict[str, Any]) -> None:
        self.progress.append(body)


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


def running(h: Harness, version: str = "1.0.0") -> Proc:
    h.life.start(h.rt)
    proc = h.newest()
    h.hello(proc, version=version)
    assert h.rt.active() == [proc] and h.rt.rollout is None
    return proc


def begin_upgrade(h: Harness) -> tuple[Proc, Proc, Waiter]:
    old = running(h)
    (h.rt.config.path / "main.py").write_text("print('v2')\n")
    w = Waiter()
    h.clock.now += 1
    h.life.upgrade(h.rt, None, w.done, w.step)
    new = h.newest()
    assert new is not old and h.rt.rollout is not None and h.rt.rollout.new is new
    return old, new, w


def test_upgrade_spawn_hello_health_switch_drain_done(h: Harness) -> None:
    old, new, w = begin_upgrade(h)
    assert h.sup.status(h.rt, h.clock())["state"] == "upgrading"
    h.hello(new, version="2.0.0", has_health=True)
    (check,) = h.wire.to(new, HealthCheck)
    assert check.timeout_s == h.rt.config.settings.health_timeout_s
    assert h.router.queues["echo"].active == [old.inst]  # not switched before it is healthy
    h.healthy(new, True, "fine")
    assert h.router.queues["echo"].active == [new.inst]  # the switch
    assert old.stop_reason == f"replaced by {new.id}"
    assert w.calls == []  # done only once the old one is gone
    h.exit(old, 0)
    ((report, err),) = w.calls
    assert err is None
    assert (report["op"], report["ok"], report["old_version"], report["new_version"]) == (
        "upgrade",
        True,
        "1.0.0",
        "2.0.0",
    )
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        ("prepare", "ok"),
        ("spawn", "ok"),
        ("hello", "ok"),
        ("health", "ok"),
        ("switch", "ok"),
        ("drain", "ok"),
        ("done", "ok"),
    ]
    assert {type(s["status"]) for s in report["steps"]} == {str}  # plain strings, not enums
    assert ("spawn", "started") in [(p["step"], p["status"]) for p in w.progress]
    assert h.rt.rollout is None
    assert h.releases.current("echo") is not None
    assert h.releases.current("echo").version == "2.0.0"  # type: ignore[union-attr]
    types = h.types()
    assert types.index("ready") < types.index("deployed")
    assert all(type(t) is str for t in h.published)
    deployed = h.events.query("echo", 1)[0]
    assert deployed["type"] == "deployed" and type(deployed["data"]["op"]) is str


def test_failed_health_rolls_back_and_the_old_one_keeps_serving(h: Harness) -> None:
    old, new, w = begin_upgrade(h)
    h.hello(new, version="2.0.0", has_health=True)
    h.healthy(new, False, "db down")
    assert h.procs.signalled(new)[-1].name == "SIGKILL"
    assert h.router.queues["echo"].active == [old.inst]
    assert old.stop_reason == "" and h.procs.signalled(old) == []
    ((report, err),) = w.calls
    assert report is None and isinstance(err, UpgradeFailed)
    assert err.details["step"] == "health" and "db down" in str(err)
    assert "version 1.0.0 keeps serving" in str(err)
    assert h.types()[-1] == "rolled_back"
    assert h.rt.rollout is None
    h.exit(new, -9)
    assert h.rt.restart_at is None  # the old one serves: nothing to restart
    assert h.sup.status(h.rt, h.clock())["state"] == "running"


def test_a_second_operation_while_one_runs_is_refused(h: Harness) -> None:
    begin_upgrade(h)
    with pytest.raises(UpgradeInProgress, match="upgrade is already in progress"):
        h.life.upgrade(h.rt, None)
    with pytest.raises(UpgradeInProgress):
        h.life.restart(h.rt)
    assert len(h.procs.spawned) == 2  # nothing more was spawned


def test_no_hello_within_start_timeout_rolls_back(h: Harness) -> None:
    old, new, w = begin_upgrade(h)
    h.clock.now += h.rt.config.settings.start_timeout_s
    h.life.tick(h.clock())
    ((_, err),) = w.calls
    assert isinstance(err, UpgradeFailed) and err.details["step"] == "hello"
    assert "no hello within start_timeout_s" in str(err)
    assert h.procs.signalled(new)[-1].name == "SIGKILL"
    assert h.rt.active() == [old]


def test_tools_changed_is_published_at_the_switch(h: Harness) -> None:
    _, new, _ = begin_upgrade(h)
    h.life.hello(new, hello_msg(h.procs, new, "2.0.0", tools=("say", "shout")), h.clock())
    changed = [e for e in h.events.query("echo", 100) if e["type"] == "tools_changed"]
    assert [(e["data"]["added"], e["data"]["removed"]) for e in changed] == [(["shout"], [])]


def test_runner_alone_reports_a_spawn_failure_to_its_listener(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    procs, wire, listener = FakeProcesses(), FakeWire(), Recorder()
    router = Router(lambda *a: None, lambda *a: None)
    events = EventLog(tmp_path / "events.jsonl", lambda ev: None)
    sup = Supervisor(
        config, router, events, SupervisorIo(wire.send, wire.watch_fd, "x", procs), listener
    )
    runner = RolloutRunner(sup, events, listener, jobs=InlineJobs(), clock=lambda: 0.0)
    sc = config.skills["echo"]
    rt = sup.skills["echo"] = SkillRuntime(
        config=sc, log=LogFile(tmp_path / "echo.log", max_bytes=1 << 20, keep=1), source=sc.path
    )
    w = Waiter()
    procs.spawn_error = FileNotFoundError(2, "No such file", "python")
    try:
        runner.begin(rt, RolloutOp.START, sc.path, 0.0, done=w.done)
        assert listener.finished == [("start", False)]
        ((_, err),) = w.calls
        assert isinstance(err, UpgradeFailed) and err.details["step"] == "spawn"
        assert "cannot start" in str(err) and rt.rollout is None and rt.procs == {}
        # Once it has ended, the next one may begin.
        procs.spawn_error = None
        runner.begin(rt, RolloutOp.START, sc.path, 1.0)
        assert len(rt.procs) == 1
    finally:
        events.close()
        rt.log.close()


# --- the prepare step: code copied and hashed off the daemon's thread ---------------


@pytest.fixture
def hd(tmp_path: Path) -> Iterator[Harness]:
    """A harness whose jobs wait until the test runs them."""
    harness = Harness(tmp_path, jobs=DeferredJobs())
    yield harness
    harness.close()


def started(hd: Harness) -> Proc:
    hd.life.start(hd.rt)
    jobs = hd.jobs
    assert isinstance(jobs, DeferredJobs)
    jobs.run_next()
    proc = hd.newest()
    hd.hello(proc)
    return proc


def test_an_upgrade_waits_for_its_code_to_be_prepared(hd: Harness) -> None:
    old = started(hd)
    jobs = hd.jobs
    assert isinstance(jobs, DeferredJobs)
    w = Waiter()
    hd.life.upgrade(hd.rt, None, w.done, w.step)
    # Nothing spawned yet: the copy runs elsewhere; the old version serves.
    assert len(hd.procs.spawned) == 1 and hd.rt.active() == [old]
    assert [(p["step"], p["status"]) for p in w.progress] == [("prepare", "started")]
    assert hd.sup.status(hd.rt, hd.clock())["state"] == "upgrading"
    with pytest.raises(UpgradeInProgress, match="phase preparing"):
        hd.life.restart(hd.rt)
    jobs.run_next()
    assert ("prepare", "ok") in [(p["step"], p["status"]) for p in w.progress]
    assert len(hd.procs.spawned) == 2  # then the new process, as before


def test_a_stop_while_preparing_answers_and_stops_the_copy(hd: Harness) -> None:
    started(hd)
    jobs = hd.jobs
    assert isinstance(jobs, DeferredJobs)
    w = Waiter()
    hd.life.upgrade(hd.rt, None, w.done)
    (_, _, cancelled) = jobs.pending[0]
    hd.life.stop(hd.rt)
    ((_, err),) = w.calls
    assert isinstance(err, UpgradeFailed) and err.details["step"] == "prepare"
    assert cancelled.is_set()  # the copy is told to give up
    releases_before = sorted(p.name for p in (hd.releases.root / "echo").iterdir())
    jobs.run_next()  # the job sees the Event, stops, and leaves no copy behind
    assert sorted(p.name for p in (hd.releases.root / "echo").iterdir()) == releases_before
    assert len(hd.procs.spawned) == 1


def test_a_release_ready_too_late_is_discarded(hd: Harness) -> None:
    started(hd)
    jobs = hd.jobs
    assert isinstance(jobs, DeferredJobs)
    (hd.rt.config.path / "new.txt").write_text("changed code: a new release is copied")
    hd.life.upgrade(hd.rt, None)
    job, done, _ = jobs.pending.pop(0)
    result = job(threading.Event())  # the copy finished just as ...
    assert result.release is not None and Path(result.release.path).is_dir()
    hd.life.stop(hd.rt)  # ... the rollout ended
    done(result, None)
    assert not Path(result.release.path).exists()
    assert len(hd.procs.spawned) == 1
