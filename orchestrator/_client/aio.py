"""The asyncio client: the same operations as :class:`Client`, as coroutines.

One DEALER socket (``zmq.asyncio``), one reader task that routes each reply
to the future of its req_id. Tasks send directly (a ZeroMQ send on a DEALER
never waits unless the queue is full); only receiving goes through the reader.
The reader starts lazily in the running event loop, and again in a new loop
when the old one is gone (``asyncio.run`` twice with one client).

Why this module is long: it mirrors every operation of :class:`Client` as a
coroutine, each a few lines; apart, the halves would be read side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from ipc import DaemonUnavailable, Message, ZskillError

from . import common
from .aio_stream import AsyncEventStream
from .common import (
    CALL_REPLY_MARGIN_S,
    LIVENESS_EVERY_S,
    CallResult,
    Frames,
    ProgressCallback,
    Records,
    Target,
)
from .link import REMOTE_DOWN_S, Link
from .progress import OnProgress, cancel_on_exit, send_cancel
from .waiting import Pending

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["AsyncClient", "AsyncEventStream"]

_log = logging.getLogger(__name__)


class AsyncClient:
    """Talk to the daemon of one run dir from any number of tasks of one event
    loop at a time. ``target`` as for :class:`Client`."""

    def __init__(
        self,
        target: str | Path | Config | Target = "zskill.toml",
        *,
        timeout: float = 60.0,
        max_message_bytes: int | None = None,
        server_key: str | Path | None = None,
        client_key: str | Path | None = None,
    ) -> None:
        self._timeout = common.check_timeout(timeout)
        self._target = Target.resolve(target, max_message_bytes, server_key, client_key)
        self._ids = itertools.count(1)
        self._pending: dict[int, Pending] = {}
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._verified = False  # daemon seen alive since the last failure
        self._ctx = zmq.asyncio.Context.instance()
        self._sock, self._link = self._open()

    @classmethod
    def from_config(
        cls, path: str | Path, *, timeout: float = 60.0, max_message_bytes: int | None = None
    ) -> AsyncClient:
        from .._config import load  # pydantic: loaded only for a config to read

        return cls(load(path), timeout=timeout, max_message_bytes=max_message_bytes)

    @classmethod
    def from_run_dir(
        cls, path: str | Path, *, timeout: float = 60.0, max_message_bytes: int | None = None
    ) -> AsyncClient:
        return cls(Target.for_run_dir(path, max_message_bytes), timeout=timeout)

    @property
    def run_dir(self) -> Path:
        return self._target.run_dir

    # --- calls -----------------------------------------------------------------

    async def call(
        self,
        skill: str,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        traceparent: str | None = None,
        on_progress: OnProgress | None = None,
        session: str | None = None,
    ) -> Any:
        reply = await self._call(skill, tool, args, timeout, key, traceparent, on_progress, session)
        return common.call_value(reply)

    async def call_detailed(
        self,
        skill: str,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        traceparent: str | None = None,
        on_progress: OnProgress | None = None,
        session: str | None = None,
    ) -> CallResult:
        started = time.perf_counter()
        reply = await self._call(skill, tool, args, timeout, key, traceparent, on_progress, session)
        return common.call_result(reply, time.perf_counter() - started)

    def cancel(self, call_id: int, reason: str | None = None) -> None:
        """As ``Client.cancel`` (a task cancelled while it awaits a call cancels it too)."""
        send_cancel(self._sock, call_id, reason)

    async def _call(
        self,
        skill: str,
        tool: str,
        args: Mapping[str, Any] | None,
        timeout: float | None,
        key: str | None,
        traceparent: str | None,
        on_progress: OnProgress | None,
        session: str | None = None,
    ) -> Message:
        timeout_s = self._timeout if timeout is None else timeout
        req_id = next(self._ids)
        wants, limit = on_progress is not None, self._target.max_bytes
        frames = common.call_frames(
            req_id, skill, tool, args, timeout_s, limit, key, traceparent, wants, session
        )
        wait_s = timeout_s + CALL_REPLY_MARGIN_S  # the daemon itself answers by timeout_s
        what = f"call {skill}.{tool}"
        with cancel_on_exit(self.cancel, req_id):
            return await self._roundtrip(req_id, frames, wait_s, what, on_progress)

    async def request(
        self,
        op: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        timeout = common.check_wait(timeout)
        req_id = next(self._ids)
        frames = common.request_frames(req_id, op, args, self._target.max_bytes)
        return common.reply_body(await self._roundtrip(req_id, frames, timeout, op, on_progress))

    # --- control operations ------------------------------------------------------

    async def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        return common.expect_dict(await self.request("ping", timeout=timeout), "ping")

    async def list(self) -> Records:
        return common.expect_list(await self.request("list"), "list")

    async def tools(self, skill: str | None = None) -> dict[str, Records]:
        body = await self.request("tools", common.optional_skill_args(skill))
        return common.expect_dict(body, "tools")

    async def start(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(await self.request("start", common.skill_args(skill)), "start")

    async def stop(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(await self.request("stop", common.skill_args(skill)), "stop")

    async def restart(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(
            await self.request("restart", common.skill_args(skill)), "restart"
        )

    async def upgrade(
        self,
        skill: str,
        from_dir: str | Path | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        args = common.upgrade_args(skill, from_dir)
        body = await self.request("upgrade", args, on_progress=on_progress)
        return common.expect_dict(body, "upgrade")

    async def rollback(
        self, skill: str, *, on_progress: ProgressCallback | None = None
    ) -> dict[str, Any]:
        args = common.skill_args(skill)
        body = await self.request("rollback", args, on_progress=on_progress)
        return common.expect_dict(body, "rollback")

    async def reload(self, *, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """See :meth:`Client.reload <orchestrator.Client.reload>`."""
        body = await self.request("reload", on_progress=on_progress)
        return common.expect_dict(body, "reload")

    async def releases(self, skill: str) -> Records:
        body = await self.request("releases", common.skill_args(skill))
        return common.expect_list(body, "releases")

    async def events(self, skill: str | None = None, limit: int = 100) -> Records:
        body = await self.request("events", common.events_args(skill, limit))
        return common.expect_list(body, "events")

    async def shutdown(self) -> None:
        await self.request("shutdown")

    def subscribe(self, skill: str | None = None) -> AsyncEventStream:
        """Live events of ``skill`` (or all): ``async with client.subscribe()``."""
        if self._closed:
            raise ZskillError("client is closed")
        self._target.check_private()
        return AsyncEventStream(self._ctx, self._target.endpoints.events, skill)

    # --- lifecycle -------------------------------------------------------------

    async def aclose(self) -> None:
        """Fail the requests still waiting, stop the reader, close the socket."""
        if self._closed:
            return
        self._closed = True
        self._fail_pending(ZskillError("client is closed"))
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            if self._loop is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        self._link.close()
        self._sock.close(linger=0)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- requests and the reader task ----------------------------------------------

    async def _roundtrip(
        self,
        req_id: int,
        frames: Frames,
        wait_s: float | None,
        what: str,
        on_progress: ProgressCallback | None,
    ) -> Message:
        if self._closed:
            raise ZskillError("client is closed")
        if not self._verified:
            if not self._target.daemon_alive():
                raise self._target.not_running()
            self._verified = True
        loop = asyncio.get_running_loop()
        self._ensure_reader(loop)
        now = loop.time()
        deadline = None if wait_s is None else now + wait_s
        pending = Pending(req_id, loop.create_future(), on_progress, deadline, what, now)
        self._pending[req_id] = pending
        try:
            try:
                try:
                    await self._sock.send_multipart(frames, zmq.NOBLOCK)
                except zmq.Again:  # nowhere to send: dropped (see .link) and replaced?
                    if not self._link.lost(time.monotonic()):
                        raise
                    self._renew(loop, keep=req_id)
                    await self._sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again as exc:
                raise DaemonUnavailable(
                    f"the daemon at {self.run_dir} is not taking requests (send queue full)"
                ) from exc
            except zmq.ZMQError as exc:
                raise DaemonUnavailable(f"cannot send to the daemon: {exc}") from exc
            # One timer watches the wait (cheaper than asyncio.wait per call).
            pending.timer = loop.call_at(pending.until(), self._watch, pending)
            return await pending.future
        finally:
            self._pending.pop(req_id, None)
            if pending.timer is not None:
                pending.timer.cancel()

    def _watch(self, pending: Pending) -> None:
        """At the end of a wait's slice: fail it at its deadline, or when the
        daemon is gone (checked every few seconds); else look again later."""
        if pending.future.done():
            return
        loop = pending.future.get_loop()
        now = loop.time()
        error: DaemonUnavailable | None = None
        if pending.deadline is not None and now >= pending.deadline:
            error = self._target.no_answer(pending.what, pending.req_id)
        elif now >= pending.next_check:
            pending.next_check = now + LIVENESS_EVERY_S
            mono = time.monotonic()  # the link's clock
            if not self._target.daemon_alive():
                error = self._target.not_running()
            elif self._link.lost(mono):
                self._renew(loop, keep=None)  # fails this request and the others sent
                return
            elif self._target.remote and (down_s := self._link.down_for(mono)) >= REMOTE_DOWN_S:
                error = self._target.unreachable(down_s)
        if error is not None:
            self._verified = False
            pending.future.set_exception(error)
        else:
            pending.timer = loop.call_at(pending.until(), self._watch, pending)

    def _open(self) -> tuple[zmq.asyncio.Socket, Link]:
        sock = self._ctx.socket(zmq.DEALER)
        self._target.setup(sock)
        link = Link(sock, time.monotonic())
        sock.connect(self._target.endpoints.control)
        return sock, link

    def _renew(self, loop: asyncio.AbstractEventLoop, keep: int | None) -> None:
        """Fail what went out on a dropped connection (not ``keep``); use a fresh socket."""
        for req_id, p in list(self._pending.items()):
            if req_id != keep and not p.future.done():
                del self._pending[req_id]
                p.future.set_exception(self._target.dropped(req_id))
        old, reader = self._sock, self._reader
        self._link.close()
        self._sock, self._link = self._open()
        self._reader = None
        if reader is not None and not reader.done():
            reader.cancel()  # its receive on the old socket ends before that closes
            reader.add_done_callback(lambda _: old.close(linger=0))
        else:
            old.close(linger=0)
        self._ensure_reader(loop)

    def _ensure_reader(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reader is not None and not self._reader.done():
            if self._loop is loop:
                return
            assert self._loop is not None
            if self._loop.is_running():
                raise ZskillError("the AsyncClient is in use by another event loop")
            # Its loop stopped without cancelling it; it will never run again.
        self._loop = loop
        self._reader = loop.create_task(self._read(), name="zskill-client-reader")
        self._reader.add_done_callback(self._reader_done)

    async def _read(self) -> None:
        while True:
            self._dispatch(await self._sock.recv_multipart())

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # Without a reader no reply can arrive: fail the waiting, not hang them.
            _log.debug("the client's reader stopped: %r", exc)
            error = DaemonUnavailable(f"cannot read from the daemon's socket: {exc}")
            error.__cause__ = exc  # as `raise ... from exc` would: the waiters raise it
            self._fail_pending(error)

    def _dispatch(self, frames: Frames) -> None:
        msg = common.decode_reply(frames)
        if msg is None:
            return
        req_id = common.reply_id(msg)
        if req_id is None:
            _log.debug("ignoring a %s on the control socket", type(msg).__name__)
            return
        update = isinstance(msg, common.UPDATES)
        pending = self._pending.get(req_id) if update else self._pending.pop(req_id, None)
        if pending is None or pending.future.done():
            _log.debug("ignoring an answer to req %d, which nobody waits for", req_id)
        elif not update:
            pending.future.set_result(msg)
        elif pending.on_progress is not None:
            try:
                pending.on_progress(common.update_body(msg))
            except Exception as exc:  # the caller's callback: its error is the caller's
                self._pending.pop(req_id, None)
                pending.future.set_exception(exc)

    def _fail_pending(self, error: ZskillError) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(error)
