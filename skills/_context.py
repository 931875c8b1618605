"""``Context``: what a handler knows of its call, and how it talks back.

A tool parameter annotated ``Context`` is left out of the tool's JSON Schema
and receives the call's context::

    @skill.tool()
    def index(path: str, ctx: Context) -> int:
        files = list_files(path)
        for i, f in enumerate(files):
            ctx.raise_if_cancelled()
            index_one(f)
            ctx.progress(i + 1, len(files), f"indexed {f}")
        return len(files)

``progress`` reaches the caller as it happens when the caller asked for it
(``Client.call(..., on_progress=fn)``, ``zskill call`` on a terminal, an MCP
host's progressToken), and costs next to nothing when nobody did. Updates are
coalesced (see :mod:`skills._progress`): a tight loop sends at most one per
call every 50 ms, and the last one before the result always goes out.

Cancellation: when the caller gives up (its deadline passed, it cancelled the
call), the daemon tells the skill. An ``async def`` handler's task is
cancelled (``asyncio.CancelledError`` at its next ``await``); a sync handler
cannot be interrupted, so it looks at ``ctx.cancelled`` or calls
``ctx.raise_if_cancelled()`` between steps. A handler that ignores it keeps
its slot until it returns; one that ignores it past the skill's
``cancel_grace_s`` gets its process replaced.

The I/O thread sets the cancellation; the handler's thread reads it. Both are
single attribute reads and writes, atomic under the GIL, so no lock is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

from ipc import CallProgress, Cancelled

if TYPE_CHECKING:
    from ._progress import ProgressOut

MAX_MESSAGE_CHARS = 1000
"""A progress message is cut to this many characters (it travels per update)."""


class Context:
    """The call a handler runs for. Made by the SDK; never built by authors
    (except in their unit tests: ``Context(call_id=1)``)."""

    __slots__ = (
        "_cancelled",
        "_loop",
        "_out",
        "_pending",
        "_reason",
        "_sent_at",
        "_task",
        "call_id",
        "deadline",
        "session",
        "tool",
    )

    def __init__(
        self,
        call_id: int = 0,
        tool: str = "",
        deadline: float = math.inf,
        session: str | None = None,
        out: ProgressOut | None = None,
    ) -> None:
        self.call_id = call_id
        """The daemon's id of this call (it names the call in the daemon's
        log and events)."""
        self.tool = tool
        self.deadline = deadline
        """When the caller stops waiting, on the ``time.monotonic()`` clock."""
        self.session = session
        """The caller's session (``Client.call(..., session=...)``), if any."""
        self._out = out  # None: the caller wants no progress
        self._cancelled = False
        self._reason = ""
        # Coalescing state, guarded by the ProgressOut's lock.
        self._pending: CallProgress | None = None
        self._sent_at = -math.inf
        # An async handler's task and loop, to cancel it from the I/O thread.
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = f", cancelled ({self._reason})" if self._cancelled else ""
        return f"Context(call_id={self.call_id}, tool={self.tool!r}{state})"

    @property
    def cancelled(self) -> bool:
        """True once the caller gave up on this call: stop and return (or raise)."""
        return self._cancelled

    @property
    def remaining_s(self) -> float:
        """Seconds until the caller's deadline (negative once it passed)."""
        return self.deadline - time.monotonic()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` if the caller gave up on this call."""
        if self._cancelled:
            raise self.error()

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Tell the caller how far the call got: ``done`` of ``total`` (None:
        unknown), with an optional short ``message``. Cheap to call often."""
        if type(done) not in (int, float) or not math.isfinite(done):
            raise TypeError(f"progress: done must be a finite number, not {done!r}")
        if total is not None and (type(total) not in (int, float) or not math.isfinite(total)):
            raise TypeError(f"progress: total must be a finite number or None, not {total!r}")
        if message is not None:
            if not isinstance(message, str):
                raise TypeError(f"progress: message must be a string or None, not {message!r}")
            message = message[:MAX_MESSAGE_CHARS]
        out = self._out
        if out is None or self._cancelled:
            return  # nobody listens
        out.post(
            self,
            CallProgress(
                self.call_id, float(done), None if total is None else float(total), message
            ),
        )

    # --- the SDK's side -----------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Mark the call cancelled and cancel an async handler's task (called
        on the I/O thread when the daemon sends Cancel)."""
        self._reason = reason or "cancelled"
        self._cancelled = True
        task, loop = self._task, self._loop
        if task is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the process ends
                loop.call_soon_threadsafe(task.cancel)

    def error(self) -> Cancelled:
        """The error a cancelled call is answered with."""
        return Cancelled(
            f"call {self.call_id} to {self.tool!r} was cancelled: {self._reason}",
            call_id=self.call_id,
            reason=self._reason,
        )


__all__ = ["Context"]
