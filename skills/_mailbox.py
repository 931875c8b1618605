"""Finished work handed from worker threads to the I/O loop.

Only the main thread touches the ZeroMQ socket. A worker that finishes a
call appends the Result's frames to a deque and, if the loop is asleep in
its poll, writes one byte to a pipe whose read end the poll watches. Both
``deque.append`` and ``popleft`` are atomic, so no lock is taken per call.

Why the ``sleeping`` flag cannot lose a wake-up: the loop sets it *before*
looking at the deques one last time and polling, and a worker appends
*before* reading it. Either the loop sees the item, or the worker sees the
flag and writes the byte. A stale flag only costs a spurious wake-up.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque

from ipc import HealthReply


class Mailbox:
    __slots__ = ("_sleeping", "_write_fd", "fd", "health", "outbox", "results")

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self.fd = read_fd
        """Register this in the poller, for reading."""
        self.results: deque[list[bytes]] = deque()
        """Frames of finished calls' Results, ready to send."""
        self.health: deque[HealthReply] = deque()
        self.outbox: deque[list[bytes]] = deque()
        """Frames of other messages to send as they are (state handoff)."""
        self._write_fd = write_fd
        self._sleeping = False

    def post_result(self, frames: list[bytes]) -> None:
        self.results.append(frames)
        if self._sleeping:
            self.wake()

    def post_health(self, reply: HealthReply) -> None:
        self.health.append(reply)
        if self._sleeping:
            self.wake()

    def post_frames(self, frames: list[bytes]) -> None:
        self.outbox.append(frames)
        if self._sleeping:
            self.wake()

    def wake(self) -> None:
        """Interrupt the loop's poll (also used by signal handlers)."""
        self._sleeping = False
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full, so the loop is awake anyway
        except OSError:
            pass  # closed during shutdown

    def may_sleep(self) -> bool:
        """Called by the loop right before polling: False if work is waiting
        (then poll without blocking)."""
        self._sleeping = True
        if self.results or self.health or self.outbox:
            self._sleeping = False
            return False
        return True

    def awake(self) -> None:
        """Called by the loop right after polling."""
        self._sleeping = False

    def clear(self) -> None:
        """Empty the pipe once the poll said it is readable. One read is
        enough: at most a few bytes are ever waiting (one per wake-up)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self.fd, 4096)

    def close(self) -> None:
        """Close the read end only. A worker still running (a stuck handler)
        may post later; its write then fails with EPIPE, which wake()
        ignores. Closing the write end too would let the fd number be
        reused by some file the program opens, and the late byte land there.
        """
        with contextlib.suppress(OSError):
            os.close(self.fd)
