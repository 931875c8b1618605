"""State handoff in an upgrade, the skill process's side.

The daemon asks the old version for its state once it runs no call and
will send none (``ExportState``), and hands that to the new version
(``ImportState``) before the switch; both answer with a ``StateReply``.
The hooks run on a thread of their own, so the I/O loop keeps answering
heartbeats while a large state is encoded; the reply goes out through the
Mailbox's outbox. The daemon keeps the deadline (``handoff_timeout_s``).

Export must not destroy the state: if the new version's import fails, the
old version goes on serving with it.
"""

from __future__ import annotations

import inspect
from typing import Any

import ipc
from ipc import ExportState, ImportState, Message, PayloadError, StateReply, WireError

from ._executors import AsyncWorker, ThreadWorkers
from ._hooks import Hooks, call_hook, traceback_text
from ._mailbox import Mailbox


class StateRunner:
    def __init__(
        self, hooks: Hooks, *, mailbox: Mailbox, loop: AsyncWorker | None, max_bytes: int
    ) -> None:
        self._hooks = hooks
        self._mailbox = mailbox
        self._loop = loop
        self._max_bytes = max_bytes
        self._thread: ThreadWorkers | None = None

    def handle(self, msg: Message) -> bool:
        """Take an ExportState or ImportState (True), or leave ``msg`` be."""
        if isinstance(msg, ExportState):
            request_id = msg.request_id
            self._submit(lambda: self._export(request_id))
        elif isinstance(msg, ImportState):
            imported = msg
            self._submit(lambda: self._import(imported))
        else:
            return False
        return True

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()

    def _submit(self, job: Any) -> None:
        if self._thread is None:
            self._thread = ThreadWorkers(1, "zskill-state")
        self._thread.submit(job)

    def _export(self, request_id: int) -> None:
        fn = self._hooks.export_state
        if fn is None:
            self._reply(request_id, _error("NoStateHook", "this version has no export_state"))
            return
        try:
            payload = ipc.encode_payload(call_hook(fn, (), self._loop))
        except PayloadError as exc:
            err = _error("PayloadError", f"the exported state cannot cross the wire: {exc}")
            self._reply(request_id, err)
            return
        except BaseException as exc:
            self._reply(request_id, _raised("export_state", exc))
            return
        if len(payload) > self._max_bytes - ipc.HEADER_ROOM_BYTES:
            size = len(payload)
            msg = f"the exported state is {size} bytes, over the limit of {self._max_bytes}"
            self._reply(request_id, _error("MessageTooLarge", msg))
            return
        self._reply(request_id, None, payload)

    def _import(self, msg: ImportState) -> None:
        fn = self._hooks.import_state
        if fn is None:
            self._reply(msg.request_id, _error("NoStateHook", "this version has no import_state"))
            return
        try:
            state = ipc.decode_payload(msg.payload)
            args: tuple[Any, ...] = (state,)
            if _takes_two(fn):
                args = (state, msg.from_version)
            call_hook(fn, args, self._loop)
        except BaseException as exc:
            self._reply(msg.request_id, _raised("import_state", exc))
            return
        self._reply(msg.request_id, None)

    def _reply(self, request_id: int, error: WireError | None, payload: bytes = b"") -> None:
        self._mailbox.post_frames(ipc.encode(StateReply(request_id, error, payload)))


def _takes_two(fn: Any) -> bool:
    """``import_state(state, from_version)`` rather than ``import_state(state)``."""
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:
        return False
    return True


def _error(kind: str, message: str) -> WireError:
    return WireError("RemoteError", message, {"remote_type": kind})


def _raised(hook: str, exc: BaseException) -> WireError:
    text = traceback_text(exc)
    return WireError(
        "RemoteError",
        f"{hook} raised {type(exc).__name__}: {exc}"[:2000],
        {"remote_type": type(exc).__name__, "traceback": text},
    )


__all__ = ["StateRunner"]
