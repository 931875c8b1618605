"""The endpoints of a daemon and the options every zskill socket gets.

A daemon serves three ipc:// (or tcp://) endpoints:

    control   ROUTER   clients: calls and control operations
    workers   ROUTER   skill processes
    events    PUB      lifecycle and deployment events

Where they live in a run dir is the orchestrator's business
(``orchestrator._rundir.RunDir``); this module only names them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import zmq
import zmq.backend

from ._codec import Dropped

PROTOCOL_VERSION = 2
"""Carried in every hello; a skill speaking another version is refused."""

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Default limit on one message (header and payload together)."""

HEADER_ROOM_BYTES = 64 * 1024
"""Room a frame gets over the limit, for the header around a payload of the
limit's size: the MAXMSGSIZE every zskill socket sets is the two added."""

MAX_FRAMES = 3
"""The most frames any zskill message has: a routing id (on a ROUTER), a
header and a payload. :func:`recv_frames` keeps no more than this."""


ENV_ENDPOINT = "ZSKILL_ENDPOINT"
ENV_INSTANCE = "ZSKILL_INSTANCE"
ENV_SECRET = "ZSKILL_SECRET"
ENV_SECRET_FD = "ZSKILL_SECRET_FD"  # the pipe the secret comes through (never the env)
ENV_SKILL = "ZSKILL_SKILL"
ENV_CONCURRENCY = "ZSKILL_CONCURRENCY"
ENV_MAX_MESSAGE_BYTES = "ZSKILL_MAX_MESSAGE_BYTES"
ENV_DATA_DIR = "ZSKILL_DATA_DIR"  # the skill's data_dir: the same for all its releases
"""Environment a spawned skill process receives (the secret never on argv)."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    control: str
    workers: str
    events: str

    def paths(self) -> list[Path]:
        """Socket files behind the ipc:// endpoints."""
        return [
            Path(e.removeprefix("ipc://"))
            for e in (self.control, self.workers, self.events)
            if e.startswith("ipc://")
        ]


def configure(sock: zmq.Socket[bytes], *, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """Options every zskill socket gets.

    LINGER 0: closing never hangs on unsent messages (the daemon keeps its own
    queue; nothing important waits in ZeroMQ buffers). MAXMSGSIZE: a peer
    sending more than the limit (plus room for the header) is disconnected
    before it can fill our memory. ROUTER_MANDATORY: sending to a peer that is
    gone raises instead of silently dropping the message.
    """
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_bytes + HEADER_ROOM_BYTES)
    if sock.type == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)


# pyzmq's Socket.send_multipart is a Python loop over Socket.send, itself a
# Python wrapper over the compiled send: ~3 us for three frames against
# ~0.4 us calling the compiled method with plain int flags. Every call crosses
# four sends and four receives, so the hot paths use these.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def send_frames(sock: zmq.Socket[bytes], frames: Sequence[bytes]) -> None:
    """Send a multipart message without blocking. Raises zmq.Again when the
    peer's queue is full, zmq.ZMQError (EHOSTUNREACH) when a ROUTER's peer is
    gone -- on the first frame, so nothing partial is ever queued."""
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, _MORE if i < last else _LAST)


def recv_frames(sock: zmq.Socket[bytes], *, wait: bool = False) -> list[bytes]:
    """Receive a multipart message; zmq.Again if none waits (``wait``: none
    came within the socket's RCVTIMEO).

    Each part is taken as a zmq.Frame, whose ``more`` is a plain C read:
    asking the socket (ZMQ_RCVMORE) would build a SocketOption enum, in
    Python, once per part.

    MAXMSGSIZE bounds each frame, not their number: a message of more than
    :data:`MAX_FRAMES` frames keeps its first ones, and the rest are freed
    as they come, never copied; a :class:`Dropped` frame in last place
    counts them, and :func:`ipc.decode` refuses the message as too large."""
    frame = _recv(sock, 0 if wait else _LAST, False)
    frames: list[bytes] = [frame.bytes]
    while frame.more:
        frame = _recv(sock, _LAST, False)
        if len(frames) == MAX_FRAMES:
            return _drop_rest(sock, frames, frame)
        frames.append(frame.bytes)
    return frames


def _drop_rest(sock: zmq.Socket[bytes], frames: list[bytes], frame: zmq.Frame) -> list[bytes]:
    count, size = 1, len(frame)
    while frame.more:
        frame = _recv(sock, _LAST, False)
        count, size = count + 1, size + len(frame)
    frames.append(Dropped(count, size))
    return frames


def more_waiting(sock: zmq.Socket[bytes]) -> bool:
    """Another message waits to be received (ZMQ_EVENTS).

    How to drain a socket that poll said is readable: receive one message,
    ask this once, and only if it says so receive until zmq.Again. Asking
    costs a system call (ZeroMQ reads its command pipe), an empty receive a
    system call and a Python exception (~3 us): the usual lone message then
    costs neither the exception nor a question per message of a burst."""
    return bool(cast(int, _get(sock, _EVENTS)) & _POLLIN)
