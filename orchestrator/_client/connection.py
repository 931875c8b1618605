"""One DEALER connection to the daemon, shared by any number of threads,
with requests pipelined on it: the engine under :class:`Client`.

Why leader/follower, not an I/O thread: a background thread costs two thread
hand-offs per call (caller -> I/O thread -> caller), tens of microseconds,
which is most of a round trip through the daemon. Here the calling threads
take turns owning the socket instead:

    caller                          the socket
    ──────                          ──────────
    register a waiter ──┬── nobody reading: become the reader ("leader"),
                        │     send, poll, dispatch replies to their waiters
                        │     until our own arrives, then promote a follower
                        └── someone reading: queue the frames in the outbox,
                              wake the reader (an eventfd it polls), and wait
                              until our reply arrives or we are promoted

A lone caller sends and receives on its own thread: no hand-off at all.
On a connection that has never had two callers at once, a caller who finds
nobody else there (``_solo``) takes the role without registering a waiter,
sends, and waits its first FIRST_WAIT_MS in a blocking receive rather than
in zmq_poll: a few system calls, one GIL release and the waiter's
bookkeeping fewer per call -- a third of a caller's CPU, which counts when
many threads of one process each call on their own Client. If anything but
its reply comes first (or nothing, in the window), it registers and carries
on as any waiter. Nobody can wake a blocking receive, so the first thread
to come along meanwhile has its request sent when that reply arrives or
the window ends, a bounded delay, once: from then on the connection is
shared (``_shared``), and readers poll the socket and the wake-up fd. (A
shorter window would cost more than it saves: a timeout of a few
milliseconds arms a CPU timer of its own, a virtual machine's dearest
system call.)

The invariant that keeps anyone from waiting while nobody reads, all of it
guarded by ``_mu``:

    ``_reading`` is True exactly while one waiter holds the reader role
    (``leading``, or a solo caller, unregistered), including a promotion
    on its way to an idle waiter.
    A waiter blocks (``idle``) only after checking, in the same critical
    section, that ``_reading`` is True; if it is not, it takes the role.
    The reader passes the role on (``_pass_role``) only to an idle waiter --
    never to one busy running its progress callback, which might itself call
    the client -- and clears ``_reading`` when there is none. A waiter leaves
    ``_waiters`` only under ``_mu`` (on its reply, on close, or giving up).
    So a blocked waiter always has a reader that will promote it or deliver
    its reply. Frames queued in the outbox are sent by the reader of the
    moment or the next one; the reader reads the eventfd *before* draining
    the outbox, so a wake-up cannot fall between the two.

A reader also steps out of the role while its own progress callbacks run.
The waiter and the wake-up fd are in :mod:`.waiting`.

A connection libzmq dropped (a reply over the size limit, a tcp:// daemon
gone silent: see :mod:`.link`) is noticed by the reader at a liveness check
or when a send finds nowhere to go, never on the way of a call that works:
the requests that went out on it fail, and a fresh socket takes its place.

Why this module is long: the reader role, its hand-over and the socket it
guards are one invariant, checked in one place; split, each half would
need the other's lock discipline spelled out again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

import ipc
from ipc import DaemonUnavailable, Message, ZskillError, recv_frames

from . import common
from .common import LIVENESS_EVERY_S, Frames, ProgressCallback, Target
from .link import REMOTE_DOWN_S, Link
from .waiting import Waiter, Wakeup

_log = logging.getLogger(__name__)

_PollItems = list[tuple[Any, int]]  # as zmq.zmq_poll takes them
# Plain ints: pyzmq combines flags per frame, and IntFlag arithmetic costs a
# microsecond per call on the fast path.
_POLLIN = int(zmq.POLLIN)
_FINAL = (ipc.CallReply, ipc.Reply)  # the replies that end a request
FIRST_WAIT_MS = 20
"""How long a lone reader of an unshared connection waits in a blocking
receive before it polls."""


class Connection:
    """Send requests and wait for their replies, from any thread."""

    def __init__(self, ctx: zmq.Context[Any], target: Target) -> None:
        self._target = target
        self._mu = threading.Lock()
        self._waiters: dict[int, Waiter] = {}
        self._outbox: deque[tuple[Waiter, Frames]] = deque()
        self._reading = False
        self._shared = False  # a caller has come along while another waited
        self.closed = False
        self._verified = False  # daemon seen alive since the last failure
        self._ctx = ctx
        self._sock, self._link = self._open()
        self._wakeup = Wakeup()
        self._poll_items: _PollItems = [
            (self._sock, _POLLIN),
            (self._wakeup.fileno(), _POLLIN),
        ]

    def roundtrip(
        self,
        req_id: int,
        frames: Frames,
        wait_s: float | None,
        what: str,
        on_progress: ProgressCallback | None,
    ) -> Message:
        """Send ``frames`` and return the final reply to ``req_id``; raise
        DaemonUnavailable after ``wait_s`` (None: no limit while the daemon lives)."""
        if self.closed:
            raise ZskillError("client is closed")
        if not self._verified:
            if not self._target.daemon_alive():
                raise self._target.not_running()
            self._verified = True
        deadline = None if wait_s is None else time.monotonic() + wait_s
        if not self._shared and (wait_s is None or wait_s * 1000 > FIRST_WAIT_MS):
            with self._mu:
                alone = not (self._reading or self._waiters or self.closed)
                if alone:
                    self._reading = True
            if alone:
                return self._solo(req_id, frames, deadline, what, on_progress)
        w = Waiter(req_id)
        with self._mu:
            if self.closed:
                raise ZskillError("client is closed")
            self._waiters[req_id] = w
            if self._reading:
                self._shared = True
                self._outbox.append((w, frames))
                self._wakeup.set()  # under _mu: the fd is closed under _mu
            else:
                self._reading = w.leading = True
        try:
            if w.leading:
                self._send(frames, w)
            return self._await(w, deadline, what, on_progress)
        finally:
            self._leave(w)

    def _solo(
        self,
        req_id: int,
        frames: Frames,
        deadline: float | None,
        what: str,
        on_progress: ProgressCallback | None,
    ) -> Message:
        """The reader, alone on a connection never shared: send, then wait the
        first FIRST_WAIT_MS in a blocking receive (see the module doc). Anything
        but the final reply in that window makes this a waiter like any other."""
        msg: Message | None = None
        try:
            self._send(frames)
            try:
                got = recv_frames(self._sock, wait=True)
            except zmq.Again:
                pass  # the window passed: poll from now on
            except zmq.ZMQError as exc:
                raise DaemonUnavailable(f"cannot read from the daemon: {exc}") from exc
            else:
                msg = common.decode_reply(got)
        except BaseException:
            with self._mu:
                self._pass_role()
            raise
        if isinstance(msg, _FINAL) and msg.req_id == req_id:
            with self._mu:
                self._pass_role()
            return msg
        w = Waiter(req_id)
        w.leading = True
        with self._mu:
            self._waiters[req_id] = w
            if self.closed:  # close() came while this thread read unregistered
                w.error = ZskillError("client is closed")
        try:
            if msg is not None:
                self._route(msg, w)
            return self._await(w, deadline, what, on_progress)
        finally:
            self._leave(w)

    def send(self, frames: Frames) -> None:
        """Send a message nobody waits an answer to (a Cancel), from any
        thread: at once if nobody reads, else through the reader's outbox."""
        if self.closed:
            raise ZskillError("client is closed")
        with self._mu:
            if self._reading:
                self._shared = True
                self._outbox.append((Waiter(0), frames))  # a waiter of its own: never skipped
                self._wakeup.set()
                return
            self._reading = True
        try:
            self._send(frames)
        finally:
            with self._mu:
                self._pass_role()

    def close(self) -> None:
        """Fail the requests still waiting, then close the socket (at once if no
        thread is reading, else by the reader as it leaves)."""
        closed = ZskillError("client is closed")
        with self._mu:
            if self.closed:
                return
            self.closed = True
            for w in self._waiters.values():
                w.error = closed
                if w.event is not None:
                    w.event.set()
            self._waiters.clear()
            if self._reading:
                self._wakeup.set()
            else:
                self._reading = True  # nobody may take the socket again
                self._teardown()

    # --- waiting ---------------------------------------------------------------

    def _await(
        self,
        w: Waiter,
        deadline: float | None,
        what: str,
        on_progress: ProgressCallback | None,
    ) -> Message:
        """Wait for w's reply, reading the socket whenever w holds the role;
        check every few seconds that the daemon still exists."""
        next_check = time.monotonic() + LIVENESS_EVERY_S
        while True:
            until = next_check if deadline is None else min(deadline, next_check)
            if w.leading:
                self._read_until(w, until)
            else:
                self._idle_until(w, until)
            if w.progress:
                self._step_out(w)  # the callback may call us: let others read meanwhile
                while w.progress:
                    body = w.progress.popleft()
                    if on_progress is not None:
                        on_progress(body)
            if w.reply is not None:
                return w.reply
            if w.error is not None:
                raise w.error
            now = time.monotonic()
            failure: DaemonUnavailable | None = None
            if deadline is not None and now >= deadline:
                failure = self._target.no_answer(what, w.req_id)
            elif now >= next_check:
                next_check = now + LIVENESS_EVERY_S
                if not self._target.daemon_alive():
                    failure = self._target.not_running()
                elif w.leading:  # the socket and its monitor are the reader's
                    self._check_link(now)  # may fail w (and the others) at once
                    continue
            if failure is not None and self._give_up(w):
                self._verified = False
                raise failure

    def _idle_until(self, w: Waiter, until: float) -> None:
        """Block until w has news or is promoted -- or take the role at once if
        nobody holds it (its last holder left while w ran its callbacks)."""
        with self._mu:
            if w.event is None:
                w.event = threading.Event()
            w.event.clear()  # before looking at w: a later set() is not lost
            if w.has_news():
                return
            if not self._reading:
                self._reading = w.leading = True
                return
            w.idle = True
        w.event.wait(max(0.0, until - time.monotonic()))
        with self._mu:
            w.idle = False

    def _give_up(self, w: Waiter) -> bool:
        """Stop waiting for w, unless its answer came in meanwhile."""
        with self._mu:
            if w.reply is not None or w.error is not None:
                return False
            self._waiters.pop(w.req_id, None)
            w.abandoned = True  # its frames, if still queued, are not sent
            return True

    def _step_out(self, w: Waiter) -> None:
        if w.leading:
            with self._mu:
                w.leading = False
                self._pass_role()

    def _leave(self, w: Waiter) -> None:
        """w is done: forget it, and pass the reader role on if it held it."""
        with self._mu:
            if self._waiters.pop(w.req_id, None) is not None:
                w.abandoned = True
            if w.leading:
                w.leading = False
                self._pass_role()

    def _pass_role(self) -> None:
        """Under _mu, by the reader leaving the role: to the oldest idle waiter."""
        if self.closed:
            self._teardown()  # _reading stays True: the socket is gone
            return
        for successor in self._waiters.values():
            if successor.idle:
                assert successor.event is not None
                successor.idle = False
                successor.leading = True
                successor.event.set()
                return
        # Nobody blocks: waiters busy in their callbacks take the role when they
        # come back (_idle_until); their queued frames wait in the outbox till then.
        self._reading = False

    # --- reading (only by the waiter holding the role) ---------------------------

    def _read_until(self, me: Waiter, until: float) -> None:
        """Send queued frames, dispatch replies, until ``me`` has news or
        ``until`` passes."""
        items = self._poll_items
        sock = self._sock
        while True:
            if self._outbox:
                self._flush()
                sock = self._sock  # a send may have found it dropped and renewed it
            if me.reply is not None or me.error is not None or me.progress:
                return
            timeout_ms = math.ceil((until - time.monotonic()) * 1000)
            if timeout_ms <= 0:
                return
            for ready, _ in zmq.zmq_poll(items, timeout_ms):
                if ready is not sock:
                    self._wakeup.clear()  # then the loop drains the outbox
                    continue
                while True:  # every reply there is, not only ours
                    try:
                        frames = recv_frames(sock)
                    except zmq.Again:
                        break
                    except zmq.ZMQError as exc:
                        raise DaemonUnavailable(f"cannot read from the daemon: {exc}") from exc
                    self._dispatch(frames, me)
                    if me.reply is not None and not self._waiters:
                        break  # the lone caller's fast path: skip one more empty recv

    def _dispatch(self, frames: Frames, me: Waiter) -> None:
        msg = common.decode_reply(frames)
        if msg is not None:
            self._route(msg, me)

    def _route(self, msg: Message, me: Waiter) -> None:
        """Give ``msg`` to the waiter it answers (``me``: the reader's own)."""
        req_id = common.reply_id(msg)
        if req_id is None:
            _log.debug("ignoring a %s on the control socket", type(msg).__name__)
            return
        update = isinstance(msg, common.UPDATES)
        if req_id == me.req_id and not update:
            # Our own answer needs no lock: only this thread could give me up.
            self._waiters.pop(req_id, None)
            me.reply = msg
            return
        if update:
            w = self._waiters.get(req_id)
            if w is not None:
                w.progress.append(common.update_body(msg))  # then read w.event: see _idle_until
        else:
            with self._mu:  # against _give_up: a waiter gets its reply or gives up, not both
                w = self._waiters.pop(req_id, None)
                if w is not None:
                    w.reply = msg
        if w is None:
            _log.debug("ignoring an answer to req %d, which nobody waits for", req_id)
        elif w is not me and w.event is not None:
            w.event.set()

    def _send(self, frames: Frames, keep: Waiter | None = None) -> None:
        try:
            ipc.send_frames(self._sock, frames)
        except zmq.Again as exc:
            # A DEALER whose only connection libzmq dropped (see .link) has
            # nowhere to send, and never will: start over on a fresh socket.
            if self._link.lost(time.monotonic()):
                self._renew(keep)
                self._send(frames, keep)
                return
            raise DaemonUnavailable(
                f"the daemon at {self._target.run_dir} is not taking requests (send queue full)"
            ) from exc
        except zmq.ZMQError as exc:
            raise DaemonUnavailable(f"cannot send to the daemon: {exc}") from exc

    def _flush(self) -> None:
        while self._outbox:
            w, frames = self._outbox.popleft()
            if w.abandoned or w.error is not None:
                continue
            try:
                self._send(frames, w)
            except DaemonUnavailable as exc:
                with self._mu:
                    if self._waiters.pop(w.req_id, None) is None:
                        continue
                    w.error = exc
                if w.event is not None:
                    w.event.set()

    def _teardown(self) -> None:
        self._link.close()
        self._sock.close(linger=0)
        self._wakeup.close()

    # --- a connection libzmq dropped (only by the waiter holding the role) -------

    def _open(self) -> tuple[zmq.Socket[bytes], Link]:
        sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        self._target.setup(sock)
        sock.setsockopt(zmq.RCVTIMEO, FIRST_WAIT_MS)  # recv_frames(wait=True)
        link = Link(sock, time.monotonic())
        sock.connect(self._target.endpoints.control)
        return sock, link

    def _check_link(self, now: float) -> None:
        """At a liveness check: a dropped connection fails what went out on it
        and is replaced; a tcp:// one down too long fails every request."""
        if self._link.lost(now):
            self._renew(None)
        elif self._target.remote:
            down_s = self._link.down_for(now)
            if down_s >= REMOTE_DOWN_S:
                self._fail_sent(None, lambda req_id: self._target.unreachable(down_s))

    def _renew(self, keep: Waiter | None) -> None:
        """Fail the requests sent on the socket (all but ``keep``, whose frames
        are in hand), and put a fresh socket in its place."""
        self._fail_sent(keep, self._target.dropped)
        _log.info("the connection to the daemon was dropped: reconnecting")
        self._link.close()
        self._sock.close(linger=0)
        self._sock, self._link = self._open()
        self._poll_items[0] = (self._sock, _POLLIN)

    def _fail_sent(self, keep: Waiter | None, error: Callable[[int], ZskillError]) -> None:
        """Fail every request waiting for a reply on the socket: not ``keep``,
        nor those still queued in the outbox (they go out on the next socket)."""
        with self._mu:
            queued = {id(w) for w, _ in self._outbox}
            for req_id, w in list(self._waiters.items()):
                if w is keep or id(w) in queued:
                    continue
                del self._waiters[req_id]
                w.error = error(req_id)
                if w.event is not None:
                    w.event.set()
