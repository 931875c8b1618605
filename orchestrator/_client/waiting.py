"""What the threads sharing one :class:`~.connection.Connection` hand each
other: a :class:`Waiter` per request in flight (how its thread hears about
it) and the :class:`Wakeup` a follower sets to wake the reader; and the
asyncio client's :class:`Pending`, its request in flight.

Both are touched under the connection's lock, on the hot path of every
call: plain slots and no locks of their own.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ipc import Message, ZskillError

from .common import LIVENESS_EVERY_S, ProgressCallback

if TYPE_CHECKING:  # the threaded client never loads asyncio
    import asyncio


class Waiter:
    """One request in flight, and how its thread hears about it: the reply,
    a progress update, an error (client closed), or a promotion to reader."""

    __slots__ = ("abandoned", "error", "event", "idle", "leading", "progress", "reply", "req_id")

    def __init__(self, req_id: int) -> None:
        self.req_id = req_id
        # Made when the waiter first blocks; a lone reader never needs one.
        self.event: threading.Event | None = None
        self.reply: Message | None = None
        self.error: ZskillError | None = None
        self.leading = False
        self.idle = False  # blocked on its event: may be promoted
        self.abandoned = False
        self.progress: deque[Any] = deque()

    def has_news(self) -> bool:
        return self.reply is not None or self.error is not None or bool(self.progress)


class Wakeup:
    """A file descriptor that polls readable once set: how a follower wakes the
    reader blocked in zmq_poll. An eventfd on Linux, a pipe elsewhere."""

    def __init__(self) -> None:
        if sys.platform == "linux":
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._token = (1).to_bytes(8, sys.byteorder)
        else:
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)
            self._token = b"\0"
        # A client dropped without close() must not leak its descriptors.
        self._finalizer = weakref.finalize(self, _close_fds, {self._r, self._w})

    def fileno(self) -> int:
        return self._r

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe is readable already
            os.write(self._w, self._token)

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):  # spurious: nothing to clear
            os.read(self._r, 4096)

    def close(self) -> None:
        self._finalizer()


def _close_fds(fds: set[int]) -> None:
    for fd in fds:
        os.close(fd)


class Pending:
    """For :class:`~.aio.AsyncClient`: a request in flight, its future, and
    the timer that watches its wait."""

    __slots__ = ("deadline", "future", "next_check", "on_progress", "req_id", "timer", "what")

    def __init__(
        self,
        req_id: int,
        future: asyncio.Future[Message],
        on_progress: ProgressCallback | None,
        deadline: float | None,
        what: str,
        now: float,
    ) -> None:
        self.req_id = req_id
        self.future = future
        self.on_progress = on_progress
        self.deadline = deadline
        self.what = what
        self.next_check = now + LIVENESS_EVERY_S
        self.timer: asyncio.TimerHandle | None = None

    def until(self) -> float:
        """When the watch must look next: the deadline or the next liveness check."""
        return self.next_check if self.deadline is None else min(self.deadline, self.next_check)
