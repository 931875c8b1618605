"""The event stream of :class:`~.sync.Client`: a SUB socket on the daemon's
event endpoint, filtered to one skill (or none), read by one thread."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import zmq

import ipc
from ipc import Event, ZskillError

from . import common

__all__ = ["EventStream"]


class EventStream:
    """Events of one skill (or all) as they are published; for one thread.

    ZeroMQ subscriptions take a moment to reach the publisher, so events
    published right after :meth:`Client.subscribe` returns may be missed; the
    durable history is :meth:`Client.events`.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, skill: str | None) -> None:
        self._skill = skill
        self._sock: zmq.Socket[bytes] = ctx.socket(zmq.SUB)
        ipc.configure(self._sock)
        self._sock.setsockopt(zmq.SUBSCRIBE, common.topic(skill))
        self._sock.connect(endpoint)
        self._closed = False

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds (None: wait on)."""
        if self._closed:
            raise ZskillError("event stream is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                ready = self._sock.poll(-1)
            else:
                ready = self._sock.poll(max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            if not ready:
                return None
            event = common.event_from_frames(self._sock.recv_multipart())
            if event is not None and common.wants(event, self._skill):
                return event

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._closed:
            raise StopIteration
        event = self.next(None)
        assert event is not None
        return event

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(linger=0)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
