"""The Supervisor on fakes: spawn, hello, promote, retire, the tick's
deadlines, and what it tells its listener when a process ends. No child
process is started (see test_daemon_fakes)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_fakes import (
    Answers,
    Clock,
    FakeProcesses,
    FakeWire,
    Recorder,
    hello_msg,
    make_config,
)

from ipc import (
    ENV_CONCURRENCY,
    ENV_ENDPOINT,
    ENV_INSTANCE,
    ENV_MAX_MESSAGE_BYTES,
    ENV_SECRET,
    ENV_SKILL,
    Drain,
    Heartbeat,
    Reject,
    Welcome,
)
from orchestrator._daemon.events import EventLog
from orchestrator._daemon.logfiles import LogFile
from orchestrator._daemon.router import InstanceState, Router
from orchestrator._daemon.runtime import Proc, SkillRuntime
from orchestrator._daemon.supervisor import ProcExit, Supervisor, SupervisorIo
from orchestrator._status import SkillStatus


class Bench:
    """A Supervisor alone, its listener a Recorder."""

    def __init__(self, base: Path, **settings: object) -> None:
        self.config = make_config(base, env={"LEVEL": "debug"}, **settings)
        self.clock = Clock()
        self.procs = FakeProcesses()
        self.wire = FakeWire()
        self.answers = Answers()
        self.router = Router(self.answers.send_call, self.answers.answer)
        self.events = EventLog(base / "events.jsonl", lambda ev: None)
        self.listener = Recorder()
        io = SupervisorIo(self.wire.send, self.wire.watch_fd, "ipc:///tmp/w", self.procs)
        self.sup = Supervisor(self.config, self.router, self.events, io, self.listener)
        sc = self.config.skills["echo"]
        self.log_path = base / "echo.log"
        lf = LogFile(self.log_path, max_bytes=1 << 20, keep=1)
        self.rt = self.sup.skills["echo"] = SkillRuntime(config=sc, log=lf, source=sc.path)
        self.router.queue("echo")

    def serving(self, version: str = "1.0.0") -> Proc:
        """A process spawned, welcomed and promoted."""
        now = self.clock()
        proc = self.sup.spawn(self.rt, self.rt.source, now)
        assert self.sup.on_hello(proc, hello_msg(self.procs, proc, version), now) is None
        self.sup.promote(self.rt, [proc], now)
        return proc

    def types(self) -> list[str]:
        return [e["type"] for e in self.events.query(None, 1000)]


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    bench = Bench(tmp_path)
    yield bench
    bench.events.close()
    bench.rt.log.close()


def test_spawn_gives_the_process_its_env_and_registers_it(b: Bench) -> None:
    proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
    argv, cwd, env = b.procs.spawned[0]
    assert argv[1:] == ["main.py"] and cwd == b.rt.source
    assert env[ENV_ENDPOINT] == "ipc:///tmp/w"
    first = f"echo-{b.sup.boot}-1"
    assert env[ENV_INSTANCE] == proc.id == first
    assert env[ENV_SKILL] == "echo"
    assert env[ENV_SECRET] == proc.secret and len(proc.secret) == 32
    assert env[ENV_CONCURRENCY] == "4"
    assert env[ENV_MAX_MESSAGE_BYTES] == str(b.config.daemon.max_message_bytes)
    assert env["LEVEL"] == "debug"  # the skill's own env goes along
    assert b.sup.procs == {first: proc} and b.rt.procs == {first: proc}
    assert b.sup.by_id(first.encode()) is proc
    assert proc.state is InstanceState.SPAWNED
    assert b.types() == ["spawn"]
    second = b.sup.spawn(b.rt, b.rt.source, b.clock())
    assert second.id == f"echo-{b.sup.boot}-2" and second.secret != proc.secret


def test_spawn_watches_the_pipes_and_logs_each_line(b: Bench) -> None:
    r_out, w_out = os.pipe()
    os.set_blocking(r_out, False)
    real_spawn = b.procs.spawn

    def spawn_with_pipe(
        argv: list[str], cwd: Path, env: dict[str, str], memory_max_bytes: int | None = None
    ) -> object:
        child = real_spawn(argv, cwd, env, memory_max_bytes)
        child.stdout_fd = r_out
        return child

    b.procs.spawn = spawn_with_pipe  # type: ignore[assignment,method-assign]
    try:
        proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
        assert list(b.wire.watched) == [r_out]
        os.write(w_out, b"first line\nhalf")
        b.wire.watched[r_out]()
        os.close(w_out)
        w_out = -1
        b.sup.reaped(proc.pid, 0, b.clock())  # reads what is left, then forgets it
        assert b.wire.watched == {}
        lines = [json.loads(x)["line"] for x in b.log_path.read_text().splitlines()]
        assert lines == ["first line", "half"]
    finally:
        os.close(r_out)
        if w_out != -1:
            os.close(w_out)


def test_instance_ids_are_unique_across_daemon_lifetimes(b: Bench, tmp_path: Path) -> None:
    """Hardening 7: a skill process of a daemon that died reconnects to the
    next daemon's workers.sock with its old routing id; a process the new
    daemon spawns must never get that id (it would be refused by ZeroMQ and
    never say hello). Every daemon run puts a token of its own in its ids."""
    first = b.sup.spawn(b.rt, b.rt.source, b.clock())
    io = SupervisorIo(b.wire.send, b.wire.watch_fd, "ipc:///tmp/w", b.procs)
    ids = {first.id}
    for _ in range(20):  # twenty daemon runs after this one
        later = Supervisor(b.config, b.router, b.events, io, b.listener)
        later.skills["echo"] = b.rt
        proc = later.spawn(b.rt, b.rt.source, b.clock())
        assert proc.id not in ids
        ids.add(proc.id)


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("secret", "0" * 32, "secret"),
        ("protocol", 1, "protocol version 1"),
        ("skill", "mail", "announced skill name 'mail'"),
        ("instance", "echo-9", "announced instance 'echo-9'"),
        ("concurrency", 0, "announced concurrency 0"),
    ],
)
def test_hello_refused(b: Bench, field: str, value: object, why: str) -> None:
    proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
    reason = b.sup.on_hello(proc, hello_msg(b.procs, proc, **{field: value}), b.clock())
    assert reason is not None and why in reason
    assert [m.reason for m in b.wire.to(proc, Reject)] == [reason]
    assert b.wire.to(proc, Welcome) == []
    assert proc.state is InstanceState.SPAWNED


def test_hello_welcomed_takes_the_smaller_concurrency(b: Bench) -> None:
    proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
    msg = hello_msg(b.procs, proc, "2.1.0", has_health=True, tools=("say", "shout"))
    assert b.sup.on_hello(proc, msg, b.clock()) is None
    (welcome,) = b.wire.to(proc, Welcome)
    assert (welcome.heartbeat_s, welcome.liveness_s) == (1.0, 5.0)
    assert proc.state is InstanceState.CHECKING and proc.has_health
    assert proc.inst.version == "2.1.0" and sorted(proc.inst.tools) == ["say", "shout"]
    assert proc.inst.concurrency == 4  # it offered 8; the config allows 4
    # A replayed hello changes nothing and is not answered again.
    assert b.sup.on_hello(proc, msg, b.clock()) is None
    assert len(b.wire.to(proc, Welcome)) == 1


def test_promote_switches_routing_and_retires_the_old_one(b: Bench) -> None:
    old = b.serving("1.0.0")
    assert b.router.queues["echo"].active == [old.inst]
    b.clock.now += 10
    new = b.sup.spawn(b.rt, b.rt.source, b.clock())
    b.sup.on_hello(new, hello_msg(b.procs, new, "2.0.0"), b.clock())
    retired = b.sup.promote(b.rt, [new], b.clock())
    assert retired == [old]
    assert b.router.queues["echo"].active == [new.inst]
    assert new.state is InstanceState.READY and new.ready_at == b.clock()
    assert old.state is InstanceState.DRAINING and old.stop_reason == f"replaced by {new.id}"
    assert len(b.wire.to(old, Drain)) == 1
    assert old.drain_deadline == b.clock() + b.rt.config.settings.grace_s
    assert b.rt.last_version == "2.0.0"
    status = b.sup.status(b.rt, b.clock())
    assert (status["state"], status["version"], status["pid"]) == ("running", "2.0.0", new.pid)


def test_retire_before_serving_kills_at_once(b: Bench) -> None:
    proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
    b.sup.retire(proc, b.clock(), "not wanted")
    assert b.procs.signalled(proc) == [signal.SIGKILL]
    assert b.wire.to(proc, Drain) == []


def test_tick_sends_heartbeats_and_kills_the_unresponsive(b: Bench) -> None:
    proc = b.serving()
    b.clock.now += 1.0
    b.sup.tick(b.clock())
    assert [m.in_flight for m in b.wire.to(proc, Heartbeat)] == [0]
    b.sup.tick(b.clock())  # not again within heartbeat_s
    assert len(b.wire.to(proc, Heartbeat)) == 1
    assert b.procs.signalled(proc) == []
    b.clock.now += 5.5  # last seen 6.5 s ago; liveness_s is 5
    b.sup.tick(b.clock())
    assert b.procs.signalled(proc) == [signal.SIGKILL]
    assert proc.fault.startswith("unresponsive for 6.5 s")
    assert "unresponsive" in b.types()
    assert b.router.queues["echo"].active == []


def test_drain_deadline_then_sigterm_then_sigkill(b: Bench) -> None:
    proc = b.serving()
    s = b.rt.config.settings
    b.sup.retire(proc, b.clock(), "stopped by request")
    t0 = b.clock()
    for dt, expected in (
        (s.grace_s - 0.1, []),
        (s.grace_s, [signal.SIGTERM]),
        (s.grace_s + s.kill_timeout_s - 0.1, [signal.SIGTERM]),
        (s.grace_s + s.kill_timeout_s, [signal.SIGTERM, signal.SIGKILL]),
        (s.grace_s + s.kill_timeout_s + 1, [signal.SIGTERM, signal.SIGKILL]),
    ):
        b.clock.now = t0 + dt
        proc.last_seen = b.clock()  # it still heartbeats: only the deadlines act
        b.sup.tick(b.clock())
        assert b.procs.signalled(proc) == expected, dt


def test_reaped_serving_process_is_unexpected_and_its_calls_settled(b: Bench) -> None:
    proc = b.serving()
    b.router.accept(b"client", 7, "echo", "say", b"", 30.0, b.clock())
    assert b.answers.sent == [(proc.id, 1)]
    returned = b.sup.reaped(proc.pid, 1, b.clock())
    assert returned is proc
    assert b.listener.exited == [(proc, ProcExit(True, "exited with code 1", True))]
    assert b.listener.gone == [proc]  # nothing of its tree is left
    (answer,) = b.answers.answered
    assert answer[0] == 7 and answer[1] is not None and answer[1].type == "OutcomeUnknown"
    assert b.sup.by_id(proc.inst.rid) is None and b.sup.procs == {}
    assert b.procs.closed == [proc.pid] and b.procs.adopted == [proc.id]
    assert b.rt.last_exit.startswith(f"{proc.id} (version 1.0.0) exited with code 1")
    exit_event = b.events.query("echo", 1)[0]
    assert exit_event["type"] == "exit" and exit_event["data"]["expected"] is False


def test_reaped_retired_process_is_expected(b: Bench) -> None:
    proc = b.serving()
    b.sup.retire(proc, b.clock(), "stopped by request")
    b.sup.reaped(proc.pid, -15, b.clock())
    assert b.listener.exited == [(proc, ProcExit(False, "was killed by SIGTERM", False))]
    assert b.rt.last_exit == ""


def test_a_tree_that_outlives_its_process_is_forgotten_only_when_gone(b: Bench) -> None:
    proc = b.serving()
    b.procs.lingering.add(proc.pid)
    b.sup.reaped(proc.pid, 0, b.clock())
    assert len(b.listener.exited) == 1 and b.listener.gone == []
    assert proc.id in b.sup.procs
    b.sup.tick(b.clock())  # still there: SIGKILL it again
    assert b.procs.signalled(proc)[-1] is signal.SIGKILL and b.listener.gone == []
    b.procs.lingering.clear()
    b.sup.tick(b.clock())
    assert b.listener.gone == [proc] and b.sup.procs == {}


def test_reaped_unknown_pid_is_ignored(b: Bench) -> None:
    b.serving()
    assert b.sup.reaped(4242, 0, b.clock()) is None
    assert b.listener.exited == [] and b.procs.signals == []


def test_status_keeps_every_key_in_order(b: Bench) -> None:
    proc = b.serving()
    status = b.sup.status(b.rt, b.clock())
    assert list(status) == list(SkillStatus.__annotations__)
    assert status["instances"] == [
        {
            "instance": proc.id,
            "version": "1.0.0",
            "pid": proc.pid,
            "state": "ready",
            "in_flight": 0,
            "cancelling": 0,
        }
    ]
    assert type(status["state"]) is str  # a plain string on the wire, not the enum


def test_a_hello_adds_to_the_tree_only_a_pid_that_descends_from_the_process(b: Bench) -> None:
    """A hello names the pid that said it (a wrapper's child, say): that pid
    is signalled with the tree only if it really descends from the spawned
    process, never some other process the hello chose to name."""
    for pid, descends in ((4242, True), (1, False)):
        proc = b.sup.spawn(b.rt, b.rt.source, b.clock())
        if descends:
            b.procs.descendants[proc.pid] = {pid}
        b.sup.on_hello(proc, hello_msg(b.procs, proc, "1.0.0", pid=pid), b.clock())
        assert (pid in proc.child.tree) is descends


def test_a_memory_limit_asks_the_kernel_for_a_backstop_at_twice_it(tmp_path: Path) -> None:
    """Hardening 12: sampling replaces a process over memory_limit; the
    kernel stops a tree that outgrows the sampling, at twice the limit."""
    limited = Bench(tmp_path, memory_limit="100MiB")
    try:
        limited.sup.spawn(limited.rt, limited.rt.source, limited.clock())
        assert limited.procs.memory_max == [200 << 20]
    finally:
        limited.events.close()
        limited.rt.log.close()
    (tmp_path / "other").mkdir()
    unlimited = Bench(tmp_path / "other")
    try:
        unlimited.sup.spawn(unlimited.rt, unlimited.rt.source, unlimited.clock())
        assert unlimited.procs.memory_max == [None]
    finally:
        unlimited.events.close()
        unlimited.rt.log.close()
