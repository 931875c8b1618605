"""Small sync handlers run on the I/O loop's thread; a standby thread takes the
loop over when one of them blocks after all.

Handing a call to the pool and its Result back costs two thread wake-ups, each
waiting for the GIL: tens of microseconds, more than a small handler and the
rest of the skill's work for the call together. So a sync tool whose last
INLINE_AFTER runs each took under FAST_S runs on the thread that received the
call, with no hand-off; one run over FAST_S sends the tool back to the pool
until it has proved fast again. ``@skill.tool(inline=True)`` runs a tool
there from its first call and always.

A handler can still block where it never did (a lock, a network stall). While
the loop's thread is in a handler, a standby thread looks every TICK_S; if the
same run is still going at two looks in a row, the standby takes the loop
over -- the ZeroMQ socket, the timers, the queued calls -- and serves on. The
blocked thread, when its handler returns, posts its Result as a pool worker
would and leaves the loop (``Deposed``). So a handler that blocks holds the
skill up for one to two ticks, never for good, and its tool goes back to the
pool for a streak TAKEOVER_PENALTY times longer.

The socket still has one user at a time: the role passes under ``_lock`` (a
full memory barrier, as ZeroMQ asks of a socket moved between threads), and
only while its holder runs a handler, never while it is inside ZeroMQ.

The standby costs nothing while the skill is idle: after PARK_AFTER_TICKS
looks with no inline run it sleeps until the next one begins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._log import log

FAST_S = 100e-6
"""A run under this long (arguments, handler, result encoding) counts as fast."""
INLINE_AFTER = 16
"""A sync tool runs inline after this many fast runs in a row."""
TAKEOVER_PENALTY = 8
"""After a takeover, the tool needs this many times more fast runs in a row."""
MAX_INLINE_AFTER = 1 << 20
TICK_S = 0.01
"""How often the standby looks while inline runs happen."""
PARK_AFTER_TICKS = 100


class Deposed(Exception):
    """Raised on the thread whose inline handler outlasted its turn: another
    thread runs the I/O loop now."""


class InlineGuard:
    """The loop's owner brackets each inline run with ``begin``/``end``;
    ``take_over`` is called on the standby thread to run the loop there."""

    def __init__(self, take_over: Callable[[], None], *, tick_s: float = TICK_S) -> None:
        self._take_over = take_over
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._seq = 0  # inline runs begun
        self._current = 0  # the run in progress on the loop's thread, 0: none
        self._tool = ""  # the current run's tool, for the log
        self._standby: threading.Thread | None = None
        self._parked = False
        self._wake = threading.Event()
        self._closed = False
        self.takeovers = 0

    def begin(self, tool: str) -> int:
        """The loop's thread is about to run ``tool``: the run's token."""
        seq = self._seq = self._seq + 1
        self._tool = tool
        self._current = seq
        if self._standby is None:
            self._standby = threading.Thread(target=self._watch, name="zskill-standby", daemon=True)
            self._standby.start()
        elif self._parked:
            self._parked = False
            self._wake.set()
        return seq

    def end(self, seq: int) -> bool:
        """The handler of run ``seq`` returned. True: the loop was taken over
        meanwhile, and this thread must leave it (raise Deposed)."""
        with self._lock:
            if self._current != seq:
                # Deposed: _depose cleared it, and a run begun since by the
                # thread that took over (itself deposed, maybe) holds it now.
                return True
            self._current = 0
            return False

    @property
    def parked(self) -> bool:
        """The standby sleeps until the next inline run (the skill is idle)."""
        return self._parked

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _watch(self) -> None:
        seen = 0  # the run in progress at the last look
        last_seq = self._seq
        quiet = 0
        while not self._closed:
            time.sleep(self._tick_s)
            current = self._current
            if current and current == seen and self._depose(current):
                log(
                    f"tool {self._tool!r} has held the I/O thread for over "
                    f"{self._tick_s * 1000:.0f} ms; another thread takes the I/O over"
                )
                self._take_over()  # this thread runs the loop now
                return
            seen = current
            if self._seq != last_seq or current:
                last_seq, quiet = self._seq, 0
                continue
            quiet += 1
            if quiet >= PARK_AFTER_TICKS:
                self._park(last_seq)
                quiet, seen, last_seq = 0, 0, self._seq

    def _depose(self, seq: int) -> bool:
        with self._lock:
            if self._current != seq:
                return False  # it ended just now
            self._current = 0
            self._standby = None  # the next begin() starts a new standby
            self.takeovers += 1
            return True

    def _park(self, last_seq: int) -> None:
        # begin() bumps _seq before it reads _parked; this reads _seq after
        # setting _parked: one of the two sees the other, so no run is missed.
        self._wake.clear()
        self._parked = True
        if self._seq == last_seq and not self._closed:
            self._wake.wait()
        self._parked = False
