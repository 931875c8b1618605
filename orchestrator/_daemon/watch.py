"""Watch mode (``watch = true``, ``zskill up --watch``): a skill whose files
change is upgraded in place, through the usual rollout and its health gate.

    watcher thread (one per watched skill)        the daemon's thread
    ──────────────────────────────────────        ───────────────────
    watchfiles.watch(path): inotify, debounced
      a batch of changes ──► queue + a byte ────►  FileWatch._deliver
                             in a watched pipe       'changed' event
                                                     Lifecycle.upgrade(skill)
                                                       (or start, if it is
                                                        errored or backing off)

A save that breaks the skill (a syntax error, a failed health check) is
rolled back like any upgrade: the new process is killed, the version that
served keeps serving, and the ``rolled_back`` event says why. Changes that
come while a rollout of the skill runs are kept, and one more upgrade
follows when it ends: the last save always gets its try.

The threads only wait on the file system and hand over relative paths;
everything they cause happens on the daemon's thread. ``watchfiles`` is
imported by the first watcher thread, so a daemon that watches nothing
never loads it. Ignored: ``__pycache__``, ``.git`` and the like, editors'
swap and backup files, and the daemon's own run dir (logs, releases, data)
when it lies under a skill's path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ipc import ZskillError

from .._status import EventKind
from .events import EventLog
from .lifecycle import Lifecycle
from .runtime import SkillRuntime

log = logging.getLogger("zskill.watch")

STEP_MS = 300
"""Quiet time after a change before the batch is handed over: an editor's
save (write a temporary file, rename it, touch the directory) is one batch."""
DEBOUNCE_MS = 2000
"""The longest a batch keeps growing while changes go on."""
CLOSE_WAIT_S = 1.0  # at the daemon's exit, for the watcher threads to end
SHOWN = 10  # changed paths named in an event; the count says how many in all

# Editors' leftovers, on top of watchfiles' own list (.swp, ~, .#, .pyc, ...):
# vim's write test file "4913", swap files .swx/.swo, JetBrains' ___jb_ files.
EXTRA_PATTERNS = (r"^4913$", r"\.sw[a-z]$", r"\.tmp$", r"\.bak$")
EXTRA_DIRS = (".ruff_cache", ".zskill")

WatchFd = Callable[[int, Callable[[], None] | None], None]


class _Watcher:
    """One thread watching one skill's directory."""

    def __init__(
        self, name: str, path: Path, ignore: Sequence[Path], out: Callable[[_Watcher, Any], None]
    ) -> None:
        self.name, self.path, self._ignore, self._out = name, path, ignore, out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"zskill-watch-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            import watchfiles  # only once something is watched

            flt = watchfiles.DefaultFilter(
                ignore_dirs=(*watchfiles.DefaultFilter.ignore_dirs, *EXTRA_DIRS),
                ignore_entity_patterns=(
                    *watchfiles.DefaultFilter.ignore_entity_patterns,
                    *EXTRA_PATTERNS,
                ),
                ignore_paths=[str(p) for p in self._ignore],
            )
            for changes in watchfiles.watch(
                self.path,
                watch_filter=flt,
                debounce=DEBOUNCE_MS,
                step=STEP_MS,
                stop_event=self.stop,
                raise_interrupt=False,
            ):
                paths = _lasting(changes)
                if paths:  # nothing but a temporary file that came and went: no change
                    self._out(self, sorted(self._relative(p) for p in paths))
        except Exception as exc:  # handed to the daemon's thread, never lost
            if not self.stop.is_set():
                self._out(self, exc)

    def _relative(self, p: str) -> str:
        try:
            return str(Path(p).relative_to(self.path))
        except ValueError:
            return p


def _lasting(changes: set[tuple[Any, str]]) -> set[str]:
    """The paths of a batch, less those created within it and gone by its
    end (an editor's or sed's temporary file): they changed nothing. (On the
    watcher's thread: the stat calls never hold up the daemon.)"""
    added = {path for change, path in changes if change.name == "added"}
    return {path for _, path in changes if path not in added or os.path.lexists(path)}


