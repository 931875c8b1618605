"""``zskill dashboard``: a live terminal view of every skill, recent events,
and the log tail of the selected skill.

Two threads, so that a slow or vanished daemon never freezes the keys::

    feed thread, every interval_s          render loop (main thread), per frame
    ───────────────────────────────        ─────────────────────────────────────
    ping   who is the daemon (pid)?        wait for a key or the next frame
    list   the skills' rows                   (select on stdin: idle = asleep)
    events history when the daemon is      take the feed's latest state
           new, then its live stream       tail the selected skill's log file
    -> one immutable FeedState             redraw if anything changed, and once
                                              a second (clock, "disconnected")

The feed owns the client and the event stream; the render loop owns the
selection, the sparklines and the log tail. They share one reference to the
latest :class:`FeedState`, swapped whole.

A daemon that goes away turns the header to "disconnected" and keeps the last
rows on screen (dimmed); the client reconnects by itself, and the first ping
that answers brings the feed back, with the event history of the new daemon.
Logs are read from the run dir's files, so they keep flowing meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ipc import ZskillError

from .. import logs as cl
from ..format import Row
from .view import SPARK_WIDTH, View, natural_width, render

if TYPE_CHECKING:
    from rich.console import Console

    from ..._client.sync import Client, EventStream
    from ..._config import Config
    from ..._status import SkillStatus

FRAME_S = 0.25  # keys and log lines show within a frame
REDRAW_EVERY_S = 1.0  # even when nothing changed: the clock, "down for N s"
REQUEST_TIMEOUT_S = 2.0  # a daemon that does not answer within this is "disconnected"
SPARK_EVERY_S = 3.0  # one sparkline point per this: 10 points span the 30 s window
EVENTS_KEPT = 50
LOG_LINES_KEPT = 200


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the daemon last told the feed."""

    generation: int = 0
    connected: bool = False
    rows: tuple[SkillStatus, ...] = ()
    events: tuple[Row, ...] = ()
    daemon_pid: int | None = None
    down_since: float | None = None  # monotonic time the daemon was last lost


class Feed:
    """Polls the daemon; :attr:`latest` is the newest :class:`FeedState`."""

    def __init__(self, client: Client, *, interval_s: float = 0.5) -> None:
        self._client = client
        self._interval_s = interval_s
        self.latest = FeedState()
        self._daemon: tuple[Any, Any] | None = None  # (pid, started_at) of the daemon seen
        self._events: deque[Row] = deque(maxlen=EVENTS_KEPT)
        self._stream: EventStream | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zskill-dashboard-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it does after its current request."""
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        # The stream is this thread's own: ZeroMQ sockets stay on one thread.
        with contextlib.suppress(ZskillError):
            self._stream = self._client.subscribe()
        try:
            while not self._stop.is_set():
                self.poll_once()
                self._stop.wait(self._interval_s)
        finally:
            if self._stream is not None:
                self._stream.close()

    def poll_once(self) -> None:
        """One round of questions to the daemon; never raises for its absence."""
        old = self.latest
        try:
            ping = self._client.ping(timeout=REQUEST_TIMEOUT_S)
            daemon = (ping.get("pid"), ping.get("started_at"))
            if daemon != self._daemon or not old.connected:
                # A daemon we have not seen (or lost meanwhile): what happened
                # while we were away is in its history, not in the stream.
                history = self._client.request(
                    "events", {"limit": EVENTS_KEPT}, timeout=REQUEST_TIMEOUT_S
                )
                self._events.clear()
                self._events.extend(e for e in history if isinstance(e, dict))
                self._daemon = daemon
            rows = self._client.request("list", timeout=REQUEST_TIMEOUT_S)
            self._drain_stream()
        except ZskillError:
            if old.connected or old.generation == 0:
                self.latest = FeedState(
                    old.generation + 1,
                    False,
                    old.rows,
                    old.events,
                    old.daemon_pid,
                    time.monotonic(),
                )
            return
        self.latest = FeedState(
            old.generation + 1,
            True,
            tuple(cast("SkillStatus", r) for r in rows if isinstance(r, dict)),
            tuple(self._events),
            daemon[0] if isinstance(daemon[0], int) else None,
            None,
        )

    def _drain_stream(self) -> None:
        if self._stream is None:
            return
        last = int(self._events[-1].get("seq", 0)) if self._events else 0
        while (ev := self._stream.next(0)) is not None:
            if ev.seq > last:  # already in the history we fetched
                last = ev.seq
                self._events.append(
                    {"seq": ev.seq, "time": ev.time, "skill": ev.skill, "type": ev.type,
                     "data": ev.data}
                )  # fmt: skip


class LogTail:
    """The last lines of one skill's log, followed across rotations."""

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self.skill: str | None = None
        self.records: deque[cl.LogRecord] = deque(maxlen=LOG_LINES_KEPT)
        self._follower: cl.LogFollower | None = None
        self._keep = cl.record_filter()

    def show(self, skill: str | None) -> bool:
        """Tail ``skill`` from now on; True if that changed anything."""
        if skill == self.skill:
            return False
        self.close()
        self.skill = skill
        self.records.clear()
        if skill is not None:
            self._follower = cl.LogFollower(cl.log_path(self._run_dir, skill))
            self.records.extend(cl.history(self._follower, LOG_LINES_KEPT, self._keep))
        return True

    def poll(self) -> bool:
        """Read what was appended; True if there were new lines."""
        if self._follower is None:
            return False
        new = [
            cl.parse_record(raw)
            for raw in self._follower.poll()
            if raw.strip()
        ]  # fmt: skip
        self.records.extend(new)
        return bool(new)

    def close(self) -> None:
        if self._follower is not None:
            self._follower.close()
            self._follower = None


