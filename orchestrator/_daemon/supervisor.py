"""The supervisor: skill processes from spawn to reap, and the rollouts that
put new ones into service.

Every process enters service through a :class:`Rollout` (start, restart,
upgrade, rollback alike) and leaves it through :meth:`Supervisor.retire`:
drain, ``grace_s``, SIGTERM, a few seconds, SIGKILL of the whole tree. A
process that exits while it serves is handled by the restart policy:
exponential backoff, then ``errored`` after too many crashes in a window.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipc import (
    ENV_CONCURRENCY,
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
from . import process
from .events import EventLog
from .logfiles import StreamCapture
from .rollout import Step
from .router import Instance, InstanceState, Router
from .runtime import Proc, SkillRuntime

log = logging.getLogger("zskill.supervisor")

Send = Callable[[str, Message], bool]
WatchFd = Callable[[int, Callable[[], None] | None], None]


class Supervisor:
    def __init__(
        self,
        config: Config,
        router: Router,
        events: EventLog,
        send: Send,
        watch_fd: WatchFd,
        workers_endpoint: str,
    ) -> None:
        self.config = config
        self.router = router
        self.events = events
        self._send = send
        self._watch_fd = watch_fd
        self._endpoint = workers_endpoint
        self.skills: dict[str, SkillRuntime] = {}
        self.procs: dict[str, Proc] = {}  # by instance id, every live process
        self._by_pid: dict[int, Proc] = {}
        self._by_rid: dict[bytes, Proc] = {}  # by routing id, as frames carry it
        self._seq = 0
        self._check_ids = 0
        # Set by the Lifecycle (which imports this module): exits and disappearances.
        self.on_proc_event: Callable[[Proc, str, dict[str, Any]], None] = lambda p, e, d: None

    # --- spawning --------------------------------------------------------------

    def spawn(self, rt: SkillRuntime, source: Path, now: float) -> Proc:
        """Start a new process of ``rt`` from ``source``. Raises OSError."""
        self._seq += 1
        inst_id = f"{rt.name}-{self._seq}"
        secret = secrets.token_hex(16)
        cfg = rt.config
        env = dict(cfg.settings.env)
        env.update(
            {
                ENV_ENDPOINT: self._endpoint,
                ENV_INSTANCE: inst_id,
                ENV_SKILL: rt.name,
                ENV_SECRET: secret,
                ENV_CONCURRENCY: str(cfg.settings.concurrency),
                ENV_MAX_MESSAGE_BYTES: str(self.config.daemon.max_message_bytes),
            }
        )
        child = process.spawn(cfg.argv(), source, env)
        proc = Proc(
            inst=Instance(inst_id, rt.name, concurrency=cfg.settings.concurrency),
            child=child,
            source=source,
            secret=secret,
            spawned_at=now,
            spawned_wall=time.time(),
            last_seen=now,
        )
        for fd, stream in ((child.stdout_fd, "out"), (child.stderr_fd, "err")):
            if fd is not None:
                proc.captures[fd] = StreamCapture(rt.log, stream, child.pid, "")
                self._watch_fd(fd, functools.partial(self._read_pipe, proc, fd))
        rt.procs[inst_id] = proc
        self.procs[inst_id] = proc
        self._by_pid[child.pid] = proc
        self._by_rid[proc.inst.rid] = proc
        self.events.emit(rt.name, "spawn", instance=inst_id, pid=child.pid, source=str(source))
        log.info("%s: spawned %s (pid %d) from %s", rt.name, inst_id, child.pid, source)
        return proc

    def _read_pipe(self, proc: Proc, fd: int) -> None:
        cap = proc.captures.get(fd)
        if cap is None:
            return
        eof = False
        # Bounded, so one chatty skill cannot starve the loop.
        for _ in range(16):
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not data:
                eof = True
                break
            cap.feed(data)
        if eof:
            cap.flush()
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
        proc.hello_pid = msg.pid
        if msg.pid != proc.pid:
            proc.child.tree.add(msg.pid)
        for cap in proc.captures.values():
            cap.version = msg.version
        d = self.config.daemon
        self._send(proc.id, Welcome(PROTOCOL_VERSION, d.heartbeat_s, d.liveness_s))
        return None

    def check_health(self, proc: Proc, timeout_s: float) -> None:
        self._check_ids += 1
        proc.health_check_id = self._check_ids
        self._send(proc.id, HealthCheck(self._check_ids, timeout_s))

    # --- bringing into and out of service ---------------------------------------

    def promote(self, rt: SkillRuntime, new: Proc, now: float) -> list[Proc]:
        """The switch: ``new`` takes every queued and future call of the skill at
        this instant; the processes that served until now drain. Returns them."""
        old = [p for p in rt.procs.values() if p.state is InstanceState.READY and p is not new]
        new.inst.state = InstanceState.READY
        new.ready_at = now
        rt.last_version = new.inst.version
        for p in old:
            p.inst.state = InstanceState.DRAINING
        self.router.set_active(rt.name, [new.inst], now)
        for p in old:
            self.retire(p, now, "replaced by " + new.id)
        return old

    def retire(self, proc: Proc, now: float, reason: str, *, grace_s: float | None = None) -> None:
        """Drain ``proc``: no new calls; in-flight ones get ``grace_s`` to finish."""
        if proc.stop_reason:
            return
        rt = self.skills[proc.inst.skill]
        proc.stop_reason = reason
        self.router.remove_active(proc.inst)
        grace = rt.config.settings.grace_s if grace_s is None else grace_s
        if proc.state in (InstanceState.SPAWNED, InstanceState.CHECKING):
            self.kill(proc, reason)  # never served: nothing to drain
            return
        proc.inst.state = InstanceState.DRAINING
        proc.drain_deadline = now + grace
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
        process.signal_tree(proc.child, signal.SIGKILL)
        proc.drain_deadline = None
        proc.kill_deadline = None

    # --- time ------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Heartbeats, liveness, drain and kill deadlines."""
        d = self.config.daemon
        for proc in list(self.procs.values()):
            if not proc.child.alive:
                if not process.tree_alive(proc.child):
                    self._forget(proc, now)
                else:
                    process.signal_tree(proc.child, signal.SIGKILL)
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
                self.events.emit(proc.inst.skill, "unresponsive", instance=proc.id, pid=proc.pid)
                self.kill(proc, why, fault=True)
                continue
            if proc.drain_deadline is not None and now >= proc.drain_deadline:
                log.info("%s: still busy after grace; SIGTERM", proc.id)
                proc.drain_deadline = None
                kill_s = self.skills[proc.inst.skill].config.settings.kill_timeout_s
                proc.kill_deadline = now + kill_s
                process.signal_tree(proc.child, signal.SIGTERM)
            elif proc.kill_deadline is not None and now >= proc.kill_deadline:
                log.warning("%s: ignored SIGTERM; SIGKILL", proc.id)
                proc.kill_deadline = None
                process.signal_tree(proc.child, signal.SIGKILL)

    # --- exits -----------------------------------------------------------------

    def reaped(self, pid: int, code: int, now: float) -> Proc | None:
        """A child exited. Returns its Proc if it was a skill process."""
        proc = self._by_pid.get(pid)
        if proc is None:
            return None  # an adopted grandchild (we are a subreaper)
        proc.child.exit_code = code
        proc.child.popen.returncode = code  # we reaped it; keep Popen from trying
        for fd in list(proc.captures):
            self._read_pipe(proc, fd)
        # Whatever it did, the rest of its tree goes with it.
        process.adopt_orphans(proc.child, proc.id, set(self._by_pid))
        process.signal_tree(proc.child, signal.SIGKILL)
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
            "exit",
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
        if unexpected:
            rt.last_exit = f"{proc.id} (version {proc.inst.version or '?'}) {how}" + (
                f" ({proc.fault})" if proc.fault else ""
            )
        self.on_proc_event(proc, "exit", {"serving": serving, "how": how, "unexpected": unexpected})
        if not process.tree_alive(proc.child):
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
        process.close_pipes(proc.child)
        self.on_proc_event(proc, "gone", {})

    def by_id(self, routing_id: bytes) -> Proc | None:
        return self._by_rid.get(routing_id)

    def status(self, rt: SkillRuntime, now: float) -> dict[str, Any]:
        active = rt.active()
        main = active[0] if active else None
        if rt.errored:
            state = "errored"
        elif rt.rollout is not None and rt.rollout.op in ("upgrade", "rollback") and main:
            state = "upgrading"
        elif main is not None:
            state = "running"
        elif rt.desired == "stopped":
            state = "stopping" if rt.procs else "stopped"
        elif rt.restart_at is not None:
            state = "backoff"
        else:
            state = "starting"
        return {
            "name": rt.name,
            "state": state,
            "version": main.inst.version if main else rt.last_version,
            "pid": main.pid if main else None,
            "uptime_s": round(now - main.ready_at, 3) if main and main.ready_at else 0.0,
            "restarts": rt.restarts,
            "in_flight": sum(len(p.inst.in_flight) for p in rt.procs.values()),
            "queued": self.router.queued(rt.name),
            "concurrency": rt.config.settings.concurrency,
            "tools": sorted(main.inst.tools) if main else [],
            "last_exit": rt.last_exit or None,
            **rt.stats.window(now),
            "cpu_percent": rt.stats.cpu_percent,
            "rss_bytes": rt.stats.rss_bytes,
            "release": rt.release,
            "source": str(rt.source),
            "instances": [
                {
                    "instance": p.id,
                    "version": p.inst.version,
                    "pid": p.pid,
                    "state": p.state.value,
                    "in_flight": len(p.inst.in_flight),
                }
                for p in rt.procs.values()
            ],
        }


__all__ = ["Step", "Supervisor"]
