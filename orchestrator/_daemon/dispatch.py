"""Frames in, typed handlers out: what clients and skill processes send.

The loop hands every message it reads to :meth:`Dispatcher.on_control`
(clients) or :meth:`Dispatcher.on_worker` (skill processes), which decode
it and pass it on by type with one ``match``:

    client         CallRequest -> Router.accept     Request -> ControlServer
                   Cancel -> Cancels.request
    skill process  Result -> Router.result          Hello, HealthReply -> Lifecycle
                   CallProgress -> the caller, if it asked for progress
                   StateReply -> RolloutRunner (state handoff)
                   Heartbeat, Drained, Bye: proof of life (a Bye before
                   a hello: why the process could not start)

This is the daemon's hot path: a call costs a decode, one or two class
checks and a dict lookup here, nothing more. A message too large to read
whole is still answered, from its header alone; one a peer may not send
gets a ``ProtocolError`` (clients) or a warning in the log (skills).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipc import (
    MAX_SESSION_CHARS,
    MAX_TRACEPARENT_CHARS,
    Bye,
    CallProgress,
    CallReply,
    CallRequest,
    Cancel,
    Cancelled,
    Drained,
    HealthReply,
    Heartbeat,
    Hello,
    InvalidArguments,
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
    StateReply,
    WireError,
    ZskillError,
    call_bytes,
    decode,
    decode_header,
)

from .cancels import Cancels
from .control import ControlServer
from .lifecycle import Lifecycle
from .router import Router

log = logging.getLogger("zskill.daemon")

MAX_TIMEOUT_S = 7 * 24 * 3600.0
CALL_HEADER_BYTES = 32
"""A Call's header, tool name aside, at its widest (call_bytes is exact)."""

SendCtl = Callable[[bytes, Message], None]
SendWorker = Callable[[bytes, Message], bool]


