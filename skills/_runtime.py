"""The skill process's side of the protocol: connect, hello, serve, drain.

    connect -> Hello --Welcome--> serve --(Drain | SIGTERM | SIGINT)--> draining
                 |                  |                                      | nothing in flight
                 | Reject: exit 3   | daemon silent for liveness_s:        v
                 | silence: exit 4  | exit 5                 Drained, Bye("drained"), exit 0

One thread owns the ZeroMQ socket and runs this loop: it polls the DEALER
and the Mailbox's pipe, hands calls to CallRunner, and sends what the workers
post. Timers are deadlines compared against one ``monotonic()`` reading per
turn of the loop, so they cost nothing per call.

That thread is the one that called ``run()`` until a handler run inline
blocks (see :mod:`skills._inline`): then the standby thread takes the loop
over, with its state kept on this object, and ``run()`` waits for whoever
holds the loop last to end it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

import zmq

import ipc
from ipc import (
    Bye,
    Call,
    Cancel,
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
from ._exit import ExitCode
from ._health import HealthRunner
from ._inline import Deposed
from ._log import debug, log
from ._mailbox import Mailbox
from ._outcome import error_frames, wire_error
from ._state import StateRunner

WELCOME_TIMEOUT_S = 30.0
RECV_BATCH = 64
"""At most this many messages taken from the socket per turn of the loop."""
FLUSH_LINGER_MS = 2000
"""On close, how long ZeroMQ may keep trying to deliver Drained and Bye
(ipc.configure sets LINGER 0, which would drop them)."""
SIGNAL_CHECK_S = 0.25
"""A thread that lost the loop waits for its end in steps this long: Python
runs signal handlers on the main thread only, when it wakes."""
EXIT_WAIT_S = 2.0
"""When the loop ends on another thread while run()'s thread is still stuck in
a handler, how long to wait for it before ending the process from there."""


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
        state: StateRunner | None = None,
    ) -> None:
        self._hello = hello
        self._env = env
        self._calls = calls
        self._health = health
        self._mailbox = mailbox
        self._on_welcome = on_welcome
        self._state = state  # export/import hooks; their replies come through the outbox
        self._stop_signal: str | None = None
        self._exit: ExitCode | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        # The loop's state, on the object so that a thread taking it over
        # carries on from it (set in _start_serving).
        self._heartbeat_s = 1.0
        self._liveness_s = 5.0
        self._last_heard = 0.0
        self._next_beat = 0.0
        # How the loop ended, when another thread than run()'s ended it.
        self._ended = threading.Event()
        self._end_code = ExitCode.CRASHED
        self._waiting_for_end = threading.Event()

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
            self._start_serving(welcome)
            try:
                return self._serve()
            except Deposed:
                return self._wait_for_end()
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

    def _start_serving(self, welcome: Welcome) -> None:
        self._heartbeat_s = welcome.heartbeat_s if welcome.heartbeat_s > 0 else 1.0
        self._liveness_s = welcome.liveness_s if welcome.liveness_s > 0 else 5 * self._heartbeat_s
        now = time.monotonic()
        self._last_heard = now
        self._next_beat = now + self._heartbeat_s

    def _serve(self) -> ExitCode:
        """The loop, on whichever thread holds it; raises Deposed on a thread
        that lost it."""
        sock, poll, mailbox, calls = self._sock, self._poller.poll, self._mailbox, self._calls
        progress = calls.progress
        heartbeat_s, liveness_s = self._heartbeat_s, self._liveness_s
        self._start_and_send()  # what a thread that lost the loop left ready
        now = time.monotonic()
        while True:
            if self._exit is not None:
                return self._exit
            if self._stop_signal is not None and not calls.draining:
                self._begin_drain(self._stop_signal)
            if calls.draining and calls.in_flight == 0:
                return self._finish_drain()
            if now >= self._next_beat:
                self._send(ipc.encode(Heartbeat(calls.in_flight)))
                self._next_beat = now + heartbeat_s
            if now - self._last_heard >= liveness_s:
                silent_s = now - self._last_heard
                log(f"nothing heard from the daemon for {silent_s:.1f}s; it is gone, exiting")
                return ExitCode.DAEMON_GONE
            wake_at = min(self._next_beat, self._last_heard + liveness_s, progress.next_due)
            if self._health.next_deadline is not None:
                wake_at = min(wake_at, self._expire_health(now))
            timeout_ms = max(0, math.ceil((wake_at - now) * 1000)) if mailbox.may_sleep() else 0
            events = poll(timeout_ms)
            mailbox.awake()
            now = time.monotonic()
            for target, _ in events:
                if target is sock:
                    self._last_heard = now
                    self._read_burst()
                else:
                    mailbox.clear()
            self._start_and_send()
            for update in progress.take(now):  # coalesced: see skills._progress
                self._send(ipc.encode(update))
            if mailbox.health:
                self._send_health_replies()
            while mailbox.outbox:
                self._send(mailbox.outbox.popleft())

    def _start_and_send(self) -> None:
        """Start the calls that arrived (a handler run inline posts its Result
        at once) and send the Results that are ready; a sent Result may let a
        queued call start. The workers this wakes find the GIL free soon: the
        loop polls next. Raises Deposed (see skills._inline)."""
        calls, results = self._calls, self._mailbox.results
        while True:
            calls.start_ready()
            if not results:
                return
            self._send_results()

    def _send_results(self) -> None:
        calls, results, final = self._calls, self._mailbox.results, self._calls.progress.final
        while results:
            while final:  # a handler's last update goes before its Result
                self._send(ipc.encode(final.popleft()))
            self._send(results.popleft())
            calls.finished()

    # --- 2b. the loop taken over ------------------------------------------------

    def take_over(self) -> None:
        """Run the loop on the calling (standby) thread, from where the thread
        that held it left it (called by the InlineGuard)."""
        try:
            code = self._serve()
        except Deposed:
            return  # deposed in turn: the next holder ends the loop
        except BaseException:
            log(f"the I/O loop failed:\n{traceback.format_exc()}")
            code = ExitCode.CRASHED
        self._end_code = code
        self._ended.set()
        if self._waiting_for_end.wait(EXIT_WAIT_S):
            return  # run()'s thread closes the socket and returns the code
        # run()'s thread is stuck in a handler, and the process must end
        # (the daemon is gone, or rejected it): end it from here.
        log(f"a handler still blocks the thread that started the skill; exiting with {code}")
        assert self._sock is not None and self._ctx is not None
        self._sock.close(linger=FLUSH_LINGER_MS)
        self._ctx.term()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(int(code))

    def _wait_for_end(self) -> ExitCode:
        self._waiting_for_end.set()
        while not self._ended.wait(SIGNAL_CHECK_S):
            pass  # each wake lets a signal handler run (then the loop drains)
        return self._end_code

    def _dispatch(self, msg: ipc.Message) -> None:
        if type(msg) is Call:
            immediate = self._calls.submit(msg)
            if immediate is not None:
                self._send(immediate)
        elif type(msg) is Heartbeat:
            pass  # receiving it was the point
        elif isinstance(msg, Cancel):
            immediate = self._calls.cancel(msg.id, msg.reason)
            if immediate is not None:
                self._send(immediate)
        elif isinstance(msg, HealthCheck):
            reply = self._health.check(msg, time.monotonic())
            if reply is not None:
                self._send(ipc.encode(reply))
        elif isinstance(msg, Drain):
            self._begin_drain("Drain")
        elif self._state is not None and self._state.handle(msg):
            pass  # an export or import of state, answered through the outbox
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
        debug(f"draining on {why}: {self._calls.in_flight} call(s) in flight")
        self._calls.drain()

    def _finish_drain(self) -> ExitCode:
        self._send(ipc.encode(Drained()))
        self._send(ipc.encode(Bye("drained")))
        return ExitCode.DRAINED

    # --- frames and signals ----------------------------------------------------

    def _receive(self) -> ipc.Message | None:
        """The next message, or None: none waiting, or undecodable (logged)."""
        assert self._sock is not None
        try:
            frames = ipc.recv_frames(self._sock)
        except zmq.Again:
            return None
        return self._decode(frames)

    def _read_burst(self) -> None:
        """Dispatch what is already queued: one poll per burst, not per message
        (bounded, so that timers still get their turn; see ipc.more_waiting)."""
        sock, results = self._sock, self._mailbox.results
        assert sock is not None
        for i in range(RECV_BATCH):
            try:
                frames = ipc.recv_frames(sock)
            except zmq.Again:
                return
            msg = self._decode(frames)
            if msg is not None:
                self._dispatch(msg)
            if results:  # a call run inline: answer it before reading on
                self._send_results()
            if i == 0 and not ipc.more_waiting(sock):
                return

    def _decode(self, frames: list[bytes]) -> ipc.Message | None:
        try:
            return ipc.decode(frames, max_bytes=self._env.max_message_bytes)
        except Exception as exc:  # ProtocolError, MessageTooLarge; never crash on input
            head = ipc.decode_header(frames)
            if isinstance(head, Call):
                # The daemon holds a slot for this call until its Result
                # comes: a Call dropped unanswered would take it for good.
                log(f"call {head.call_id} to {head.tool!r} cannot be read: {exc}")
                self._send(error_frames(head.call_id, wire_error(exc)))
                return None
            log(f"ignoring an undecodable message from the daemon: {exc}")
            return None

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
