"""The daemon's ZeroMQ sockets: bound once, written to by the loop's thread
only.

    control  ROUTER  ipc://  clients (CLI, client library, MCP bridge)
    tcp      ROUTER  tcp://  clients on other machines, CurveZMQ (optional)
    workers  ROUTER  ipc://  skill processes
    events   PUB     ipc://  the event stream (topic = skill name)

Both ROUTER sockets of clients feed the same handlers: a peer on the tcp
socket is told apart by the type of its routing id (:class:`TcpPeer`), not
by its bytes, which an ipc client chooses freely; :meth:`send_ctl` picks the
socket an answer goes out on by it.

Nothing goes out to a client larger than ``max_message_bytes``: libzmq
drops the connection of a peer that sends a frame over the receiver's
MAXMSGSIZE, for good on the client's side (see :meth:`send_ctl`). The tcp
socket's client keys are read again whenever ``keys/clients/`` changes
(:class:`ClientKeys`), and when one is deleted every tcp connection is cut
(:class:`KeyWatch`): the clients still allowed reconnect at once, the
revoked one is refused at its handshake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

import psutil
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from ipc import (
    HEADER_ROOM_BYTES,
    CallReply,
    Event,
    Message,
    MessageTooLarge,
    Progress,
    Reply,
    ZskillError,
    configure,
    encode,
    send_frames,
)

from .._config import Config
from .._curve import serve_curve
from .._rundir import RunDir

log = logging.getLogger("zskill.daemon")

KEY_CHECK_S = 1.0
"""How often keys/clients/ is looked at for a revoked key."""


class TcpPeer(bytes):
    """The routing id of a client on the tcp socket. Never equal to an ipc
    client's id, even one with the same bytes: ids are the clients' own
    choice, so no prefix could keep the two apart."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is TcpPeer and bytes.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((TcpPeer, bytes(self)))


class Sockets:
    def __init__(self, config: Config, layout: RunDir) -> None:
        """Bind every socket (the tcp one first: no keys, no tcp, nothing
        bound). Raises ZskillError when the tcp socket cannot serve."""
        self.ctx = zmq.Context()
        max_bytes = self.max_bytes = config.daemon.max_message_bytes
        self.tcp: zmq.Socket[bytes] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._key_watch: KeyWatch | None = None
        tcp_endpoint = config.daemon.tcp_control
        if tcp_endpoint is not None:
            self.tcp = self.ctx.socket(zmq.ROUTER)
            try:
                serve_curve(self.tcp, config.run_dir, tcp_endpoint)
            except ZskillError:
                self.tcp.close(linger=0)
                self.ctx.term()
                raise
            keys = ClientKeys(layout.client_keys)
            self._auth = ThreadAuthenticator(self.ctx)
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=keys)
            configure(self.tcp, max_bytes=max_bytes)
            self.tcp.bind(tcp_endpoint)
            self._key_watch = KeyWatch(keys, self.tcp.getsockopt_string(zmq.LAST_ENDPOINT))
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
        frames[0] = TcpPeer(frames[0])
        return frames

    def send_ctl(self, ident: bytes, msg: Message) -> None:
        """Send to a client; a message over the limit goes out as an error.

        A client's socket has MAXMSGSIZE set, and libzmq (4.3) treats a frame
        over it as a protocol error: it closes the connection, and the
        connecting side -- the client -- never reconnects (only a connection
        error or a timeout does); its sends then fail with EAGAIN for good.
        So a reply too large is never sent: the client gets MessageTooLarge,
        naming the size and the limit, instead."""
        sock = self.tcp if type(ident) is TcpPeer and self.tcp is not None else self.ctl
        frames = encode(msg)
        size = sum(map(len, frames))
        if size > self.max_bytes and _over_limit(msg, frames, self.max_bytes):
            bounded = _too_large(msg, size, self.max_bytes)
            if bounded is None:
                log.warning(
                    "%s of %d bytes to a client dropped: too large", type(msg).__name__, size
                )
                return
            frames = encode(bounded)
        try:
            send_frames(sock, [ident, *frames])
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
        if self._key_watch is not None:
            self._key_watch.stop()
        for s in (self.ctl, self.wrk, self.pub, self.tcp):
            if s is not None:
                s.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()


