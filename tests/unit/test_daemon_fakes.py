"""Fakes for the daemon's unit tests (test_daemon_*.py import them), and
tests that the fakes keep the promises the daemon relies on.

The daemon's glue reaches the world through three seams, each faked here:
processes (``FakeProcesses`` for :class:`~orchestrator._daemon.process.Processes`),
the workers socket and the poller (``FakeWire`` for ``SupervisorIo.send`` and
``watch_fd``), and time (``Clock``; every machine takes ``now``). No child
process is started and no socket is opened.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ipc import (
    ENV_SECRET,
    PROTOCOL_VERSION,
    HealthReply,
    Hello,
    Message,
    ToolSpec,
    WireError,
)
from orchestrator._config import Config, parse
from orchestrator._daemon.events import EventLog
from orchestrator._daemon.jobs import InlineJobs, Job, JobDone, Jobs
from orchestrator._daemon.lifecycle import Lifecycle
from orchestrator._daemon.logfiles import LogFile
from orchestrator._daemon.process import Child, Processes
from orchestrator._daemon.releases import Release, ReleaseStore
from orchestrator._daemon.router import Instance, PendingCall, Router
from orchestrator._daemon.runtime import ActiveRollout, Proc, SkillRuntime
from orchestrator._daemon.supervisor import ProcExit, SupervisorIo

T = TypeVar("T")


class FakeProcesses:
    """Processes without processes. ``spawn`` hands out pids and remembers
    what it was asked; signals are recorded, never delivered: a process
    exits when the test says so (``Supervisor.reaped``)."""

    def __init__(self) -> None:
        self.descendants: dict[int, set[int]] = {}  # pid -> the pids it started
        self.next_pid = 1000
        self.spawned: list[tuple[list[str], Path, dict[str, str]]] = []
        self.memory_max: list[int | None] = []
        self.signals: list[tuple[int, signal.Signals]] = []
        self.lingering: set[int] = set()  # pids whose tree outlives them
        self.closed: list[int] = []
        self.adopted: list[str] = []
        self.exits: list[tuple[int, int]] = []  # what reap() hands out next
        self.spawn_error: OSError | None = None

    def spawn(
        self,
        argv: list[str],
        cwd: Path,
        env: Mapping[str, str],
        memory_max_bytes: int | None = None,
    ) -> Child:
        if self.spawn_error is not None:
            raise self.spawn_error
        self.next_pid += 1
        self.spawned.append((argv, cwd, dict(env)))
        self.memory_max.append(memory_max_bytes)
        return Child(self.next_pid, None, None, None, {self.next_pid})

    def signal_tree(self, child: Child, sig: signal.Signals) -> None:
        self.signals.append((child.pid, sig))

    def tree_alive(self, child: Child) -> bool:
        return child.alive or child.pid in self.lingering

    def adopt_orphans(self, child: Child, instance: str, known: set[int]) -> None:
        self.adopted.append(instance)

    def close_pipes(self, child: Child) -> None:
        self.closed.append(child.pid)

    def reap(self) -> Iterable[tuple[int, int]]:
        out, self.exits = self.exits, []
        return out

    def become_subreaper(self) -> bool:
        return True

    def descends_from(self, pid: int, ancestor: int) -> bool:
        return pid in self.descendants.get(ancestor, ())

    def env_of(self, proc: Proc) -> dict[str, str]:
        return next(env for _, _, env in self.spawned if env["ZSKILL_INSTANCE"] == proc.id)

    def signalled(self, proc: Proc) -> list[signal.Signals]:
        return [s for pid, s in self.signals if pid == proc.pid]


class FakeWire:
    """The workers socket and the poller: what was sent to whom, which fds are watched."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []
        self.watched: dict[int, Any] = {}
        self.connected = True

    def send(self, ident: str, msg: Message) -> bool:
        self.sent.append((ident, msg))
        return self.connected

    def watch_fd(self, fd: int, handler: Any) -> None:
        if handler is None:
            self.watched.pop(fd, None)
        else:
            self.watched[fd] = handler

    def to(self, proc: Proc, kind: type[Message]) -> list[Any]:
        return [m for ident, m in self.sent if ident == proc.id and isinstance(m, kind)]


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    """A ProcListener and RolloutListener that only remembers."""

    exited: list[tuple[Proc, ProcExit]] = field(default_factory=list)
    gone: list[Proc] = field(default_factory=list)
    finished: list[tuple[str, bool]] = field(default_factory=list)
    unused: list[int] = field(default_factory=list)

    def proc_exited(self, proc: Proc, exit: ProcExit) -> None:
        self.exited.append((proc, exit))

    def proc_gone(self, proc: Proc) -> None:
        self.gone.append(proc)

    def rollout_finished(self, rt: SkillRuntime, ar: ActiveRollout, ok: bool) -> None:
        self.finished.append((ar.op.value, ok))

    def release_unused(self, rt: SkillRuntime, release: Release) -> None:
        self.unused.append(release.id)


@dataclass
class DeferredJobs:
    """Jobs held until the test runs them, as a worker thread would later."""

    pending: list[tuple[Job[Any], JobDone[Any], threading.Event]] = field(default_factory=list)

    def submit(self, job: Job[T], done: JobDone[T]) -> threading.Event:
        cancelled = threading.Event()
        self.pending.append((job, done, cancelled))
        return cancelled

    def run_next(self) -> None:
        """Run the oldest job, then hand its outcome over (the daemon's side)."""
        job, done, cancelled = self.pending.pop(0)
        try:
            result = job(cancelled)
        except BaseException as exc:
            done(None, exc)
        else:
            done(result, None)

    def close(self) -> None:
        pass


