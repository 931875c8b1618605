"""The supervisor: skill processes from spawn to reap.

Every process enters service through a rollout (:mod:`.runner`: start,
restart, upgrade, rollback alike), which calls :meth:`Supervisor.promote`,
and leaves it through :meth:`Supervisor.retire`: drain, ``grace_s``,
SIGTERM, a few seconds, SIGKILL of the whole tree. What happens to a skill
when one of its processes exits is not decided here: the supervisor tells
its :class:`ProcListener` (the Lifecycle), which applies the restart policy.

No socket and no OS call is made directly: messages go out through
``SupervisorIo.send``, pipes are watched through ``SupervisorIo.watch_fd``,
processes are started and signalled through ``SupervisorIo.processes``.
"""

from __future__ import annotations

import functools
import logging
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ipc import (
    ENV_CONCURRENCY,
    ENV_DATA_DIR,
    ENV_ENDPOINT,
    ENV_INSTANCE,
    ENV_MAX_MESSAGE_BYTES,
    ENV_SECRET,
    ENV_SKILL,
    PROTOCOL_VERSION,
    Drain,
    HealthCheck,
    Heartbeat,
    Hello,
    Message,
    Reject,
    Welcome,
)

from .._config import Config
from .._envfile import env_digest
from .._status import EventKind, SkillStatus
from . import cgroups, process
from .drains import begin_drain
from .events import EventLog
from .logfiles import StreamCapture
from .process import Processes
from .router import Instance, InstanceState, Router
from .runtime import Proc, SkillRuntime

log = logging.getLogger("zskill.supervisor")

Send = Callable[[str, Message], bool]
WatchFd = Callable[[int, Callable[[], None] | None], None]


@dataclass(frozen=True, slots=True)
class SupervisorIo:
    """How the supervisor reaches its processes: the workers socket (``send``
    by instance id; False when the message could not go out), the daemon's
    poller (``watch_fd``: a handler for a readable fd, or None to stop), the
    endpoint skills connect to, the OS, and who else sees each output line
    (``on_line(skill, stream, version, pid, text)``)."""

    send: Send
    watch_fd: WatchFd
    workers_endpoint: str
    processes: Processes = process
    # Every line a skill prints, also here (a foreground viewer's tap).
    on_line: Callable[[str, str, str, int, str], None] | None = None


@dataclass(frozen=True, slots=True)
class ProcExit:
    """How a skill process ended, as its listener hears it."""

    serving: bool  # it was in service: promoted, and not being retired
    how: str  # "exited with code 1", "was killed by SIGKILL"
    unexpected: bool  # the daemon neither retired nor stopped it, or killed it for a fault


class ProcListener(Protocol):
    """Told of every skill process that ends (the Lifecycle)."""

    def proc_exited(self, proc: Proc, exit: ProcExit) -> None:
        """``proc`` was reaped; the rest of its tree may still be ending."""

    def proc_gone(self, proc: Proc) -> None:
        """``proc`` and its whole tree are gone and forgotten."""


