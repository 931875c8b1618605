"""zskilld: the daemon's event loop.

One thread, one ``zmq.Poller`` over: the control socket (clients), the
workers socket (skill processes), a self-pipe that signals land on
(SIGCHLD, SIGTERM, SIGINT, SIGHUP: reload), and the stdout/stderr pipes of
every skill.
Everything the daemon decides happens on this thread, so routing, rollouts
and the supervisor share state without locks. What comes in on a socket is
handled in :mod:`.dispatch`; the sockets themselves are in :mod:`.sockets`.

Shutdown takes three steps (SIGTERM, SIGINT or ``zskill down``), numbered
where each happens: :meth:`Daemon.begin_shutdown` (1), :meth:`Daemon._tick`
(2), :meth:`Daemon._close` (3).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import zmq

from ipc import CallReply, DaemonRunning, Event, WireError, more_waiting, recv_frames

from .._config import Config
from .._rundir import RunDir
from .._status import EventKind
from . import drains, process
from .control import ControlServer
from .dispatch import Dispatcher
from .events import EventLog
from .jobs import ThreadJobs
from .keyed import KeyedCalls
from .lifecycle import Lifecycle
from .logsetup import DaemonLog
from .memory import MemoryGuard
from .process import Processes
from .releases import ReleaseStore
from .reload import Reloader, watching_all
from .router import Instance, PendingCall, Router
from .sampler import Sampler
from .sockets import Sockets
from .stats import skill_failed
from .supervisor import SupervisorIo
from .tap import Tap
from .watch import FileWatch

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("zskill.daemon")

TICK_S = 0.1
BATCH = 256  # messages read from one socket before looking at the others
SHUTDOWN_MARGIN_S = 2.0  # on top of the largest grace_s + kill_timeout_s
KILL_WAIT_S = 5.0  # after the shutdown deadline's SIGKILL, before giving up


class Daemon:
    def __init__(
        self,
        config: Config,
        processes: Processes = process,
        *,
        watch_all: bool = False,
        tap: Tap | None = None,
    ) -> None:
        config = watching_all(config) if watch_all else config  # zskill up --watch
        self.config = config
        self.tap = tap  # a foreground viewer's copy of events and output
        self.run_dir = config.run_dir
        self.layout = RunDir(self.run_dir)
        self.endpoints = self.layout.endpoints
        self.clock = time.monotonic
        self.processes = processes
        self._fd_handlers: dict[int, Callable[[], None]] = {}
        self._stopping = False
        self._exit = False
        self._shutdown_deadline = math.inf
        self._pid_fd: int | None = None
        self.metrics: Metrics | None = None  # started by run() when metrics_port is set
        self._lock_run_dir()
        # The view of a foreground `zskill up` shows the events instead of the log.
        self.daemon_log = DaemonLog(self.layout, config, to_stderr=tap is None)
        self.sockets = Sockets(config, self.layout)
        # One poller for everything: the sockets now, skill pipes and the
        # signal pipe as they come (_watch_fd).
        self.poller = zmq.Poller()
        self.poller.register(self.sockets.ctl, zmq.POLLIN)
        self.poller.register(self.sockets.wrk, zmq.POLLIN)
        self.router = Router(self._send_call, self._answer)
        self.events = EventLog(self.layout.events_file, self._publish)
        self.releases = ReleaseStore(self.layout.releases, config.daemon.releases_kept)
        io = SupervisorIo(
            send=self.sockets.send_worker,
            watch_fd=self._watch_fd,
            workers_endpoint=self.endpoints.workers,
            processes=processes,
            on_line=tap.line if tap is not None else None,
        )
        # Copies and hashes of skill code run off this thread (see .jobs).
        self.jobs = ThreadJobs(self._watch_fd)
        self.keyed = KeyedCalls.open(self.layout, self.jobs, self.router, self.sockets, config)
        self.life = Lifecycle(
            config, self.router, self.events, self.releases, self.clock, io, self.jobs
        )
        self.sup = self.life.sup
        self.memory = MemoryGuard(self.life, self.events)
        self.sampler = Sampler(self.jobs, self.memory, self.clock)
        self.reloader = Reloader(
            config, self.life, self.events, self.layout, self._applied, watch_all=watch_all
        )
        self.watch = FileWatch(self.life, self.events, self._watch_fd, [self.run_dir])
        self.control = ControlServer(
            self.life,
            self.events,
            self.releases,
            {
                "run_dir": str(self.run_dir),
                "config": str(config.path),
                "started_at": time.time(),
                "skills": sorted(config.skills),
            },
            self.begin_shutdown,
            self.clock,
            reload=self.reloader.reload,
        )
        self.dispatch = Dispatcher(
            self.router,
            self.life,
            self.control,
            send_ctl=self.sockets.send_ctl,
            send_worker=self.sockets.send_worker,
            clock=self.clock,
            max_bytes=config.daemon.max_message_bytes,
            call_timeout_s=config.daemon.call_timeout_s,
        )
        tcp = self.sockets.tcp
        if tcp is not None:
            on_tcp = self.dispatch.on_control
            self.poller.register(tcp, zmq.POLLIN)
            self._fd_handlers[tcp] = lambda: self._drain(  # type: ignore[index]
                tcp, lambda frames: on_tcp(Sockets.from_tcp(frames))
            )

    # --- setup -----------------------------------------------------------------

    def _lock_run_dir(self) -> None:
        # The run dir and the socket dir: ours alone, or a clear refusal
        # (another user's directory, a symbolic link in /tmp, a file).
        self.layout.make_private()
        path = self.layout.pid_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonRunning(
                f"a zskill daemon is already running for {self.run_dir} (pid {other}); "
                "`zskill down` stops it"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pid_fd = fd
        # We hold the lock, so any socket file left here is from a crashed daemon.
        for p in self.endpoints.paths():
            p.unlink(missing_ok=True)

    # --- the loop ----------------------------------------------------------------

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handlers = {
            s: signal.signal(s, _noop)
            for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        self.processes.become_subreaper()
        self._watch_fd(wake_r, lambda: self._on_signals(wake_r))
        self.events.emit("", EventKind.DAEMON_START, pid=os.getpid(), config=str(self.config.path))
        log.info("zskilld %d serving %s", os.getpid(), self.run_dir)
        try:
            d = self.config.daemon
            if d.metrics_port is not None:
                from .metrics import Metrics  # prometheus-client only when asked for

                self.metrics = Metrics(self.sup, d.metrics_host, d.metrics_port)
                self.metrics.start()
            self.reloader.start_all()  # those with autostart
            self.watch.sync(self.sup.skills.values())
            self._loop()
        finally:
            signal.set_wakeup_fd(old_fd)
            for s, h in handlers.items():
                signal.signal(s, h)
            os.close(wake_r)
            os.close(wake_w)
            self._close()

    def _loop(self) -> None:
        clock, router, poller = self.clock, self.router, self.poller
        ctl, wrk = self.sockets.ctl, self.sockets.wrk
        on_control, on_worker = self.dispatch.on_control, self.dispatch.on_worker
        next_tick = clock()
        while not self._exit:
            now = clock()
            wait = next_tick - now
            deadline = router.next_deadline()
            if deadline is not None:
                wait = min(wait, deadline - now)
            ready = poller.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0)
            for sock, _ in ready:
                if sock is ctl:
                    self._drain(ctl, on_control)
                elif sock is wrk:
                    self._drain(wrk, on_worker)
                else:
                    handler = self._fd_handlers.get(sock)
                    if handler is not None:
                        handler()
            now = clock()
            router.expire(now)
            if now >= next_tick:
                next_tick = now + TICK_S
                self._tick(now)

    def _drain(self, sock: zmq.Socket[bytes], handle: Callable[[list[bytes]], None]) -> None:
        for i in range(BATCH):  # see ipc.more_waiting
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            try:
                handle(frames)
            except Exception:  # one bad message must not stop the daemon
                log.exception("error handling a message")
            if i == 0 and not more_waiting(sock):
                return

    def _tick(self, now: float) -> None:
        self.sup.tick(now)
        self.life.tick(now)
        self.reloader.tick()  # removed skills whose processes are gone
        self.watch.tick()
        self.dispatch.cancels.tick(now)  # handlers that ignore their cancel
        if self.metrics is not None:
            self.metrics.refresh(now)
        self.sampler.tick(now, self.sup.skills)  # CPU, memory; then memory_limit
        if self._stopping:
            self._wait_for_processes(now)

    def _on_signals(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        now = self.clock()
        for pid, code in self.processes.reap():
            self.sup.reaped(pid, code, now)
        if signal.SIGTERM in data or signal.SIGINT in data:
            log.info("signal received; shutting down")
            self.begin_shutdown()
        elif signal.SIGHUP in data:
            self.reloader.reload_logged()

    def _applied(self, config: Config) -> None:
        """A reload changed the skills: what holds them follows."""
        self.config, self.control.info["skills"] = config, sorted(config.skills)
        self.watch.sync(self.sup.skills.values())

    def _watch_fd(self, fd: int, handler: Callable[[], None] | None) -> None:
        if handler is None:
            if self._fd_handlers.pop(fd, None) is not None:
                self.poller.unregister(fd)
        else:
            self._fd_handlers[fd] = handler
            self.poller.register(fd, zmq.POLLIN)

    # --- the router's and the event log's I/O ---------------------------------

    def _answer(
        self, call: PendingCall, error: WireError | None, payload: bytes, version: str
    ) -> None:
        self.sockets.send_ctl(call.client, CallReply(call.req_id, version, error, payload))
        now = self.clock()
        rt = self.sup.skills.get(call.skill)  # None: removed by a reload since
        if rt is not None:
            failed = skill_failed(error.type if error is not None else None)
            rt.stats.record(now, version or rt.last_version, now - call.accepted_at, failed)

    def _send_call(self, inst: Instance, call: PendingCall, timeout_s: float) -> None:
        msg = call.message(timeout_s)
        if not self.sockets.send_worker(inst.rid, msg):
            # Not connected (it just died): the exit will settle this call.
            log.warning("call %d could not be sent to %s", call.call_id, inst.id)

    def _publish(self, ev: Event) -> None:
        if self.metrics is not None:
            self.metrics.on_event(ev)
        if self.tap is not None:
            self.tap.event(ev)
        self.sockets.publish(ev)

    # --- shutdown, in three steps ----------------------------------------------

    def begin_shutdown(self) -> None:
        """Step 1: refuse new calls; stop every skill (drain, ``grace_s``,
        SIGTERM, SIGKILL), as ``zskill stop`` would."""
        if self._stopping:
            return
        self._stopping = self.reloader.closing = True
        self.dispatch.begin_shutdown()
        self.events.emit("", EventKind.DAEMON_STOP, pid=os.getpid())
        # The slowest skill bounds the wait: its grace, then its SIGTERM.
        wait = max(
            (
                drains.longest_grace_s(rt.config.settings) + rt.config.settings.kill_timeout_s
                for rt in self.sup.skills.values()
            ),
            default=0.0,
        )
        self._shutdown_deadline = self.clock() + wait + SHUTDOWN_MARGIN_S
        for rt in self.sup.skills.values():
            self.life.stop(rt, reason="the daemon is shutting down")

    def _wait_for_processes(self, now: float) -> None:
        """Step 2, at every tick: the loop ends once every process tree is
        gone. Past the deadline what is left gets SIGKILL, and
        ``KILL_WAIT_S`` later the daemon stops waiting for it."""
        if not self.sup.procs:
            self._exit = True
        elif now > self._shutdown_deadline:
            for proc in list(self.sup.procs.values()):
                self.sup.kill(proc, "daemon shutdown deadline")
            if now > self._shutdown_deadline + KILL_WAIT_S:
                log.error("processes still alive at shutdown: %s", list(self.sup.procs))
                self._exit = True

    def _close(self) -> None:
        """Step 3, once the loop has ended: answer what is left, close the
        sockets, remove the socket and pid files, detach the logs."""
        # 3a. Every call still queued or in flight gets its answer.
        for rt in self.sup.skills.values():
            self.router.close(rt.name, "the daemon stopped")
            rt.log.close()
        self.keyed.close("the daemon stopped")
        self.jobs.close()  # a release still being copied is no longer wanted
        self.watch.close()
        # 3b. Sockets: their files first, so no client connects to a dead one.
        for p in self.endpoints.paths():
            p.unlink(missing_ok=True)
        self.sockets.close()
        self.events.close()
        if self.metrics is not None:
            self.metrics.close()
        # 3c. The pid file goes last: while it is locked, no second daemon starts here.
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                self.layout.pid_file.unlink()
            os.close(self._pid_fd)
        log.info("zskilld %d stopped", os.getpid())
        self.daemon_log.close()


def _noop(signum: int, frame: object) -> None:
    """Signals are handled in the loop; the wakeup fd carries them there."""


def serve(config: Config, *, watch_all: bool = False, tap: Tap | None = None) -> None:
    """Run the daemon in the foreground until it is shut down; ``watch_all``:
    upgrade any skill whose files change (``zskill up --watch``); with
    ``tap``, a copy of its events and its skills' output goes there."""
    Daemon(config, watch_all=watch_all, tap=tap).run()