@dataclass
class Answers:
    """The router's I/O: calls sent to instances, answers to clients."""

    sent: list[tuple[str, int]] = field(default_factory=list)
    answered: list[tuple[int, WireError | None, str]] = field(default_factory=list)

    def send_call(self, inst: Instance, call: PendingCall, timeout_s: float) -> None:
        self.sent.append((inst.id, call.call_id))

    def answer(self, call: PendingCall, error: WireError | None, payload: bytes, v: str) -> None:
        self.answered.append((call.req_id, error, v))


def make_config(base: Path, **settings: Any) -> Config:
    """One skill, ``echo``, in ``base/echo`` (with a main.py), its settings overridden."""
    src = base / "echo"
    src.mkdir(exist_ok=True)
    (src / "main.py").write_text("print('v1')\n")
    skill = {"path": "echo", "command": ["python", "main.py"], "concurrency": 4, **settings}
    data = {
        "daemon": {"run_dir": "run", "heartbeat_s": 1.0, "liveness_s": 5.0},
        "skills": {"echo": skill},
    }
    return parse(data, base / "zskill.toml")


class Harness:
    """A Lifecycle (with its Supervisor and RolloutRunner) on fakes, the way
    the Daemon wires it, skills registered."""

    def __init__(self, base: Path, *, jobs: Jobs | None = None, **settings: Any) -> None:
        self.config = make_config(base, **settings)
        self.clock = Clock()
        self.procs = FakeProcesses()
        self.wire = FakeWire()
        self.io_answers = Answers()
        self.router = Router(self.io_answers.send_call, self.io_answers.answer)
        self.published: list[str] = []
        self.events = EventLog(
            base / "run" / "events.jsonl", lambda ev: self.published.append(ev.type)
        )
        self.releases = ReleaseStore(base / "run" / "releases", keep=3)
        processes: Processes = self.procs
        io = SupervisorIo(self.wire.send, self.wire.watch_fd, "ipc:///tmp/fake", processes)
        self.jobs: Jobs = InlineJobs() if jobs is None else jobs
        self.life = Lifecycle(
            self.config, self.router, self.events, self.releases, self.clock, io, self.jobs
        )
        self.sup = self.life.sup
        for name, sc in self.config.skills.items():
            lf = LogFile(base / "run" / "logs" / f"{name}.log", max_bytes=1 << 20, keep=1)
            self.sup.skills[name] = SkillRuntime(config=sc, log=lf, source=sc.path)
            self.router.queue(name)
        self.rt = self.sup.skills["echo"]

    def close(self) -> None:
        self.events.close()
        for rt in self.sup.skills.values():
            rt.log.close()

    def newest(self) -> Proc:
        return max(self.rt.procs.values(), key=lambda p: p.pid)

    def hello(self, proc: Proc, *, version: str = "1.0.0", has_health: bool = False) -> None:
        self.life.hello(proc, hello_msg(self.procs, proc, version, has_health), self.clock())

    def healthy(self, proc: Proc, ok: bool = True, detail: str = "") -> None:
        msg = HealthReply(proc.health_check_id, ok, detail)
        self.life.health_reply(proc, msg, self.clock())

    def exit(self, proc: Proc, code: int) -> None:
        """The process exits now, and SIGCHLD is handled."""
        self.sup.reaped(proc.pid, code, self.clock())

    def types(self) -> list[str]:
        return [e["type"] for e in self.events.query(None, 10_000)]


def hello_msg(
    procs: FakeProcesses,
    proc: Proc,
    version: str = "1.0.0",
    has_health: bool = False,
    tools: tuple[str, ...] = ("say",),
    **over: Any,
) -> Hello:
    """The hello a well-behaved skill process sends (its secret from its env)."""
    fields: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "skill": proc.inst.skill,
        "version": version,
        "instance": proc.id,
        "pid": proc.pid,
        "concurrency": 8,
        "tools": [ToolSpec(t, f"{t} tool", {"type": "object"}) for t in tools],
        "has_health": has_health,
        "secret": procs.env_of(proc)[ENV_SECRET],
    }
    fields.update(over)
    return Hello(**fields)


# --- the fakes themselves ------------------------------------------------------


def test_fake_processes_hand_out_pids_and_record_signals(tmp_path: Path) -> None:
    fp = FakeProcesses()
    a = fp.spawn(["x"], tmp_path, {"K": "v"})
    b = fp.spawn(["y"], tmp_path, {})
    assert a.pid != b.pid and a.tree == {a.pid}
    fp.signal_tree(a, signal.SIGTERM)
    assert fp.signals == [(a.pid, signal.SIGTERM)]
    assert a.alive and fp.tree_alive(a)  # a signal alone kills nothing
    a.exited(-9)
    assert not fp.tree_alive(a)
    fp.lingering.add(b.pid)
    b.exited(0)
    assert fp.tree_alive(b)
    fp.spawn_error = FileNotFoundError("python")
    try:
        fp.spawn(["z"], tmp_path, {})
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("spawn_error was not raised")


def test_harness_registers_the_configured_skill(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        assert list(h.sup.skills) == ["echo"]
        assert h.rt.config.path == tmp_path / "echo"
        assert h.sup.status(h.rt, h.clock())["state"] == "starting"
    finally:
        h.close()