class Model:
    """The render loop's own state: selection and sparkline histories."""

    def __init__(self) -> None:
        self.selected: str | None = None
        self.history: dict[str, deque[float]] = {}
        self._next_point = 0.0
        self.feed = FeedState()

    def apply(self, state: FeedState, now: float) -> None:
        self.feed = state
        names = [str(r.get("name")) for r in state.rows]
        if self.selected not in names:
            self.selected = names[0] if names else None
        if state.connected and now >= self._next_point:
            self._next_point = now + SPARK_EVERY_S
            for row in state.rows:
                rate = row.get("calls_per_s")
                points = self.history.setdefault(str(row.get("name")), deque(maxlen=SPARK_WIDTH))
                points.append(float(rate) if isinstance(rate, (int, float)) else 0.0)

    def move(self, key: str, page: int = 10) -> bool:
        """Move the selection; True if it moved."""
        names = [str(r.get("name")) for r in self.feed.rows]
        if not names:
            return False
        i = names.index(self.selected) if self.selected in names else 0
        step = {"up": -1, "down": 1, "pageup": -page, "pagedown": page}
        if key in step:
            j = min(max(0, i + step[key]), len(names) - 1)
        elif key == "home":
            j = 0
        elif key == "end":
            j = len(names) - 1
        else:
            return False
        self.selected = names[j]
        return j != i

    def view(self, run_dir: Path, logs: LogTail, now_mono: float) -> View:
        f = self.feed
        return View(
            run_dir=str(run_dir),
            connected=f.connected,
            rows=f.rows,
            selected=self.selected,
            history={k: tuple(v) for k, v in self.history.items()},
            events=f.events,
            logs=tuple(logs.records),
            daemon_pid=f.daemon_pid,
            down_for_s=None if f.down_since is None else now_mono - f.down_since,
            now=time.time(),
        )


def run(config: Config, client: Client, out: Console, *, interval_s: float, once: bool) -> None:
    """Show the dashboard until q (or Ctrl-C); with ``once`` (or when ``out``
    is not a terminal), print one frame and return."""
    feed, model, logs = Feed(client, interval_s=interval_s), Model(), LogTail(config.run_dir)
    try:
        if once or not out.is_terminal:
            feed.poll_once()
            model.apply(feed.latest, time.monotonic())
            logs.show(model.selected)
            view = model.view(config.run_dir, logs, time.monotonic())
            # Piped, no terminal limits the width: show every column.
            width = out.width if out.is_terminal else max(out.width, natural_width(view))
            out.width = width
            out.print(render(view, width=width))
            return
        _live(config, feed, model, logs, out)
    finally:
        feed.stop()
        client.close()  # fails a request the feed may be waiting on: it ends now
        feed.join(REQUEST_TIMEOUT_S + 1)
        logs.close()


def _terminal_size(out: Console) -> tuple[int, int]:
    """The terminal's size now. Not rich's own idea of it: rich prefers the
    COLUMNS and LINES variables, which a resize does not change."""
    try:
        cols, lines = os.get_terminal_size(out.file.fileno())
    except (OSError, ValueError, AttributeError):
        return out.width, out.height
    return cols, lines


def _live(config: Config, feed: Feed, model: Model, logs: LogTail, out: Console) -> None:
    from rich.live import Live

    from .keyboard import Keyboard

    feed.start()
    seen, size, last_draw = -1, (0, 0), 0.0
    try:
        with (
            Keyboard() as keyboard,
            Live(console=out, screen=True, auto_refresh=False, redirect_stderr=False) as live,
        ):
            dirty = True
            while True:
                now = time.monotonic()
                if feed.latest.generation != seen:
                    seen = feed.latest.generation
                    model.apply(feed.latest, now)
                    dirty = True
                dirty |= logs.show(model.selected)
                dirty |= logs.poll()
                if (now_size := _terminal_size(out)) != size:
                    size, dirty = now_size, True
                    out.size = size  # what Live crops to
                if dirty or now - last_draw >= REDRAW_EVERY_S:
                    frame = render(model.view(config.run_dir, logs, now), width=size[0],
                                   height=size[1])  # fmt: skip
                    live.update(frame, refresh=True)
                    last_draw, dirty = now, False
                for key in keyboard.wait(FRAME_S):
                    if key == "quit":
                        return
                    dirty |= model.move(key, page=max(1, size[1] // 2))
    except KeyboardInterrupt:
        pass  # Ctrl-C is the other way out, not a failure