class Supervisor:
    def __init__(
        self,
        config: Config,
        router: Router,
        events: EventLog,
        io: SupervisorIo,
        listener: ProcListener,
    ) -> None:
        self.config = config
        self.router = router
        self.events = events
        self._send = io.send
        self._watch_fd = io.watch_fd
        self._endpoint = io.workers_endpoint
        self._os = io.processes
        self._on_line = io.on_line
        self._listener = listener
        self.skills: dict[str, SkillRuntime] = {}
        self.procs: dict[str, Proc] = {}  # by instance id, every live process
        self._by_pid: dict[int, Proc] = {}
        self._by_rid: dict[bytes, Proc] = {}  # by routing id, as frames carry it
        # In every instance id (the ZeroMQ routing id): a process left running
        # by an earlier daemon on the same workers.sock, reconnecting to this
        # one, never takes the id of a process this daemon spawns.
        self.boot = secrets.token_hex(3)
        self._seq = 0
        self._check_ids = 0

    # --- spawning --------------------------------------------------------------

    def spawn(self, rt: SkillRuntime, source: Path, now: float, origin: Path | None = None) -> Proc:
        """Start a new process of ``rt`` from ``source``, a copy of ``origin``
        (where a relative command is found). Raises OSError, or ConfigError
        when its env_file cannot be read (it is read every time)."""
        cfg = rt.config
        file_env = cfg.file_env()
        env = {**file_env, **cfg.settings.env}
        self._seq += 1
        inst_id = f"{rt.name}-{self.boot}-{self._seq}"
        secret = secrets.token_hex(16)
        env.update(
            {
                ENV_ENDPOINT: self._endpoint,
                ENV_INSTANCE: inst_id,
                ENV_SKILL: rt.name,
                ENV_SECRET: secret,
                ENV_CONCURRENCY: str(cfg.settings.concurrency),
                ENV_MAX_MESSAGE_BYTES: str(self.config.daemon.max_message_bytes),
                ENV_DATA_DIR: str(self.config.data_dir(cfg, make=True)),
            }
        )
        limit = cfg.settings.memory_limit
        backstop = None if limit is None else cgroups.backstop_bytes(limit)
        child = self._os.spawn(cfg.argv(origin or source), source, env, memory_max_bytes=backstop)
        proc = Proc(
            inst=Instance(inst_id, rt.name, concurrency=cfg.settings.concurrency),
            child=child,
            secret=secret,
            last_seen=now,
            env_digest=env_digest(file_env) if cfg.env_file is not None else "",
        )
        for fd, stream in ((child.stdout_fd, "out"), (child.stderr_fd, "err")):
            if fd is not None:
                tail = proc.err_tail if stream == "err" else None
                echo = functools.partial(self._on_line, rt.name) if self._on_line else None
                proc.captures[fd] = StreamCapture(rt.log, stream, child.pid, "", tail, echo)
                self._watch_fd(fd, functools.partial(self._read_pipe, proc, fd))
        rt.procs[inst_id] = proc
        self.procs[inst_id] = proc
        self._by_pid[child.pid] = proc
        self._by_rid[proc.inst.rid] = proc
        self.events.emit(
            rt.name, EventKind.SPAWN, instance=inst_id, pid=child.pid, source=str(source)
        )
        log.info("%s: spawned %s (pid %d) from %s", rt.name, inst_id, child.pid, source)
        return proc

    def _read_pipe(self, proc: Proc, fd: int) -> None:
        cap = proc.captures.get(fd)
        if cap is not None and cap.read_from(fd):  # its end: the last line written
            self._watch_fd(fd, None)
            del proc.captures[fd]

    # --- messages from skill processes -----------------------------------------

    def on_hello(self, proc: Proc, msg: Hello, now: float) -> str | None:
        """Check a hello; welcome the process or return why it is refused."""
        proc.last_seen = now
        if proc.state is not InstanceState.SPAWNED:
            return None  # a replayed hello: ignore it
        rt = self.skills[proc.inst.skill]
        reason = None
        if not secrets.compare_digest(msg.secret, proc.secret):
            reason = "hello without this instance's secret"
        elif msg.protocol != PROTOCOL_VERSION:
            reason = (
                f"speaks protocol version {msg.protocol}; this daemon speaks {PROTOCOL_VERSION}"
            )
        elif msg.skill != rt.name:
            reason = f"announced skill name {msg.skill!r}; the config expects {rt.name!r}"
        elif msg.instance != proc.id:
            reason = f"announced instance {msg.instance!r}, spawned as {proc.id!r}"
        elif msg.concurrency < 1:
            reason = f"announced concurrency {msg.concurrency}"
        if reason is not None:
            self._send(proc.id, Reject(reason))
            return reason
        inst = proc.inst
        inst.version = msg.version
        inst.tools = {t.name: t for t in msg.tools}
        inst.concurrency = min(msg.concurrency, rt.config.settings.concurrency)
        inst.state = InstanceState.CHECKING
        proc.has_health = msg.has_health
        proc.exports_state, proc.imports_state = msg.exports_state, msg.imports_state
        # A hello may come from a process the spawned one started (a wrapper
        # script): that pid joins the tree the daemon signals -- only if it
        # really descends from the spawned process, so a hello can never
        # point the daemon's SIGKILL at someone else's process.
        if msg.pid != proc.pid and self._os.descends_from(msg.pid, proc.pid):
            proc.child.tree.add(msg.pid)
        for cap in proc.captures.values():
            cap.version = msg.version
        d = self.config.daemon
        self._send(proc.id, Welcome(PROTOCOL_VERSION, d.heartbeat_s, d.liveness_s))
        return None

    def send(self, proc: Proc, msg: Message) -> bool:
        return self._send(proc.id, msg)

    def check_health(self, proc: Proc, timeout_s: float) -> None:
        self._check_ids += 1
        proc.health_check_id = self._check_ids
        self._send(proc.id, HealthCheck(self._check_ids, timeout_s))

    # --- bringing into and out of service ---------------------------------------

    def promote(
        self, rt: SkillRuntime, news: list[Proc], now: float, add: bool = False
    ) -> list[Proc]:
        """The switch: ``news`` take every call now; the old ones drain (unless ``add``)."""
        old = [] if add else [p for p in rt.active() if p not in news]
        self.admit(rt, news, now)
        self.router.set_active(rt.name, [p.inst for p in rt.active() if p not in old], now)
        for p in old:
            self.retire(p, now, "replaced by " + news[0].id)
        return old

    def admit(self, rt: SkillRuntime, news: list[Proc], now: float) -> None:
        """``news`` may serve (READY); which calls reach them is the router's."""
        for p in news:
            p.inst.state, p.ready_at = InstanceState.READY, p.ready_at or now
        rt.last_version = news[0].inst.version

    def retire(self, proc: Proc, now: float, reason: str, *, grace_s: float | None = None) -> None:
        """Drain ``proc``: no new calls; in-flight ones get ``grace_s`` to finish."""
        if proc.stop_reason:
            return
        rt = self.skills[proc.inst.skill]
        proc.stop_reason = reason
        self.router.remove_active(proc.inst)
        if proc.state in (InstanceState.SPAWNED, InstanceState.CHECKING):
            self.kill(proc, reason)  # never served: nothing to drain
            return
        proc.inst.state = InstanceState.DRAINING
        proc.drain = begin_drain(rt.config.settings, rt.tail, proc.inst.in_flight, now, grace_s)
        proc.drain_deadline = now + proc.drain.grace_s
        self.events.emit(rt.name, EventKind.DRAIN, instance=proc.id, **proc.drain.started())
        self._send(proc.id, Drain())

    def kill(self, proc: Proc, reason: str, *, fault: bool = False) -> None:
        """SIGKILL the process tree now. ``fault``: it misbehaved (counts as a
        crash for the restart policy) rather than being retired."""
        if fault:
            proc.fault = proc.fault or reason
        else:
            proc.stop_reason = proc.stop_reason or reason
        proc.inst.state = InstanceState.DRAINING if proc.child.alive else proc.inst.state
        self.router.remove_active(proc.inst)
        self._os.signal_tree(proc.child, signal.SIGKILL)
        proc.drain_deadline = None
        proc.kill_deadline = None

    # --- time ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeats, liveness, drain and kill deadlines."""
        d = self.config.daemon
        for proc in list(self.procs.values()):
            if not proc.child.alive:
                if not self._os.tree_alive(proc.child):
                    self._forget(proc, now)
                else:
                    self._os.signal_tree(proc.child, signal.SIGKILL)
                continue
            state = proc.state
            if state is InstanceState.SPAWNED:
                continue  # the rollout's start timeout covers it
            if now - proc.last_heartbeat_sent >= d.heartbeat_s:
                proc.last_heartbeat_sent = now
                self._send(proc.id, Heartbeat(len(proc.inst.in_flight)))
            if now - proc.last_seen > d.liveness_s and proc.kill_deadline is None:
                why = f"unresponsive for {now - proc.last_seen:.1f} s (liveness_s={d.liveness_s:g})"
                log.warning("%s: %s; killing it", proc.id, why)
                self.events.emit(
                    proc.inst.skill, EventKind.UNRESPONSIVE, instance=proc.id, pid=proc.pid
                )
                self.kill(proc, why, fault=True)
                continue
            if proc.drain_deadline is not None and now >= proc.drain_deadline:
                log.info("%s: still busy after grace; SIGTERM", proc.id)
                proc.drain_deadline = None
                kill_s = self.skills[proc.inst.skill].config.settings.kill_timeout_s
                proc.kill_deadline = now + kill_s
                self._os.signal_tree(proc.child, signal.SIGTERM)
            elif proc.kill_deadline is not None and now >= proc.kill_deadline:
                log.warning("%s: ignored SIGTERM; SIGKILL", proc.id)
                proc.kill_deadline = None
                self._os.signal_tree(proc.child, signal.SIGKILL)

    # --- exits -----------------------------------------------------------------

    def reaped(self, pid: int, code: int, now: float) -> Proc | None:
        """A child exited. Returns its Proc if it was a skill process."""
        proc = self._by_pid.get(pid)
        if proc is None:
            return None  # an adopted grandchild (we are a subreaper)
        proc.child.exited(code)
        for fd in list(proc.captures):
            self._read_pipe(proc, fd)
        # Whatever it did, the rest of its tree goes with it.
        known = set(self._by_pid).union(
            *(p.child.tree for p in self.procs.values() if p is not proc)
        )
        self._os.adopt_orphans(proc.child, proc.id, known)
        self._os.signal_tree(proc.child, signal.SIGKILL)
        how = proc.child.describe_exit()
        rt = self.skills[proc.inst.skill]
        serving = proc.ready_at is not None and not proc.stop_reason
        proc.inst.state = InstanceState.EXITED
        why = proc.fault or proc.stop_reason
        lost_why = f"it {how}" + (f" ({why})" if why else "")
        retried, failed = self.router.lost(proc.inst, lost_why, now)
        unexpected = bool(proc.fault) or not proc.stop_reason
        self.events.emit(
            rt.name,
            EventKind.EXIT,
            instance=proc.id,
            pid=pid,
            version=proc.inst.version,
            how=how,
            code=code,
            expected=not unexpected,
            retried=retried,
            outcome_unknown=failed,
        )
        log.log(
            logging.WARNING if unexpected else logging.INFO,
            "%s: %s (pid %d)%s",
            proc.id,
            how,
            pid,
            f" [{why}]" if why else "",
        )
        if (drain := proc.drain) is not None:
            self.events.emit(rt.name, EventKind.DRAINED, **drain.summary(now, proc.id, how))
        if unexpected:
            rt.last_exit = f"{proc.id} (version {proc.inst.version or '?'}) {how}" + (
                f" ({proc.fault})" if proc.fault else ""
            )
            rt.last_stderr = list(proc.err_tail)
        self._listener.proc_exited(proc, ProcExit(serving, how, unexpected))
        if not self._os.tree_alive(proc.child):
            self._forget(proc, now)
        return proc

    def _forget(self, proc: Proc, now: float) -> None:
        rt = self.skills[proc.inst.skill]
        self.procs.pop(proc.id, None)
        rt.procs.pop(proc.id, None)
        self._by_pid.pop(proc.pid, None)
        self._by_rid.pop(proc.inst.rid, None)
        for fd in list(proc.captures):
            self._watch_fd(fd, None)
            proc.captures.pop(fd).flush()
        self._os.close_pipes(proc.child)
        self._listener.proc_gone(proc)

    def by_id(self, routing_id: bytes) -> Proc | None:
        return self._by_rid.get(routing_id)

    def status(self, rt: SkillRuntime, now: float) -> SkillStatus:
        """What ``zskill list`` shows of ``rt``."""
        return rt.status(now, queued=self.router.queued(rt.name))


__all__ = ["ProcExit", "ProcListener", "Supervisor", "SupervisorIo"]
