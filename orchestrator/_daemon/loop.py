"""zskilld: the daemon's event loop and its sockets.

One thread, one ``zmq.Poller`` over: the control socket (clients), the
workers socket (skill processes), a self-pipe that signals land on
(SIGCHLD, SIGTERM, SIGINT), and the stdout/stderr pipes of every skill.
Everything the daemon decides happens on this thread, so routing, rollouts
and the supervisor share state without locks.

Shutdown, in order:
1. refuse new calls; stop every skill (drain, ``grace_s``, SIGTERM, SIGKILL);
2. wait until every process tree is gone (bounded by the largest grace);
3. answer whatever is left, close sockets, remove socket and pid files.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import logging.handlers
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ipc import (
    Bye,
    Call,
    CallReply,
    CallRequest,
    DaemonRunning,
    Drained,
    Event,
    HealthReply,
    Heartbeat,
    Hello,
    Message,
    MessageTooLarge,
    Progress,
    ProtocolError,
    Reject,
    Reply,
    Request,
    Result,
    SkillNotFound,
    SkillUnavailable,
    WireError,
    ZskillError,
    configure,
    decode,
    encode,
    more_waiting,
    recv_frames,
    send_frames,
)

from .._config import Config
from .._curve import serve_curve
from .._rundir import RunDir
from . import process
from .control import ControlServer
from .events import EventLog
from .lifecycle import Lifecycle
from .logfiles import LogFile
from .releases import ReleaseStore
from .router import Instance, PendingCall, Router
from .runtime import SkillRuntime
from .stats import children_map
from .supervisor import Supervisor

if TYPE_CHECKING:
    from .metrics import Metrics

log = logging.getLogger("zskill.daemon")

TICK_S = 0.1
SAMPLE_S = 2.0  # CPU and memory of skill processes, sampled this often
MAX_TIMEOUT_S = 7 * 24 * 3600.0
BATCH = 256  # messages read from one socket before looking at the others
_TCP_PEER = b"T"


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.layout = RunDir(self.run_dir)
        self.endpoints = self.layout.endpoints
        self.max_bytes = config.daemon.max_message_bytes
        self.clock = time.monotonic
        self._fd_handlers: dict[int, Callable[[], None]] = {}
        self._stopping = False
        self._exit = False
        self._shutdown_deadline = math.inf
        self._next_sample = 0.0
        self._pid_fd: int | None = None
        self.metrics: Metrics | None = None  # started by run() when metrics_port is set
        self._lock_run_dir()
        self._setup_logging()
        self._bind()
        # One poller for everything: the sockets now, skill pipes and the
        # signal pipe as they come (_watch_fd).
        self.poller = zmq.Poller()
        self.poller.register(self.ctl, zmq.POLLIN)
        self.poller.register(self.wrk, zmq.POLLIN)
        if self.tcp is not None:
            tcp = self.tcp
            self.poller.register(tcp, zmq.POLLIN)
            self._fd_handlers[tcp] = lambda: self._drain(tcp, self._on_tcp_control)  # type: ignore[index]
        self.router = Router(self._send_call, self._answer)
        self.events = EventLog(self.layout.events_file, self._publish)
        self.releases = ReleaseStore(self.layout.releases, config.daemon.releases_kept)
        self.sup = Supervisor(
            config,
            self.router,
            self.events,
            self._send_worker,
            self._watch_fd,
            self.endpoints.workers,
        )
        self.life = Lifecycle(config, self.sup, self.router, self.events, self.releases, self.clock)
        self.control = ControlServer(
            self.sup,
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
        )
        d = config.daemon
        for name, sc in config.skills.items():
            lf = LogFile(self.layout.skill_log(name), max_bytes=d.log_max_bytes, keep=d.log_keep)
            self.sup.skills[name] = SkillRuntime(config=sc, log=lf, source=sc.path)
            self.router.queue(name)

    # --- setup -----------------------------------------------------------------

    def _lock_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        sdir = self.layout.socket_dir
        if sdir != self.run_dir:
            sdir.mkdir(parents=True, exist_ok=True)
            os.chmod(sdir, 0o700)
        path = self.layout.pid_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DaemonRunning(
                f"a zskill daemon is already running for {self.run_dir} (pid {other}); "
                "`zskill down` stops it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pid_fd = fd
        # We hold the lock, so any socket file left here is from a crashed daemon.
        for p in self.endpoints.paths():
            p.unlink(missing_ok=True)

    def _setup_logging(self) -> None:
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger("zskill")
        root.setLevel(logging.INFO)
        handler = logging.handlers.RotatingFileHandler(
            self.layout.daemon_log,
            maxBytes=self.config.daemon.log_max_bytes,
            backupCount=self.config.daemon.log_keep,
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        self._log_handler = handler
        if sys.stderr.isatty():
            err = logging.StreamHandler()
            err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
            root.addHandler(err)
            self._err_handler: logging.Handler | None = err
        else:
            self._err_handler = None

    def _bind(self) -> None:
        self.ctx = zmq.Context()
        self.tcp: zmq.Socket[bytes] | None = None
        tcp_endpoint = self.config.daemon.tcp_control
        if tcp_endpoint is not None:
            # Refuse before binding anything else: no keys, no tcp.
            self.tcp = self.ctx.socket(zmq.ROUTER)
            try:
                serve_curve(self.tcp, self.run_dir, tcp_endpoint)
            except ZskillError:
                self.tcp.close(linger=0)
                self.ctx.term()
                raise
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self.layout.client_keys))
            configure(self.tcp, max_bytes=self.max_bytes)
            self.tcp.bind(tcp_endpoint)
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.wrk = self.ctx.socket(zmq.ROUTER)
        self.pub = self.ctx.socket(zmq.PUB)
        for s in (self.ctl, self.wrk, self.pub):
            configure(s, max_bytes=self.max_bytes)
        self.pub.setsockopt(zmq.SNDHWM, 10_000)
        old = os.umask(0o077)
        try:
            self.ctl.bind(self.endpoints.control)
            self.wrk.bind(self.endpoints.workers)
            self.pub.bind(self.endpoints.events)
        finally:
            os.umask(old)
        for p in self.endpoints.paths():
            os.chmod(p, 0o600)

    # --- the loop ----------------------------------------------------------------

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handlers = {
            s: signal.signal(s, _noop) for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
        }
        process.become_subreaper()
        self._watch_fd(wake_r, lambda: self._on_signals(wake_r))
        self.events.emit("", "daemon.start", pid=os.getpid(), config=str(self.config.path))
        log.info("zskilld %d serving %s", os.getpid(), self.run_dir)
        try:
            d = self.config.daemon
            if d.metrics_port is not None:
                from .metrics import Metrics  # prometheus-client only when asked for

                self.metrics = Metrics(self.sup, d.metrics_host, d.metrics_port)
                self.metrics.start()
            for rt in self.sup.skills.values():
                if rt.config.settings.autostart:
                    self.life.start(rt)
                else:
                    rt.desired = "stopped"
                    self.router.close(
                        rt.name, f"skill {rt.name!r} is not started (autostart = false)"
                    )
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
        ctl, wrk = self.ctl, self.wrk
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
                    self._drain(ctl, self._on_control)
                elif sock is wrk:
                    self._drain(wrk, self._on_worker)
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
        if self.metrics is not None:
            self.metrics.refresh(now)
        if now >= self._next_sample:
            self._next_sample = now + SAMPLE_S
            kids = children_map()  # one scan of the process table for every skill
            for rt in self.sup.skills.values():
                rt.stats.sample([p.pid for p in rt.procs.values() if p.child.alive], kids)
        if self._stopping:
            if not self.sup.procs:
                self._exit = True
            elif now > self._shutdown_deadline:
                for proc in list(self.sup.procs.values()):
                    self.sup.kill(proc, "daemon shutdown deadline")
                if now > self._shutdown_deadline + 5:
                    log.error("processes still alive at shutdown: %s", list(self.sup.procs))
                    self._exit = True

    def _on_signals(self, fd: int) -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        now = self.clock()
        for pid, code in process.reap():
            self.sup.reaped(pid, code, now)
        if signal.SIGTERM in data or signal.SIGINT in data:
            log.info("signal received; shutting down")
            self.begin_shutdown()

    def _watch_fd(self, fd: int, handler: Callable[[], None] | None) -> None:
        if handler is None:
            if self._fd_handlers.pop(fd, None) is not None:
                self.poller.unregister(fd)
        else:
            self._fd_handlers[fd] = handler
            self.poller.register(fd, zmq.POLLIN)

    # --- clients ---------------------------------------------------------------

    def _on_tcp_control(self, frames: list[bytes]) -> None:
        # Peers on the tcp socket are told apart from ipc ones by a prefix on
        # their routing id (ROUTER-made ids start with a zero byte, never "T").
        frames[0] = _TCP_PEER + frames[0]
        self._on_control(frames)

    def _on_control(self, frames: list[bytes]) -> None:
        ident = frames[0]
        try:
            msg = decode(frames[1:], max_bytes=self.max_bytes)
        except MessageTooLarge as exc:
            head = _header_only(frames[1:])
            if isinstance(head, CallRequest):
                self._reply_call(ident, head.req_id, exc.to_wire())
            elif isinstance(head, Request):
                self._send_ctl(ident, Reply(head.req_id, None, exc.to_wire()))
            return
        except ProtocolError as exc:
            self._send_ctl(ident, Reply(0, None, exc.to_wire()))
            return
        t = type(msg)
        if t is CallRequest:
            self._on_call(ident, msg)  # type: ignore[arg-type]
        elif t is Request:
            self._on_request(ident, msg)  # type: ignore[arg-type]
        else:
            err = ProtocolError(f"{t.__name__} is not a message a client may send")
            self._send_ctl(ident, Reply(0, None, err.to_wire()))

    def _on_call(self, ident: bytes, msg: CallRequest) -> None:
        if msg.skill not in self.sup.skills:
            known = ", ".join(sorted(self.sup.skills)) or "none"
            err = SkillNotFound(f"no skill {msg.skill!r} (known: {known})", skill=msg.skill)
            self._reply_call(ident, msg.req_id, err.to_wire())
            return
        if self._stopping:
            err2 = SkillUnavailable("the daemon is shutting down", skill=msg.skill)
            self._reply_call(ident, msg.req_id, err2.to_wire())
            return
        timeout = msg.timeout_s
        if not timeout > 0:
            timeout = self.config.daemon.call_timeout_s
        self.router.accept(
            ident,
            msg.req_id,
            msg.skill,
            msg.tool,
            msg.payload,
            min(timeout, MAX_TIMEOUT_S),
            self.clock(),
        )

    def _on_request(self, ident: bytes, msg: Request) -> None:
        done = False

        def reply(body: Any, err: Exception | None) -> None:
            nonlocal done
            if done:
                return
            done = True
            wire = _to_wire(err) if err is not None else None
            self._send_ctl(ident, Reply(msg.req_id, _plain(body) if wire is None else None, wire))

        def progress(body: Any) -> None:
            if not done:
                self._send_ctl(ident, Progress(msg.req_id, _plain(body)))

        self.control.handle(msg.op, msg.args, reply, progress)

    def _reply_call(self, ident: bytes, req_id: int, err: WireError) -> None:
        self._send_ctl(ident, CallReply(req_id, "", err))

    def _answer(
        self, call: PendingCall, error: WireError | None, payload: bytes, version: str
    ) -> None:
        self._send_ctl(call.client, CallReply(call.req_id, version, error, payload))
        now = self.clock()
        rt = self.sup.skills[call.skill]
        rt.stats.record(now, version or rt.last_version, now - call.accepted_at, error is not None)

    def _send_ctl(self, ident: bytes, msg: Message) -> None:
        sock = self.ctl
        if ident[:1] == _TCP_PEER and self.tcp is not None:
            sock, ident = self.tcp, ident[1:]
        try:
            send_frames(sock, [ident, *encode(msg)])
        except zmq.ZMQError as exc:
            # The client is gone (EHOSTUNREACH) or not reading (EAGAIN): the
            # answer has nobody to reach. Nothing else may block on it.
            log.debug("reply to a client dropped: %s", exc)

    # --- skill processes -------------------------------------------------------

    def _on_worker(self, frames: list[bytes]) -> None:
        ident = frames[0]
        proc = self.sup.by_id(ident)
        now = self.clock()
        try:
            msg = decode(frames[1:], max_bytes=self.max_bytes)
        except MessageTooLarge as exc:
            head = _header_only(frames[1:])
            if proc is not None and isinstance(head, Result):
                proc.last_seen = now
                self.router.result(proc.inst, head.call_id, exc.to_wire(), b"", now)
            return
        except ProtocolError as exc:
            log.warning("bad frame from %r: %s", ident[:64], exc)
            return
        if proc is None:
            if isinstance(msg, Hello):
                log.warning("hello from unknown instance %r refused", ident[:64])
                self._send_worker(
                    ident, Reject("unknown instance: skills are started by the daemon")
                )
            return
        proc.last_seen = now
        t = type(msg)
        if t is Result:
            r: Result = msg  # type: ignore[assignment]
            self.router.result(proc.inst, r.call_id, r.error, r.payload, now)
        elif t is Heartbeat:
            pass
        elif t is Hello:
            rt = self.sup.skills[proc.inst.skill]
            refused = self.sup.on_hello(proc, msg, now)  # type: ignore[arg-type]
            if refused is not None:
                log.warning("%s: hello refused: %s", proc.id, refused)
            self.life.upgrades.hello(rt, proc, refused, now)
        elif t is HealthReply:
            h: HealthReply = msg  # type: ignore[assignment]
            if h.check_id == proc.health_check_id:
                rt = self.sup.skills[proc.inst.skill]
                self.life.upgrades.health(rt, proc, h.ok, h.detail, now)
        elif t is Drained or t is Bye:
            log.info("%s: %s", proc.id, t.__name__.lower())
        else:
            log.warning("%s sent %s, which skills may not send", proc.id, t.__name__)

    def _send_worker(self, ident: str | bytes, msg: Message) -> bool:
        rid = ident.encode() if isinstance(ident, str) else ident
        try:
            send_frames(self.wrk, [rid, *encode(msg)])
            return True
        except zmq.ZMQError as exc:
            log.debug("message to %r dropped: %s", rid, exc)
            return False

    def _send_call(self, inst: Instance, call: PendingCall, timeout_s: float) -> None:
        if not self._send_worker(inst.rid, Call(call.call_id, call.tool, timeout_s, call.payload)):
            # Not connected (it just died): the exit will settle this call.
            log.warning("call %d could not be sent to %s", call.call_id, inst.id)

    def _publish(self, ev: Event) -> None:
        if self.metrics is not None:
            self.metrics.on_event(ev)
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart([ev.skill.encode(), *encode(ev)], zmq.NOBLOCK)

    # --- shutdown --------------------------------------------------------------

    def begin_shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.events.emit("", "daemon.stop", pid=os.getpid())
        wait = max(
            (s.settings.grace_s + s.settings.kill_timeout_s for s in self.config.skills.values()),
            default=0.0,
        )
        self._shutdown_deadline = self.clock() + wait + 2.0
        for rt in self.sup.skills.values():
            self.life.stop(rt, reason="the daemon is shutting down")

    def _close(self) -> None:
        for rt in self.sup.skills.values():
            self.router.close(rt.name, "the daemon stopped")
            rt.log.close()
        for p in self.endpoints.paths():
            p.unlink(missing_ok=True)
        for s in (self.ctl, self.wrk, self.pub, self.tcp):
            if s is not None:
                s.close(linger=0)
        if self.tcp is not None:
            self._auth.stop()
        self.ctx.term()
        self.events.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._pid_fd is not None:
            with contextlib.suppress(OSError):
                self.layout.pid_file.unlink()
            os.close(self._pid_fd)
        log.info("zskilld %d stopped", os.getpid())
        root = logging.getLogger("zskill")
        for h in (self._log_handler, self._err_handler):
            if h is not None:
                root.removeHandler(h)
                h.close()


def _noop(signum: int, frame: object) -> None:
    """Signals are handled in the loop; the wakeup fd carries them there."""


def _header_only(frames: list[bytes]) -> Message | None:
    """The message an oversized one was, to answer it: its payload frame left
    out (a payload inside the header frame is bounded by MAXMSGSIZE)."""
    try:
        return decode([frames[0], b""] if len(frames) == 2 else frames[:1])
    except ZskillError:
        return None


def _to_wire(err: Exception) -> WireError:
    if isinstance(err, ZskillError):
        return err.to_wire()
    return WireError("ZskillError", f"{type(err).__name__}: {err}", {})


def _plain(body: Any) -> Any:
    """Control replies are plain data; Paths and the like become strings."""
    if isinstance(body, dict):
        return {str(k): _plain(v) for k, v in body.items()}
    if isinstance(body, (list, tuple)):
        return [_plain(v) for v in body]
    if body is None or isinstance(body, (str, int, float, bool, bytes)):
        return body
    if isinstance(body, Path):
        return str(body)
    return repr(body)


def serve(config: Config) -> None:
    """Run the daemon in the foreground until it is shut down."""
    Daemon(config).run()
