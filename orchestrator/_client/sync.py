"""The blocking client: calls and control operations from any number of
threads, pipelined on one connection (:mod:`.connection`), and the event
stream.

Never imports asyncio: a threaded program does not pay for it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import zmq

import ipc
from ipc import Message, ZskillError

from . import common
from .common import CALL_REPLY_MARGIN_S, CallResult, ProgressCallback, Records, Target
from .connection import Connection
from .progress import CallHandle, OnProgress, Progress, cancel_message, cancel_on_exit
from .stream import EventStream

if TYPE_CHECKING:
    from .._config import Config

__all__ = ["CallHandle", "CallResult", "Client", "EventStream", "Progress"]


class Client:
    """Talk to the daemon of one run dir from any number of threads.

    ``target`` is a config file (or a loaded Config) whose run dir to use, or
    a run dir. Construction never fails because the daemon is down: the
    socket connects whenever the daemon comes; calls fail fast meanwhile.
    """

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
        self._ctx = zmq.Context.instance()
        self._conn = Connection(self._ctx, self._target)

    @classmethod
    def from_config(
        cls, path: str | Path, *, timeout: float = 60.0, max_message_bytes: int | None = None
    ) -> Client:
        from .._config import load  # pydantic: loaded only for a config to read

        return cls(load(path), timeout=timeout, max_message_bytes=max_message_bytes)

    @classmethod
    def from_run_dir(
        cls, path: str | Path, *, timeout: float = 60.0, max_message_bytes: int | None = None
    ) -> Client:
        return cls(Target.for_run_dir(path, max_message_bytes), timeout=timeout)

    @property
    def run_dir(self) -> Path:
        return self._target.run_dir

    # --- calls -----------------------------------------------------------------

    def call(
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
        """Run ``skill.tool(**args)`` and return its result.

        ``key``: an idempotency key. The daemon runs the tool at most once
        per (skill, key): the same call again gets the first one's result
        (or remote error) without running; while the first still runs, it
        waits for it; if the first's outcome is unknown (its process died
        mid-call), OutcomeUnknown, for ever. The same key with other
        arguments raises KeyConflict. ``traceparent``: a W3C trace context
        for the skill's span; None takes the current OpenTelemetry span's,
        if the caller uses OpenTelemetry. ``on_progress`` is called (in this
        thread) with each :class:`Progress` the handler reports. A call this
        thread gives up on -- KeyboardInterrupt, or an exception from
        ``on_progress`` -- is cancelled on its way out. ``session``: while a
        canary runs (two versions live), every call with the same session
        goes to the version that served its first (the skill sees it in its
        call context); without one, calls are spread by the canary's weight."""
        reply = self._call(
            skill, tool, args, timeout, key, traceparent, on_progress, session=session
        )
        return common.call_value(reply)

    def call_detailed(
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
        """Like :meth:`call`, with the version that served it and the round trip time."""
        started = time.perf_counter()
        reply = self._call(
            skill, tool, args, timeout, key, traceparent, on_progress, session=session
        )
        return common.call_result(reply, time.perf_counter() - started)

    def submit(
        self,
        skill: str,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        key: str | None = None,
        on_progress: OnProgress | None = None,
    ) -> CallHandle:
        """Start a call on a thread of its own and return at once: a
        :class:`CallHandle` to wait for its result or cancel it."""
        req_id = next(self._ids)

        def run() -> CallResult:
            started = time.perf_counter()
            reply = self._call(skill, tool, args, timeout, key, None, on_progress, req_id)
            return common.call_result(reply, time.perf_counter() - started)

        return CallHandle(req_id, run, self.cancel)

    def cancel(self, call_id: int, reason: str | None = None) -> None:
        """Cancel a call of this client, by the id a :class:`CallHandle` or a
        :class:`Progress` gives: if it is still queued it never runs, if it
        runs its handler is told to stop; its caller gets Cancelled. A call
        already answered (or unknown) is left alone. Returns at once."""
        msg = cancel_message(call_id, reason)
        self._conn.send(ipc.encode(msg))

    def _call(
        self,
        skill: str,
        tool: str,
        args: Mapping[str, Any] | None,
        timeout: float | None,
        key: str | None = None,
        traceparent: str | None = None,
        on_progress: OnProgress | None = None,
        req_id: int | None = None,
        session: str | None = None,
    ) -> Message:
        timeout_s = self._timeout if timeout is None else timeout
        if req_id is None:
            req_id = next(self._ids)
        wants, limit = on_progress is not None, self._target.max_bytes
        frames = common.call_frames(
            req_id, skill, tool, args, timeout_s, limit, key, traceparent, wants, session
        )
        # The daemon answers by timeout_s itself; the margin is for the trip back.
        wait_s = timeout_s + CALL_REPLY_MARGIN_S
        with cancel_on_exit(self.cancel, req_id):
            return self._conn.roundtrip(req_id, frames, wait_s, f"call {skill}.{tool}", on_progress)

    def request(
        self,
        op: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Run a control operation; return its reply's body. Without a timeout,
        wait as long as the daemon lives (an upgrade may drain for grace_s)."""
        timeout = common.check_wait(timeout)
        req_id = next(self._ids)
        frames = common.request_frames(req_id, op, args, self._target.max_bytes)
        return common.reply_body(self._conn.roundtrip(req_id, frames, timeout, op, on_progress))

    # --- control operations ------------------------------------------------------

    def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        return common.expect_dict(self.request("ping", timeout=timeout), "ping")

    def list(self) -> Records:
        return common.expect_list(self.request("list"), "list")

    def tools(self, skill: str | None = None) -> dict[str, Records]:
        """The tools of every running skill (or of ``skill``): ``{skill:
        [{"name", "description", "input_schema", "output_schema",
        "idempotent"}]}``, as the serving version announced them."""
        return common.expect_dict(self.request("tools", common.optional_skill_args(skill)), "tools")

    def start(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(self.request("start", common.skill_args(skill)), "start")

    def stop(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(self.request("stop", common.skill_args(skill)), "stop")

    def restart(self, skill: str) -> dict[str, Any]:
        return common.expect_dict(self.request("restart", common.skill_args(skill)), "restart")

    def upgrade(
        self,
        skill: str,
        from_dir: str | Path | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        canary: Mapping[str, Any] | None = None,
        allow_breaking: bool = False,
    ) -> dict[str, Any]:
        """Upgrade ``skill`` live. ``canary``: ``{"weights": [5, 25, 100],
        "step_s": 30, "max_error_rate": 0.02, "max_p99_ratio": 2}`` moves
        calls over step by step; ``allow_breaking``: upgrade even when the
        new tools break callers of the old ones."""
        args = common.upgrade_args(
            skill, from_dir, canary=dict(canary or {}), allow_breaking=allow_breaking
        )
        return common.expect_dict(self.request("upgrade", args, on_progress=on_progress), "upgrade")

    def rollback(
        self, skill: str, *, on_progress: ProgressCallback | None = None, to: int | None = None
    ) -> dict[str, Any]:
        """Back to the previous release, or to release ``to``."""
        args: dict[str, Any] = {**common.skill_args(skill), **({} if to is None else {"to": to})}
        return common.expect_dict(
            self.request("rollback", args, on_progress=on_progress), "rollback"
        )

    def scale(self, skill: str, instances: int) -> dict[str, Any]:
        """Run ``instances`` processes of ``skill``; answered once they serve."""
        args = {**common.skill_args(skill), "instances": instances}
        return common.expect_dict(self.request("scale", args), "scale")

    def rollout(self, skill: str, action: str | None = None) -> dict[str, Any] | None:
        """The rollout of ``skill`` in progress (None: none); ``action``
        (pause, resume, promote, abort) steers its canary."""
        args = {**common.skill_args(skill), **({} if action is None else {"action": action})}
        body = self.request("rollout", args)
        return None if body is None else common.expect_dict(body, "rollout")

    def releases(self, skill: str) -> Records:
        return common.expect_list(self.request("releases", common.skill_args(skill)), "releases")

    def events(self, skill: str | None = None, limit: int = 100) -> Records:
        return common.expect_list(
            self.request("events", common.events_args(skill, limit)), "events"
        )

    def reload(self, *, on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Have the daemon read its config file again and apply the difference
        (new skills start, removed ones stop, changed ones restart). Returns
        each skill's outcome once all are done; ``on_progress`` gets each as
        it comes. ConfigError when the file is not good: nothing changed."""
        return common.expect_dict(self.request("reload", on_progress=on_progress), "reload")

    def shutdown(self) -> None:
        self.request("shutdown")

    def subscribe(self, skill: str | None = None) -> EventStream:
        """Live events of ``skill`` (or of every skill) from now on."""
        if self._conn.closed:
            raise ZskillError("client is closed")
        self._target.check_private()
        return EventStream(self._ctx, self._target.endpoints.events, skill)

    # --- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Fail the calls still waiting and close the connection."""
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