def _over_limit(msg: Message, frames: list[bytes], limit: int) -> bool:
    """Whether ``msg`` may not go out. An answer the daemon makes (a Reply,
    a Progress) is held to the limit, whole. A CallReply forwards a Result
    the skill and the daemon already held to it, under a header of its own:
    only a frame the client's MAXMSGSIZE would refuse stops it."""
    if type(msg) is CallReply:
        return max(map(len, frames)) > limit + HEADER_ROOM_BYTES
    return True


def _too_large(msg: Message, size: int, limit: int) -> Message | None:
    """What goes out instead of ``msg``, ``size`` bytes, over ``limit``: its
    error when it is a final answer; nothing for a progress update."""
    if isinstance(msg, Progress):
        return None
    err = MessageTooLarge(
        f"the answer is {size} bytes, over the limit of {limit} bytes "
        "(max_message_bytes); ask for less",
        size=size,
        limit=limit,
    ).to_wire()
    if isinstance(msg, Reply):
        return Reply(msg.req_id, None, err)
    if isinstance(msg, CallReply):
        return CallReply(msg.req_id, msg.version, err)
    return None


class ClientKeys:
    """The public keys allowed on the tcp socket: the files in
    ``keys/clients/``, read again whenever the directory's listing or a file
    in it changes. The authenticator asks at every CurveZMQ handshake (from
    its own thread, hence the lock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: object = None
        self._keys: frozenset[bytes] = frozenset()

    def current(self) -> frozenset[bytes]:
        with self._lock:
            stamp = self._read_stamp()
            if stamp != self._stamp:
                try:
                    self._keys = frozenset(zmq.auth.load_certificates(str(self.directory)))
                except (OSError, ValueError) as exc:
                    log.error("cannot read the client keys in %s: %s", self.directory, exc)
                    self._keys = frozenset()
                self._stamp = stamp
            return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        """The authenticator's question: may this (z85) public key connect?"""
        return key in self.current()

    def _read_stamp(self) -> object:
        try:
            with os.scandir(self.directory) as entries:
                return sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries)
        except OSError:
            return None


class KeyWatch:
    """A thread that looks at the client keys every ``KEY_CHECK_S``: when one
    is gone, it cuts every established connection to the tcp endpoint.

    ZAP decides at the handshake only, and libzmq cannot close one accepted
    connection, nor say which key a connection used: so all of them are shut
    down under libzmq, which sees the peer go; each client reconnects (its
    requests queued in ZeroMQ go out again, a reply in flight is lost) and
    handshakes again, where a revoked key is refused."""

    def __init__(self, keys: ClientKeys, endpoint: str) -> None:
        self.keys = keys
        self.port = int(endpoint.rsplit(":", 1)[1])
        self._stop = threading.Event()
        self._known = keys.current()
        self._thread = threading.Thread(target=self._run, name="zskill-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(KEY_CHECK_S):
            now = self.keys.current()
            revoked = self._known - now
            self._known = now
            if revoked:
                cut = self.cut_connections()
                log.info("%d client key(s) revoked: %d tcp connection(s) cut", len(revoked), cut)

    def cut_connections(self) -> int:
        cut = 0
        try:
            conns = psutil.Process().net_connections(kind="tcp")
        except psutil.Error as exc:
            log.error("cannot list the tcp connections to cut: %s", exc)
            return 0
        for c in conns:
            if c.fd < 0 or not c.raddr or c.laddr.port != self.port:
                continue
            try:
                # A duplicate: shutting it down ends the connection libzmq
                # holds, and closing it leaves libzmq's descriptor alone.
                with socket.socket(fileno=os.dup(c.fd)) as s:
                    if s.getsockname()[1] == self.port and s.type == socket.SOCK_STREAM:
                        s.shutdown(socket.SHUT_RDWR)
                        cut += 1
            except OSError:
                continue  # closed meanwhile
        return cut
