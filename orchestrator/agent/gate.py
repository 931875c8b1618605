"""The step boundary where a retiring loop stops.

A loop upgrade starts the new version beside the old one; the old one must
take no new task and leave its running tasks where a checkpoint ends, so the
new version resumes them without repeating anything. Every checkpointed step
(model request, tool call) runs inside ``step()``: once
``retire()`` is called, no step starts in this process any more. The worker
then exits when no step is running, and the tasks, left after their last
completed step, are resumed by a live worker (``executors``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["retire", "retiring", "running", "step"]

_retiring = threading.Event()
_lock = threading.Lock()
_running = 0


def retire() -> None:
    _retiring.set()


def retiring() -> bool:
    return _retiring.is_set()


def running() -> int:
    """Steps started and not finished in this process."""
    return _running


@asynccontextmanager
async def step() -> AsyncIterator[None]:
    """Around one checkpointed step: it starts only while this loop is not
    retiring (after that, never: the process exits under it)."""
    global _running
    while True:
        with _lock:
            if not _retiring.is_set():
                _running += 1
                break
        await asyncio.sleep(3600)
    try:
        yield
    finally:
        with _lock:
            _running -= 1
