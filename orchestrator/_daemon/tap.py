"""A copy of what happens, for a viewer on another thread: the events and
every line the skills print, as a foreground ``zskill up`` shows them.

The daemon's thread only puts into a bounded queue and never waits: when
the viewer falls behind (a terminal scrolled back, output paused), items are
dropped and counted, and the viewer says how many. Slow output can never
stall calls. The skills' logs and ``events.jsonl`` keep everything anyway.
"""

from __future__ import annotations

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
        self._items: queue.Queue[Event | Line] = queue.Queue(max_items)
        self.dropped = 0  # written by the daemon's thread only

    # --- the daemon's side: never blocks -----------------------------------------

    def event(self, ev: Event) -> None:
        self._put(ev)

    def line(self, skill: str, stream: str, version: str, pid: int, text: str) -> None:
        self._put(Line(skill, version, pid, stream, text))

    def _put(self, item: Event | Line) -> None:
        try:
            self._items.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # --- the viewer's side ---------------------------------------------------------

    def get(self, timeout_s: float) -> Event | Line | None:
        """The next item, or None after ``timeout_s``."""
        try:
            return self._items.get(timeout=timeout_s)
        except queue.Empty:
            return None


__all__ = ["Line", "Tap"]
