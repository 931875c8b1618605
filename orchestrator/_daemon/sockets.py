"""The daemon's ZeroMQ sockets: bound once, written to by the loop's thread
only.

    control  ROUTER  ipc://  clients (CLI, client library, MCP bridge)
    tcp      ROUTER  tcp://  clients on other machines, CurveZMQ (optional)
    workers  ROUTER  ipc://  skill processes
    events   PUB     ipc://  the event stream (topic = skill name)

Both ROUTER sockets of clients feed the same handlers: a peer on the tcp
socket is told apart by a prefix on its routing id (ROUTER-made ids start
with a zero byte, never with :data:`TCP_PEER`), which :meth:`send_ctl`
strips to pick the socket an answer goes out on.
"""

from __future__ import annotations

import contextlib
import logging
import os

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ipc import Event, Message, ZskillError, configure, encode, send_frames

from .._config import Config
from .._curve import serve_curve
from .._rundir import RunDir

log = logging.getLogger("zskill.daemon")

TCP_PEER = b"T"


class Sockets:
    def __init__(self, config: Config, layout: RunDir) -> None:
        """Bind every socket (the tcp one first: no keys, no tcp, nothing
        bound). Raises ZskillError when the tcp socket cannot serve."""
        self.ctx = zmq.Context()
        max_bytes = config.daemon.max_message_bytes
        self.tcp: zmq.Socket[bytes] | None = None
        self._auth: ThreadAuthenticator | None = None
        tcp_endpoint = config.daemon.tcp_control
        if tcp_endpoint is not None:
            self.tcp = self.ctx.socket(zmq.ROUTER)
            try:
                serve_curve(self.tcp, config.run_dir, tcp_endpoint)
            except ZskillError:
                self.tcp.close(linger=0)
                self.ctx.term()
                raise
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(layout.client_keys))
            configure(self.tcp, max_bytes=max_bytes)
            self.tcp.bind(tcp_endpoint)
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.wrk = self.ctx.socket(zmq.ROUTER)
        self.pub = self.ctx.socket(zmq.PUB)
        for s in (self.ctl, self.wrk, self.pub):
            configure(s, max_bytes=max_bytes)
        self.pub.setsockopt(zmq.SNDHWM, 10_000)
        endpoints = layout.endpoints
        old = os.umask(0o077)
        try:
            self.ctl.bind(endpoints.control)
            self.wrk.bind(endpoints.workers)
            self.pub.bind(endpoints.events)
        finally:
            os.umask(old)
        for p in endpoints.paths():
            os.chmod(p, 0o600)

    @staticmethod
    def from_tcp(frames: list[bytes]) -> list[bytes]:
        """Mark frames read from the tcp socket as a tcp peer's."""
        frames[0] = TCP_PEER + frames[0]
        return frames

    def send_ctl(self, ident: bytes, msg: Message) -> None:
        sock = self.ctl
        if ident[:1] == TCP_PEER and self.tcp is not None:
            sock, ident = self.tcp, ident[1:]
        try:
            send_frames(sock, [ident, *encode(msg)])
        except zmq.ZMQError as exc:
            # The client is gone (EHOSTUNREACH) or not reading (EAGAIN): the
            # answer has nobody to reach. Nothing else may block on it.
            log.debug("reply to a client dropped: %s", exc)

    def send_worker(self, ident: str | bytes, msg: Message) -> bool:
        """Send to a skill process; False when it is not connected (ROUTER_MANDATORY)."""
        rid = ident.encode() if isinstance(ident, str) else ident
        try:
            send_frames(self.wrk, [rid, *encode(msg)])
            return True
        except zmq.ZMQError as exc:
            log.debug("message to %r dropped: %s", rid, exc)
            return False

    def publish(self, ev: Event) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart([ev.skill.encode(), *encode(ev)], zmq.NOBLOCK)

    def close(self) -> None:
        for s in (self.ctl, self.wrk, self.pub, self.tcp):
            if s is not None:
                s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()
