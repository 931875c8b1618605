"""Progress updates of running calls, coalesced on their way to the daemon.

A handler may call ``ctx.progress`` in a tight loop; the daemon must not be
flooded for it, nor the caller's terminal redrawn a million times. So each
call sends at most one ``CallProgress`` every ``INTERVAL_S``: an update made
sooner replaces the one waiting (only the newest matters), and the I/O loop
sends it once the interval has passed. Updates of one call go out in the
order they were made, and the last one before the handler returned goes out
before its Result (:meth:`ProgressOut.finish`), so a caller sees the bar
reach its end.

Threads: ``post`` and ``finish`` run on the handler's thread, ``take`` on
the I/O loop's; the waiting updates are guarded by one lock, taken only by
calls that report progress.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

from ipc import CallProgress

from ._context import Context

INTERVAL_S = 0.05
"""At most one update per call this often (20 a second)."""


class ProgressOut:
    def __init__(self, wake: Callable[[], None], *, interval_s: float = INTERVAL_S) -> None:
        self._wake = wake
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._waiting: set[Context] = set()  # calls with an update not yet sent
        self.final: deque[CallProgress] = deque()
        """Last updates of handlers that returned: sent before any Result."""
        self.next_due = math.inf
        """When the loop must call ``take`` again (updates held back)."""

    def post(self, ctx: Context, update: CallProgress) -> None:
        """Any thread: ``update`` replaces the one ``ctx`` has waiting."""
        with self._lock:
            ctx._pending = update
            first = ctx not in self._waiting
            if first:
                self._waiting.add(ctx)
        if first:
            self._wake()  # the loop decides whether it may go out yet

    def take(self, now: float) -> list[CallProgress]:
        """The loop: the updates that may go out now; sets ``next_due``."""
        if not self._waiting:
            self.next_due = math.inf
            return []
        out: list[CallProgress] = []
        due = math.inf
        with self._lock:
            for ctx in list(self._waiting):
                ready_at = ctx._sent_at + self._interval_s
                if now >= ready_at:
                    if ctx._pending is not None:
                        out.append(ctx._pending)
                    ctx._pending = None
                    ctx._sent_at = now
                    self._waiting.discard(ctx)
                else:
                    due = min(due, ready_at)
        self.next_due = due
        return out

    def finish(self, ctx: Context) -> None:
        """The handler's thread, once it returned and before its Result is
        posted: its last update waiting goes out first, whatever the interval."""
        if ctx._pending is None:
            return
        with self._lock:
            update, ctx._pending = ctx._pending, None
            self._waiting.discard(ctx)
            if update is not None:
                self.final.append(update)


__all__ = ["INTERVAL_S", "ProgressOut"]
