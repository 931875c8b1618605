"""What a client knows of its connection to the daemon beyond replies: whether
libzmq dropped it, and for how long it has been down. Read from the
socket's monitor, and only on the failure path -- never per call.

Why a client needs it:

- libzmq disconnects a peer that sends a frame over the socket's
  MAXMSGSIZE (a reply bigger than ``max_message_bytes``), and does not
  reconnect after such a protocol error. The DEALER is left with no peer:
  every send fails (EAGAIN, "send queue full") and the request in flight
  never gets its reply. A dropped connection is seen here (a DISCONNECTED
  event); the client then fails the requests that went out on it and opens
  a fresh socket (``Connection`` and ``AsyncClient`` do that).
- A tcp:// daemon has no pid to look at. A connection that is down -- the
  daemon gone, its host silent past the ZMTP heartbeat timeout (see
  :data:`HEARTBEAT_IVL_MS`), never connected -- for
  :data:`REMOTE_DOWN_S` fails the requests waiting on it.

The bound, for a request to a tcp:// daemon that went away: DaemonUnavailable
within ``max(HEARTBEAT_IVL_MS + HEARTBEAT_TIMEOUT_MS, REMOTE_DOWN_S) +
LIVENESS_EVERY_S``, 7 s. A request in flight fails when its dropped
connection is seen, at the reader's next liveness check (every
``LIVENESS_EVERY_S``): at once after a RST, within 4 s of the last word
from a host gone silent. A request on a connection that is down fails once
it has been down ``REMOTE_DOWN_S``. A local (ipc://) daemon needs neither:
its pid file and socket say whether it lives.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from typing import Any

import zmq

HEARTBEAT_IVL_MS = 1000
"""tcp:// only: how often the client's libzmq pings the daemon's (ZMTP PING,
answered by the daemon's libzmq I/O thread)."""
HEARTBEAT_TIMEOUT_MS = 3000
"""tcp:// only: no traffic for this long after a ping drops the connection
(a host that vanished without a word: no FIN, no RST)."""
REMOTE_DOWN_S = 5.0
"""tcp:// only: a connection down this long (never up, or dropped and not
back) fails the requests that wait on it."""

_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
_ids = itertools.count()


class Link:
    """The monitor of one socket: read by whoever owns that socket (the
    reader of the moment), only when a wait has gone on for a while or a send
    failed."""

    def __init__(self, sock: zmq.Socket[Any], now: float) -> None:
        addr = f"inproc://zskill-link-{id(self)}-{next(_ids)}"
        self._sock = sock
        sock.monitor(addr, _EVENTS)
        # A plain socket on the same libzmq context: inproc needs that, and
        # an asyncio client's monitor is read without awaiting.
        ctx: zmq.Context[Any] = zmq.Context.shadow(sock.context.underlying)
        self._events: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
        self._events.setsockopt(zmq.LINGER, 0)
        self._events.connect(addr)
        self.dropped = False  # libzmq disconnected the peer at least once
        self._down_since: float | None = now  # not connected yet

    def lost(self, now: float) -> bool:
        """Whether the connection was dropped since this socket was made."""
        self._read(now)
        return self.dropped

    def down_for(self, now: float) -> float:
        """Seconds since the connection was last up (or since the socket was
        made, if it never was); 0 while it is up."""
        self._read(now)
        return 0.0 if self._down_since is None else now - self._down_since

    def close(self) -> None:
        """Before the socket it watches is closed: stop the monitor first. A
        monitor left running when its socket closes, with an event still
        queued for this end (a handshake that had just succeeded), is never
        reaped by libzmq: three file descriptors lost per socket, until the
        context ran out of sockets ("Too many open files")."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._events.close(linger=0)

    def _read(self, now: float) -> None:
        while True:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [event (uint16), value (int32)] in native order, then the endpoint
            # (zmq.utils.monitor parses it too, but imports asyncio).
            (event,) = struct.unpack_from("=H", frames[0])
            if event == zmq.EVENT_DISCONNECTED:
                self.dropped = True
                self._down_since = now
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._down_since = None
