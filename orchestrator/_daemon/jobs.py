"""Work that must not run on the daemon's thread: copying a release,
hashing a source tree. Both read whole directory trees, and a tree of 60,000
files took six seconds -- six seconds in which the daemon answered no call
and sent no heartbeat, so every skill gave it up for dead.

A job runs on a worker thread; its outcome comes back to the daemon's
thread through a pipe the daemon's poller watches, so the callback runs
where all state lives and touches it without locks. A job sees nothing of
the daemon's state but what it was given, and may be told to stop early
(``cancelled`` is set when the daemon no longer wants its result).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

log = logging.getLogger("zskill.jobs")

T = TypeVar("T")
Job = Callable[[threading.Event], T]
"""A job: given an Event that is set when its result is no longer wanted."""
JobDone = Callable[[T | None, BaseException | None], None]
"""Called on the daemon's thread with the job's result, or what it raised."""
WatchFd = Callable[[int, Callable[[], None] | None], None]


class Jobs(Protocol):
    def submit(self, job: Job[T], done: JobDone[T]) -> threading.Event:
        """Run ``job`` off the daemon's thread, then ``done`` on it. Returns
        the Event that, set, tells the job to give up."""
        ...

    def close(self) -> None: ...


class ThreadJobs:
    """Jobs on a small pool of threads, answered through a watched pipe."""

    def __init__(self, watch_fd: WatchFd, *, workers: int = 2) -> None:
        self._watch_fd = watch_fd
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zskill-job")
        self._outcomes: queue.SimpleQueue[tuple[JobDone[Any], Any, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._cancels: set[threading.Event] = set()
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        watch_fd(self._r, self._deliver)

    def submit(self, job: Job[T], done: JobDone[T]) -> threading.Event:
        cancelled = threading.Event()
        self._cancels.add(cancelled)
        self._pool.submit(self._run, job, done, cancelled)
        return cancelled

    def _run(self, job: Job[T], done: JobDone[T], cancelled: threading.Event) -> None:
        # On a worker thread: nothing of the daemon's state is touched here.
        try:
            outcome: tuple[JobDone[Any], Any, BaseException | None] = (done, job(cancelled), None)
        except BaseException as exc:  # handed to the daemon's thread, never lost
            outcome = (done, None, exc)
        self._outcomes.put(outcome)
        # A full pipe has a wake-up pending anyway; a closed one, nobody to wake.
        with contextlib.suppress(OSError):
            os.write(self._w, b"j")

    def _deliver(self) -> None:
        """On the daemon's thread: hand every finished job's outcome over."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass
        while True:
            try:
                done, result, exc = self._outcomes.get_nowait()
            except queue.Empty:
                return
            try:
                done(result, exc)
            except Exception:  # one bad callback must not stop the daemon
                log.exception("error handling a finished job")

    def close(self) -> None:
        """Tell running jobs to give up; do not wait for them."""
        for cancelled in self._cancels:
            cancelled.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watch_fd(self._r, None)
        os.close(self._r)
        os.close(self._w)


class InlineJobs:
    """Each job at once, on the caller's thread: for unit tests, where the
    daemon's thread is the test's own and nothing else would answer."""

    def submit(self, job: Job[T], done: JobDone[T]) -> threading.Event:
        cancelled = threading.Event()
        try:
            result = job(cancelled)
        except BaseException as exc:
            done(None, exc)
        else:
            done(result, None)
        return cancelled

    def close(self) -> None:
        pass


__all__ = ["InlineJobs", "Job", "JobDone", "Jobs", "ThreadJobs"]