class FileWatch:
    """The watcher threads of the skills that have ``watch = true``, and what
    a change leads to, on the daemon's thread."""

    def __init__(
        self, life: Lifecycle, events: EventLog, watch_fd: WatchFd, ignore: Sequence[Path]
    ) -> None:
        self.life = life
        self.sup = life.sup
        self.events = events
        self._ignore = list(ignore)
        self._watch_fd = watch_fd
        self._watchers: dict[str, _Watcher] = {}
        self._pending: dict[str, list[str]] = {}  # changes held while a rollout runs
        self._inbox: queue.SimpleQueue[tuple[_Watcher, Any]] = queue.SimpleQueue()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        watch_fd(self._r, self._deliver)

    @property
    def watching(self) -> list[str]:
        return sorted(self._watchers)

    def sync(self, skills: Iterable[SkillRuntime]) -> None:
        """Watch exactly the skills with ``watch = true``, each at its path."""
        want = {
            rt.name: rt.config.path for rt in skills if rt.config.settings.watch and not rt.removing
        }
        for name, w in list(self._watchers.items()):
            if want.get(name) != w.path:
                w.stop.set()
                del self._watchers[name]
                self._pending.pop(name, None)
        for name, path in want.items():
            if name not in self._watchers:
                self._watchers[name] = _Watcher(name, path, self._ignore, self._post)
                log.info("%s: watching %s", name, path)

    def tick(self) -> None:
        """Changes held while a rollout ran: their upgrade, now that it ended."""
        for name in list(self._pending):
            rt = self.sup.skills.get(name)
            if rt is None or rt.rollout is None:
                self._act(name, self._pending.pop(name))

    def close(self) -> None:
        """Stop every watcher. The pipe is closed only once no thread can
        write to it any more: a late write could land in a file that took
        its descriptor's number."""
        watchers = list(self._watchers.values())
        self._watchers.clear()
        for w in watchers:
            w.stop.set()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for w in watchers:
            w.thread.join(max(0.0, deadline - time.monotonic()))
        self._watch_fd(self._r, None)
        if not any(w.thread.is_alive() for w in watchers):
            os.close(self._r)
            os.close(self._w)

    # --- from the threads ----------------------------------------------------------

    def _post(self, w: _Watcher, what: Any) -> None:
        # On a watcher thread: hand over, wake the daemon's poller, nothing else.
        if w.stop.is_set():
            return  # no longer wanted; the pipe may be closing
        self._inbox.put((w, what))
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            os.write(self._w, b"w")

    def _deliver(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass
        while True:
            try:
                w, what = self._inbox.get_nowait()
            except queue.Empty:
                return
            if self._watchers.get(w.name) is not w:
                continue  # from a watcher stopped since
            if isinstance(what, Exception):
                why = f"{type(what).__name__}: {what}"
                log.error("%s: cannot watch %s: %s", w.name, w.path, why)
                self.events.emit(w.name, EventKind.CHANGED, error=f"cannot watch: {why}")
                del self._watchers[w.name]
                continue
            self._act(w.name, what)

    # --- on the daemon's thread ----------------------------------------------------

    def _act(self, name: str, paths: list[str]) -> None:
        rt = self.sup.skills.get(name)
        if rt is None or rt.removing or not rt.config.settings.watch:
            return
        if rt.rollout is not None:  # one more upgrade once this one ends
            self._pending[name] = sorted({*self._pending.get(name, []), *paths})
            return
        if rt.desired != "running":
            return  # stopped by request: a save does not start it
        self.events.emit(name, EventKind.CHANGED, files=paths[:SHOWN], count=len(paths))
        log.info("%s: %d file(s) changed (%s); upgrading", name, len(paths), ", ".join(paths[:3]))
        try:
            if rt.active() and not rt.errored:
                self.life.upgrade(rt, None, self._report(name))
            else:  # errored or backing off: the save may be the fix
                self.life.start(rt, self._report(name))
        except ZskillError as exc:  # the entry file gone mid-save, say
            log.warning("%s: not upgraded after a change: %s", name, exc.message)
            self.events.emit(name, EventKind.CHANGED, error=exc.message)

    def _report(self, name: str) -> Callable[[Any, Exception | None], None]:
        def done(_result: Any, err: Exception | None) -> None:
            # The rollout's own events (deployed, rolled_back) say the rest.
            if err is not None:
                log.warning("%s: the changed code was not taken: %s", name, err)

        return done


__all__ = ["DEBOUNCE_MS", "STEP_MS", "FileWatch"]
