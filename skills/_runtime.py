"""The skill process's side of the protocol: connect, hello, serve, drain.

    connect -> Hello --Welcome--> serve --(Drain | SIGTERM | SIGINT)--> draining
                 |                  |                                      | nothing in flight
                 | Reject: exit 3   | daemon silent for liveness_s:        v
                 | silence: exit 4  | exit 5                 Drained, Bye("drained"), exit 0

One thread (the main one) owns the ZeroMQ socket and runs this loop: it
polls the DEALER and the Mailbox's pipe, hands calls to CallRunner, and
sends what the workers post. Timers are deadlines compared against one
``monotonic()`` reading per turn of the loop, so they cost nothing per call.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from enum import IntEnum
from types import FrameType
from typing import Any, cast

import zmq

import ipc
from ipc import (
    Bye,
    Call,
    Drain,
    Drained,
    HealthCheck,
    Heartbeat,
    Hello,
    Reject,
    Welcome,
)

from ._calls import CallRunner
from ._env import RuntimeEnv
from ._health import HealthRunner
from ._log import log
from ._mailbox import Mailbox


class ExitCode(IntEnum):
    """How a skill process ends; the daemon may read them from its exit status."""

    DRAINED = 0
    """Drained on request (Drain, SIGTERM, SIGINT): every accepted call answered."""
    NOT_UNDER_DAEMON = 2
    """No (usable) ZSKILL_ENDPOINT: the program was not started by zskilld."""
    REJECTED = 3
    """The daemon answered the Hello with Reject."""
    NO_WELCOME = 4
    """No answer to the Hello within WELCOME_TIMEOUT_S."""
    DAEMON_GONE = 5
    """Nothing heard from the daemon for liveness_s."""


WELCOME_TIMEOUT_S = 30.0
RECV_BATCH = 64
"""At most this many messages taken from the socket per turn of the loop."""
FLUSH_LINGER_MS = 2000
"""On close, how long ZeroMQ may keep trying to deliver Drained and Bye
(ipc.configure sets LINGER 0, which would drop them)."""


class Runtime:
    def __init__(
        self,
        hello: Hello,
        env: RuntimeEnv,
        *,
        calls: CallRunner,
        health: HealthRunner,
        mailbox: Mailbox,
        on_welcome: Callable[[Welcome], None] | None = None,
    ) -> None:
        self._hello = hello
        self._env = env
        self._calls = calls
        self._health = health
        self._mailbox = mailbox
        self._on_welcome = on_welcome
        self._stop_signal: str | None = None
        self._exit: ExitCode | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()

    def run(self) -> ExitCode:
        """Serve until drained or until the daemon is gone; the exit code."""
        previous = self._install_signal_handlers()
        self._ctx = zmq.Context()
        sock = self._sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.ROUTING_ID, self._env.instance.encode())
            ipc.configure(sock, max_bytes=self._env.max_message_bytes)
            try:
                sock.connect(self._env.endpoint)
            except zmq.ZMQError as exc:
                log(f"cannot connect to {self._env.endpoint!r}: {exc}")
                return ExitCode.NOT_UNDER_DAEMON
            self._poller.register(sock, zmq.POLLIN)
            self._poller.register(self._mailbox.fd, zmq.POLLIN)
            welcome = self._handshake()
            if not isinstance(welcome, Welcome):
                return welcome
            if self._on_welcome is not None:
                self._on_welcome(welcome)
            return self._serve(welcome)
        finally:
            sock.close(linger=FLUSH_LINGER_MS)
            self._ctx.term()
            for signum, handler in previous.items():
                if handler is not None:  # None: set outside Python, cannot restore
                    signal.signal(signum, handler)

    # --- 1. hello ------------------------------------------------------------

    def _handshake(self) -> Welcome | ExitCode:
        self._send(ipc.encode(self._hello))
        deadline = time.monotonic() + WELCOME_TIMEOUT_S
        while True:
            if self._stop_signal is not None:
                log(f"{self._stop_signal} before the daemon's Welcome; exiting")
                self._send(ipc.encode(Bye(f"{self._stop_signal} before welcome")))
                return ExitCode.DRAINED
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                log(
                    f"no answer to Hello from the daemon at {self._env.endpoint} "
                    f"within {WELCOME_TIMEOUT_S:g}s; exiting"
                )
                return ExitCode.NO_WELCOME
            for target, _ in self._poller.poll(math.ceil(remaining_s * 1000)):
                if target is not self._sock:
                    self._mailbox.clear()
                    continue
                msg = self._receive()
                if isinstance(msg, Welcome):
                    if msg.protocol != ipc.PROTOCOL_VERSION:
                        log(
                            f"the daemon speaks protocol {msg.protocol}, this SDK "
                            f"{ipc.PROTOCOL_VERSION}; exiting"
                        )
                        return ExitCode.REJECTED
                    return msg
                if isinstance(msg, Reject):
                    log(f"the daemon rejected this skill: {msg.reason}")
                    return ExitCode.REJECTED
                if msg is not None:
                    log(f"ignoring {type(msg).__name__} received before Welcome")

    # --- 2. serve --------------------------------------------------------------

    def _serve(self, welcome: Welcome) -> ExitCode:
        heartbeat_s = welcome.heartbeat_s if welcome.heartbeat_s > 0 else 1.0
        liveness_s = welcome.liveness_s if welcome.liveness_s > 0 else 5 * heartbeat_s
        sock, poll, mailbox, calls = self._sock, self._poller.poll, self._mailbox, self._calls
        results = mailbox.results
        now = time.monotonic()
        last_heard = now
        next_beat = now + heartbeat_s
        while True:
            if self._exit is not None:
                return self._exit
            if self._stop_signal is not None and not calls.draining:
                self._begin_drain(self._stop_signal)
            if calls.draining and calls.in_flight == 0:
                return self._finish_drain()
            if now >= next_beat:
                self._send(ipc.encode(Heartbeat(calls.in_flight)))
                next_beat = now + heartbeat_s
            if now - last_heard >= liveness_s:
                silent_s = now - last_heard
                log(f"nothing heard from the daemon for {silent_s:.1f}s; it is gone, exiting")
                return ExitCode.DAEMON_GONE
            wake_at = min(next_beat, last_heard + liveness_s)
            if self._health.next_deadline is not None:
                wake_at = min(wake_at, self._expire_health(now))
            calls.start_ready()
            timeout_ms = max(0, math.ceil((wake_at - now) * 1000)) if mailbox.may_sleep() else 0
            events = poll(timeout_ms)
            mailbox.awake()
            now = time.monotonic()
            for target, _ in events:
                if target is sock:
                    last_heard = now
                    # Take what is already queued: one poll per burst, not per
                    # message (bounded, so that timers still get their turn).
                    for _ in range(RECV_BATCH):
                        self._dispatch(self._receive())
                        if not self._readable():
                            break
                else:
                    mailbox.clear()
            while results:
                self._send(results.popleft())
                calls.finished()
            if mailbox.health:
                self._send_health_replies()

    def _dispatch(self, msg: ipc.Message | None) -> None:
        if type(msg) is Call:
            immediate = self._calls.submit(msg)
            if immediate is not None:
                self._send(immediate)
        elif type(msg) is Heartbeat or msg is None:
            pass  # receiving it was the point; None: already logged
        elif isinstance(msg, HealthCheck):
            reply = self._health.check(msg, time.monotonic())
            if reply is not None:
                self._send(ipc.encode(reply))
        elif isinstance(msg, Drain):
            self._begin_drain("Drain")
        elif isinstance(msg, Reject):
            log(f"the daemon rejected this skill: {msg.reason}")
            self._exit = ExitCode.REJECTED
        else:
            log(f"ignoring unexpected {type(msg).__name__} from the daemon")

    def _expire_health(self, now: float) -> float:
        for reply in self._health.expire(now):
            self._send(ipc.encode(reply))
        deadline = self._health.next_deadline
        return math.inf if deadline is None else deadline

    def _send_health_replies(self) -> None:
        replies = self._mailbox.health
        while replies:
            reply = replies.popleft()
            if self._health.settle(reply):
                self._send(ipc.encode(reply))

    # --- 3. drain --------------------------------------------------------------

    def _begin_drain(self, why: str) -> None:
        log(f"draining on {why}: {self._calls.in_flight} call(s) in flight")
        self._calls.drain()

    def _finish_drain(self) -> ExitCode:
        self._send(ipc.encode(Drained()))
        self._send(ipc.encode(Bye("drained")))
        return ExitCode.DRAINED

    # --- frames and signals ----------------------------------------------------

    def _receive(self) -> ipc.Message | None:
        """The next message, or None (logged) for anything undecodable."""
        assert self._sock is not None
        try:
            frames = self._sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            return ipc.decode(frames, max_bytes=self._env.max_message_bytes)
        except Exception as exc:  # ProtocolError, MessageTooLarge; never crash on input
            log(f"ignoring an undecodable message from the daemon: {exc}")
            return None

    def _readable(self) -> bool:
        assert self._sock is not None
        return bool(cast(int, self._sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def _send(self, frames: list[bytes]) -> None:
        assert self._sock is not None
        try:
            # Never blocks: with the daemon gone, a full queue must not freeze
            # the loop that notices the daemon is gone.
            ipc.send_frames(self._sock, frames)
        except zmq.Again:
            log("the daemon is not reading (send queue full); dropped a message")
        except zmq.ZMQError as exc:
            log(f"cannot send to the daemon: {exc}")

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may; the embedding program decides
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread between two bytecodes: set a flag and
        # interrupt the poll; the loop does the rest.
        self._stop_signal = signal.Signals(signum).name
        self._mailbox.wake()
