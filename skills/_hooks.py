"""Lifecycle hooks: ``on_start`` before the process says hello, ``on_stop``
once it has drained, and how a hook of either kind (sync or async) is run.

    spawn -> on_start -> Hello ... serve ... Drain -> drained -> on_stop -> exit

``on_start`` is part of the start: the daemon waits for the hello within
``start_timeout_s``, so a slow one (a model to load) needs a start timeout
to match. If it raises, the process never serves: it tells the daemon why
in a ``Bye`` carrying the traceback (the rollout's failed step and event
show it), writes it to stderr, and exits with ``ExitCode.START_FAILED``.

``on_stop`` runs after the last call's Result went out and the daemon was
told ``Drained``: the daemon is waiting for the exit, within the drain
window (``grace_s``) and then ``kill_timeout_s``. If it raises, the
traceback goes to stderr; the exit code stays that of the drain.

Async hooks run on the skill's event loop, the one its async tools use, so
what ``on_start`` opens there (a client session) serves the tools.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

import ipc
from ipc import Bye

from ._env import RuntimeEnv
from ._executors import AsyncWorker
from ._log import log

Hook = Callable[..., Any]
MAX_TRACEBACK_CHARS = 8_000
BYE_LINGER_MS = 2000
_SDK_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(slots=True)
class Hooks:
    """The optional hooks a Skill registered."""

    on_start: Hook | None = None
    on_stop: Hook | None = None
    export_state: Hook | None = None
    import_state: Hook | None = None

    def any_async(self) -> bool:
        return any(
            fn is not None and inspect.iscoroutinefunction(fn)
            for fn in (self.on_start, self.on_stop, self.export_state, self.import_state)
        )


def call_hook(fn: Hook, args: tuple[Any, ...], loop: AsyncWorker | None) -> Any:
    """Run ``fn(*args)`` to its end on this thread, or, for a coroutine
    function, on ``loop`` while this thread waits; raises what it raises."""
    if not inspect.iscoroutinefunction(fn):
        return fn(*args)
    if loop is None:
        raise RuntimeError("an async hook needs the skill's event loop")
    done: concurrent.futures.Future[Any] = concurrent.futures.Future()

    async def run() -> None:
        try:
            done.set_result(await fn(*args))
        except BaseException as exc:
            done.set_exception(exc)

    loop.submit(run())
    return done.result()


def traceback_text(exc: BaseException) -> str:
    """The traceback of what a hook raised, from the author's frames on
    (the SDK's own, which called the hook, only add noise)."""
    tb = exc.__traceback__
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _SDK_DIR:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-(MAX_TRACEBACK_CHARS - 4) :]
    return text


def run_on_start(hooks: Hooks, env: RuntimeEnv, loop: AsyncWorker | None) -> bool:
    """Run ``on_start``; False if it raised (and the daemon was told why)."""
    if hooks.on_start is None:
        return True
    try:
        call_hook(hooks.on_start, (), loop)
    except BaseException as exc:
        text = traceback_text(exc)
        log(f"on_start raised; this process will not serve:\n{text}")
        _say_bye(env, f"on_start raised {type(exc).__name__}: {exc}\n{text}")
        return False
    return True


def run_on_stop(hooks: Hooks, loop: AsyncWorker | None) -> None:
    if hooks.on_stop is None:
        return
    try:
        call_hook(hooks.on_stop, (), loop)
    except BaseException as exc:
        log(f"on_stop raised:\n{traceback_text(exc)}")


def _say_bye(env: RuntimeEnv, reason: str) -> None:
    """Tell the daemon why this process ends before its hello, on a socket
    of its own (the serving one does not exist yet)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.ROUTING_ID, env.instance.encode())
        ipc.configure(sock, max_bytes=env.max_message_bytes)
        sock.connect(env.endpoint)
        ipc.send_frames(sock, ipc.encode(Bye(reason)))
    except zmq.ZMQError as exc:
        print(f"cannot tell the daemon: {exc}", file=sys.stderr)
    finally:
        sock.close(linger=BYE_LINGER_MS)
        ctx.term()


__all__ = ["Hook", "Hooks", "call_hook", "run_on_start", "run_on_stop", "traceback_text"]