class Dispatcher:
    def __init__(
        self,
        router: Router,
        lifecycle: Lifecycle,
        control: ControlServer,
        *,
        send_ctl: SendCtl,
        send_worker: SendWorker,
        clock: Callable[[], float],
        max_bytes: int,
        call_timeout_s: float,
    ) -> None:
        self.router = router
        self.life = lifecycle
        self.sup = lifecycle.sup
        self.control = control
        self._send_ctl = send_ctl
        self._send_worker = send_worker
        self.clock = clock
        self.max_bytes = max_bytes
        self.call_timeout_s = call_timeout_s
        self._shutting_down = False
        self.cancels = Cancels(router, lifecycle, lifecycle.events, send_worker)

    def begin_shutdown(self) -> None:
        """From now on every call is refused: the daemon is shutting down."""
        self._shutting_down = True

    # --- clients ---------------------------------------------------------------

    def on_control(self, frames: list[bytes]) -> None:
        ident = frames[0]
        try:
            msg = decode(frames[1:], max_bytes=self.max_bytes)
        except MessageTooLarge as exc:
            match decode_header(frames[1:]):
                case CallRequest(req_id=req_id):
                    self._reply_call(ident, req_id, exc.to_wire())
                case Request(req_id=req_id):
                    self._send_ctl(ident, Reply(req_id, None, exc.to_wire()))
                case _:  # what it was cannot be told: answered as a bad frame is
                    self._send_ctl(ident, Reply(0, None, exc.to_wire()))
            return
        except ProtocolError as exc:
            self._send_ctl(ident, Reply(0, None, exc.to_wire()))
            return
        match msg:
            case CallRequest():
                self._on_call(ident, msg)
            case Request():
                self._on_request(ident, msg)
            case Cancel():
                self.cancels.request(ident, msg.id, msg.reason, self.clock())
            case _:
                err = ProtocolError(f"{type(msg).__name__} is not a message a client may send")
                self._send_ctl(ident, Reply(0, None, err.to_wire()))

    def _on_call(self, ident: bytes, msg: CallRequest) -> None:
        if msg.skill not in self.sup.skills:
            known = ", ".join(sorted(self.sup.skills)) or "none"
            err = SkillNotFound(f"no skill {msg.skill!r} (known: {known})", skill=msg.skill)
            self._reply_call(ident, msg.req_id, err.to_wire())
            return
        if self._shutting_down:
            err2 = SkillUnavailable("the daemon is shutting down", skill=msg.skill)
            self._reply_call(ident, msg.req_id, err2.to_wire())
            return
        if self._too_large_to_forward(ident, msg):
            return
        timeout = msg.timeout_s
        if not timeout > 0:
            timeout = self.call_timeout_s
        reason = self.cancels.overtaken(ident, msg.req_id)
        if reason is not None:  # its Cancel came first (sent from another thread)
            err5 = Cancelled(
                f"call to {msg.skill}.{msg.tool} was cancelled before it ran: {reason}",
                skill=msg.skill,
                tool=msg.tool,
                reason=reason,
            )
            self._reply_call(ident, msg.req_id, err5.to_wire())
            return
        timeout = min(timeout, MAX_TIMEOUT_S)
        if msg.session is not None and len(msg.session) > MAX_SESSION_CHARS:
            too_long = InvalidArguments(
                f"a session must be at most {MAX_SESSION_CHARS} characters", skill=msg.skill
            )
            self._reply_call(ident, msg.req_id, too_long.to_wire())
            return
        if msg.key is not None:
            keys = self.router.keys
            if keys is None:
                err3 = InvalidArguments("this daemon keeps no idempotency keys", skill=msg.skill)
                self._reply_call(ident, msg.req_id, err3.to_wire())
            else:
                keys.call(ident, msg, timeout, self.clock())
            return
        if msg.traceparent is not None and len(msg.traceparent) > MAX_TRACEPARENT_CHARS:
            err4 = InvalidArguments(
                f"a traceparent must be at most {MAX_TRACEPARENT_CHARS} characters",
                skill=msg.skill,
            )
            self._reply_call(ident, msg.req_id, err4.to_wire())
            return
        self.router.accept(
            ident,
            msg.req_id,
            msg.skill,
            msg.tool,
            msg.payload,
            timeout,
            self.clock(),
            traceparent=msg.traceparent,
            progress=msg.progress,
            session=msg.session,
        )

    def _too_large_to_forward(self, ident: bytes, msg: CallRequest) -> bool:
        """A call the skill could not read is refused here, answered at once:
        the Call the daemon forwards has a header of its own (a call id and a
        timeout at full width) and may be a few bytes larger than the
        CallRequest, and a skill that drops a Call it cannot decode would
        leave its slot taken."""
        room = self.max_bytes - len(msg.payload)
        extra = len(msg.key or "") + len(msg.traceparent or "") + len(msg.session or "")
        if room >= 4 * (len(msg.tool) + extra) + CALL_HEADER_BYTES:  # usually: no encoding
            return False
        tail: tuple[str | bool | None, ...] = (msg.key, msg.traceparent)
        if msg.session is not None:
            tail = (msg.key, msg.traceparent, msg.progress, msg.session)
        elif msg.progress:
            tail = (msg.key, msg.traceparent, True)
        size = call_bytes(msg.tool, len(msg.payload), *tail)
        if size <= self.max_bytes:
            return False
        err = MessageTooLarge(
            f"the call to {msg.skill}.{msg.tool} would reach the skill as a message of "
            f"{size} bytes, over the limit of {self.max_bytes}",
            size=size,
            limit=self.max_bytes,
        )
        self._reply_call(ident, msg.req_id, err.to_wire())
        return True

    def _on_request(self, ident: bytes, msg: Request) -> None:
        done = False

        def reply(body: Any, err: Exception | None) -> None:
            nonlocal done
            if done:
                return
            done = True
            wire = _to_wire(err) if err is not None else None
            self._send_ctl(
                ident, Reply(msg.req_id, _plain_data(body) if wire is None else None, wire)
            )

        def progress(body: Any) -> None:
            if not done:
                self._send_ctl(ident, Progress(msg.req_id, _plain_data(body)))

        self.control.handle(msg.op, msg.args, reply, progress)

    def _reply_call(self, ident: bytes, req_id: int, err: WireError) -> None:
        self._send_ctl(ident, CallReply(req_id, "", err))

    # --- skill processes -------------------------------------------------------

    def on_worker(self, frames: list[bytes]) -> None:
        ident = frames[0]
        proc = self.sup.by_id(ident)
        now = self.clock()
        try:
            msg = decode(frames[1:], max_bytes=self.max_bytes)
        except MessageTooLarge as exc:
            head = decode_header(frames[1:])
            if proc is not None and isinstance(head, Result):
                proc.last_seen = now
                self.router.result(proc.inst, head.call_id, exc.to_wire(), b"", now)
            return
        except ProtocolError as exc:
            log.warning("bad frame from %r: %s", ident[:64], exc)
            return
        if proc is None:
            # Spawned by no live daemon (say, left by one that died, and
            # reconnected to this workers.sock): Reject makes the SDK exit.
            if isinstance(msg, Hello):
                log.warning("hello from unknown instance %r refused", ident[:64])
            self._send_worker(ident, Reject("unknown instance: skills are started by the daemon"))
            return
        proc.last_seen = now
        match msg:
            case Result():
                call = self.router.result(proc.inst, msg.call_id, msg.error, msg.payload, now)
                if call is not None:  # its run time sizes grace_s = "auto"
                    ran_s = now - call.sent_at
                    self.sup.skills[proc.inst.skill].tail.record(ran_s)
                    if proc.drain is not None:
                        proc.drain.ran_s[call.call_id] = ran_s
            case Heartbeat():
                pass
            case CallProgress():
                call = proc.inst.in_flight.get(msg.id)
                if call is not None and call.progress and not call.answered:
                    update = CallProgress(call.req_id, msg.done, msg.total, msg.message)
                    self._send_ctl(call.client, update)
            case Hello():
                self.life.hello(proc, msg, now)
            case HealthReply():
                self.life.health_reply(proc, msg, now)
            case StateReply():
                self.life.runner.state_reply(self.sup.skills[proc.inst.skill], proc, msg, now)
            case Bye():
                proc.bye = msg.reason  # before a hello: why it could not start
                log.info("%s: bye: %s", proc.id, msg.reason.partition("\n")[0])
            case Drained():
                log.info("%s: drained", proc.id)
            case _:
                log.warning("%s sent %s, which skills may not send", proc.id, type(msg).__name__)


def _to_wire(err: Exception) -> WireError:
    if isinstance(err, ZskillError):
        return err.to_wire()
    return WireError("ZskillError", f"{type(err).__name__}: {err}", {})


def _plain_data(body: Any) -> Any:
    """Control replies are plain data; Paths and the like become strings."""
    if isinstance(body, dict):
        return {str(k): _plain_data(v) for k, v in body.items()}
    if isinstance(body, (list, tuple)):
        return [_plain_data(v) for v in body]
    if body is None or isinstance(body, (str, int, float, bool, bytes)):
        return body
    if isinstance(body, Path):
        return str(body)
    return repr(body)


__all__ = ["Dispatcher"]
