"""The health hook, run on the daemon's request within the daemon's deadline.

The deadline is kept here, by the I/O loop, and not by the hook's thread: a
hook stuck forever in a sync call cannot be interrupted, but its check can
still be answered "not ok" on time. A late answer from such a hook is then
dropped (``settle`` returns False).

Sync hooks run on their own single thread, never on the call pool: a skill
whose every call slot is busy must still be able to say it is healthy.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ipc import HealthCheck, HealthReply

from ._executors import AsyncWorker, ThreadWorkers
from ._mailbox import Mailbox
from ._outcome import remote_type

HealthHook = Callable[[], Any]
DEFAULT_TIMEOUT_S = 5.0
"""Used when a HealthCheck carries no usable timeout."""


class HealthRunner:
    def __init__(
        self,
        hook: HealthHook | None,
        *,
        mailbox: Mailbox,
        threads: ThreadWorkers | None,
        loop: AsyncWorker | None,
    ) -> None:
        self._hook = hook
        self._is_async = hook is not None and inspect.iscoroutinefunction(hook)
        if hook is not None and (loop if self._is_async else threads) is None:
            raise ValueError("the health hook needs an executor of its kind")
        self._mailbox = mailbox
        self._threads = threads
        self._loop = loop
        self._pending: dict[int, tuple[float, float]] = {}  # id -> (deadline, timeout_s)

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a pending check (monotonic), if any."""
        if not self._pending:
            return None
        return min(deadline for deadline, _ in self._pending.values())

    def check(self, check: HealthCheck, now: float) -> HealthReply | None:
        """Start a check; return its reply now if there is no hook to run."""
        if self._hook is None:
            return HealthReply(check.check_id, True, "no health hook")
        timeout_s = check.timeout_s if check.timeout_s > 0 else DEFAULT_TIMEOUT_S
        self._pending[check.check_id] = (now + timeout_s, timeout_s)
        if self._is_async:
            assert self._loop is not None
            self._loop.submit(self._run_async(check.check_id, timeout_s))
        else:
            assert self._threads is not None
            check_id = check.check_id
            self._threads.submit(lambda: self._run_sync(check_id))
        return None

    def settle(self, reply: HealthReply) -> bool:
        """A hook answered: True if its check still waits for the reply."""
        return self._pending.pop(reply.check_id, None) is not None

    def expire(self, now: float) -> list[HealthReply]:
        """Replies for the checks whose deadline has passed."""
        late = [cid for cid, (deadline, _) in self._pending.items() if deadline <= now]
        replies = []
        for check_id in late:
            _, timeout_s = self._pending.pop(check_id)
            replies.append(
                HealthReply(check_id, False, f"health hook did not answer within {timeout_s:g}s")
            )
        return replies

    def _run_sync(self, check_id: int) -> None:
        assert self._hook is not None
        try:
            reply = _reply(check_id, self._hook())
        except BaseException as exc:
            reply = _raised(check_id, exc)
        self._mailbox.post_health(reply)

    async def _run_async(self, check_id: int, timeout_s: float) -> None:
        assert self._hook is not None
        try:
            # wait_for cancels a hung coroutine, so it does not pile up.
            reply = _reply(check_id, await asyncio.wait_for(self._hook(), timeout_s))
        except TimeoutError:
            reply = HealthReply(
                check_id, False, f"health hook did not answer within {timeout_s:g}s"
            )
        except BaseException as exc:
            reply = _raised(check_id, exc)
        self._mailbox.post_health(reply)


def _reply(check_id: int, result: Any) -> HealthReply:
    if result is True:
        return HealthReply(check_id, True, "")
    if result is False:
        return HealthReply(check_id, False, "health hook returned False")
    ok = bool(result)
    return HealthReply(check_id, ok, "" if ok else f"health hook returned {result!r}"[:500])


def _raised(check_id: int, exc: BaseException) -> HealthReply:
    try:
        text = str(exc)
    except Exception:
        text = ""
    detail = f"health hook raised {remote_type(exc)}" + (f": {text}" if text else "")
    return HealthReply(check_id, False, detail[:2000])
