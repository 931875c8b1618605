"""Where handlers run: a pool of threads for sync handlers, an asyncio loop in
one background thread for ``async def`` ones.

Neither returns futures: a job posts its own outcome to the Mailbox, so the
hot path allocates no Future, no callback and no lock per call.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at
interpreter exit, so one handler stuck forever (or a health hook that hangs)
would keep the process from exiting after a drain. These threads are daemon
threads, and nothing here waits for them.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

Job = Callable[[], None]


class ThreadWorkers:
    """Up to ``size`` daemon threads taking jobs from one queue.

    Threads are started on demand, when a job arrives and none is idle, so a
    skill configured with a large concurrency but lightly used stays small.
    Jobs beyond ``size`` at once wait in the queue.
    """

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Job) -> None:
        with self._lock:
            # Claim an idle thread now, so that two jobs submitted before it
            # wakes up do not both count on it (the second would wait).
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = len(self._threads) < self._size
        if start:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._jobs.put(job)

    def close(self) -> None:
        """Let idle threads end; busy ones end after their job (never joined)."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        get = self._jobs.get
        lock = self._lock
        while True:
            job = get()
            if job is None:
                return
            job()  # jobs catch their own exceptions and post their outcome
            with lock:
                self._idle += 1


class AsyncWorker:
    """An asyncio event loop running forever in one daemon thread."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        # The loop keeps only weak references to tasks: hold them until done.
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, None]) -> None:
        """Schedule ``coro``, which posts its own outcome."""
        self._loop.call_soon_threadsafe(self._start, coro)

    def close(self, timeout_s: float = 1.0) -> None:
        """Cancel what is still running and stop the loop."""
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout_s)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.wait(tasks, timeout=0.5))
        finally:
            self._loop.close()
