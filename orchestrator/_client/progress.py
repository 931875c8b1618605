"""What a caller sees of a long call while it runs: :class:`Progress`
updates, and a :class:`CallHandle` to wait for it or cancel it.

A call's id on the client side is its request id on the connection (the
``req_id`` of its CallRequest): every ``Progress`` carries it, and
``Client.cancel(call_id)`` / ``AsyncClient.cancel(call_id)`` take it. Only
the client that made a call can cancel it.

    caller                              daemon                      skill
    Client.call(..., on_progress=fn)
      CallRequest(progress=True) ─────► Call(progress=True) ──────► ctx.progress(3, 10)
      fn(Progress(call_id, 3, 10)) ◄─── CallProgress(req_id) ◄───── CallProgress(call_id)
    Client.cancel(call_id) ───────────► Cancel(req_id)
                                        queued: never runs;
                                        running: Cancel(call_id) ──► ctx.cancelled, task.cancel()
      Cancelled ◄───────────────────── CallReply(Cancelled)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import zmq

import ipc
from ipc import CallProgress, Cancel, DaemonUnavailable, ZskillError

if TYPE_CHECKING:
    import asyncio

    from .common import CallResult

DEFAULT_REASON = "cancelled by the caller"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running call got, as its handler reported it."""

    call_id: int
    """The call's id for ``cancel`` (its request id on this client)."""
    done: float
    total: float | None = None
    """None when the handler does not know how much work there is."""
    message: str | None = None

    @property
    def fraction(self) -> float | None:
        """``done / total`` within 0..1; None when the total is unknown."""
        if self.total is None or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))


OnProgress = Callable[[Progress], None]


def progress_of(msg: CallProgress) -> Progress:
    return Progress(msg.id, msg.done, msg.total, msg.message)


def cancel_message(call_id: int, reason: str | None) -> Cancel:
    if type(call_id) is not int or call_id < 1:
        raise ZskillError(f"a call id is a positive integer, not {call_id!r}")
    return Cancel(call_id, reason or DEFAULT_REASON)


@contextlib.contextmanager
def cancel_on_exit(cancel: Callable[[int, str], None], call_id: int) -> Iterator[None]:
    """A caller that leaves before its answer -- KeyboardInterrupt, a
    cancelled task, its on_progress raising -- cancels the call on its way
    out, so the skill stops too. An answer (a ZskillError) needs no cancel."""
    try:
        yield
    except ZskillError:
        raise
    except BaseException:
        with contextlib.suppress(ZskillError):
            cancel(call_id, "the caller stopped waiting")
        raise


def send_cancel(sock: Any, call_id: int, reason: str | None) -> None:
    """Send Cancel on an AsyncClient's socket without awaiting: a NOBLOCK
    send is settled at once (see zmq.asyncio), so a cancelled task, which
    may not await any more, can still send it."""
    frames = ipc.encode(cancel_message(call_id, reason))
    try:
        sent = cast("asyncio.Future[Any]", sock.send_multipart(frames, zmq.NOBLOCK))
    except zmq.ZMQError as exc:  # a closed client's socket
        raise ZskillError(f"cannot send to the daemon: {exc}") from exc
    if sent.done() and sent.exception() is not None:
        raise DaemonUnavailable(f"cannot send to the daemon: {sent.exception()}")


class CallHandle:
    """A call started by ``Client.submit``, running on a thread of its own:
    ``result()`` waits for it, ``cancel()`` gives up on it. ``on_progress``
    runs on that thread."""

    def __init__(
        self, call_id: int, run: Callable[[], CallResult], cancel: Callable[[int, str], None]
    ) -> None:
        self.call_id = call_id
        self._cancel = cancel
        self._finished = threading.Event()
        self._result: CallResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(run,), name=f"zskill-call-{call_id}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"CallHandle(call_id={self.call_id}, done={self.done()})"

    def _run(self, run: Callable[[], CallResult]) -> None:
        try:
            self._result = run()
        except BaseException as exc:  # the caller's to see, in result()
            self._error = exc
        finally:
            self._finished.set()

    def done(self) -> bool:
        return self._finished.is_set()

    def cancel(self, reason: str = DEFAULT_REASON) -> None:
        """Give up on the call: ``result()`` raises Cancelled (unless it was
        answered first). A call still queued never runs; a running one is
        told to stop."""
        if not self.done():
            self._cancel(self.call_id, reason)

    def result(self, timeout: float | None = None) -> Any:
        """The call's value, or its error raised; TimeoutError if ``timeout``
        seconds pass first (the call goes on: cancel it to stop it)."""
        return self.detailed(timeout).value

    def detailed(self, timeout: float | None = None) -> CallResult:
        """As :meth:`result`, with the version that served it and the round trip."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"call {self.call_id} still runs after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


__all__ = ["CallHandle", "OnProgress", "Progress"]
