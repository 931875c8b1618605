"""A copy of what happens, for a viewer on another thread: the events and
every line the skills print, as a foreground ``zskill up`` shows them.

The daemon's thread only puts into a bounded queue and never waits: when
the viewer falls behind (a terminal scrolled back, output paused), items are
dropped and counted, and the viewer says how many. Slow output can never
stall calls. The skills' logs and ``events.jsonl`` keep everything anyway.
"""

from __future__ import annotations

import contextlib
import queue
from dataclasses import dataclass

from ipc import Event

MAX_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class Line:
    """One line a skill process printed."""

    skill: str
    version: str  # "" before the process said hello
    pid: int
    stream: str  # "out" or "err"
    text: str


class Tap:
    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self._items: queue.Queue[Event | Line | None] = queue.Queue(max_items)
        self.dropped = 0  # written by the daemon's thread only

    # --- the daemon's side: never blocks -----------------------------------------

    def event(self, ev: Event) -> None:
        self._put(ev)

    def line(self, skill: str, stream: str, version: str, pid: int, text: str) -> None:
        self._put(Line(skill, version, pid, stream, text))

    def _put(self, item: Event | Line | None) -> None:
        try:
            self._items.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # --- the viewer's side ---------------------------------------------------------

    def get(self) -> Event | Line | None:
        """The next item, waiting for it (no polling: an idle daemon keeps
        the viewer asleep); None once :meth:`close` was called and all
        before it was read."""
        return self._items.get()

    def close(self, timeout_s: float = 2.0) -> None:
        """The daemon has stopped: the viewer reads what is left, then None.
        (From the thread that ran the daemon; a viewer that stopped reading
        with the queue full is not waited for beyond ``timeout_s``.)"""
        with contextlib.suppress(queue.Full):
            self._items.put(None, timeout=timeout_s)


__all__ = ["Line", "Tap"]
