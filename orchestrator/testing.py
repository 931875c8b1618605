"""A fake zskill daemon for tests of code that uses :class:`~orchestrator.Client`
or :class:`~orchestrator.AsyncClient`: no daemon, no skill processes.

:class:`FakeDaemon` binds a real ZeroMQ ROUTER on a run dir's ipc:// control
socket and answers from a thread of the test process, so the client under
test runs unchanged -- its framing, its timeouts, its error classes. You say
what each tool and control operation answers::

    import pytest
    from orchestrator import Client, SkillUnavailable
    from orchestrator.testing import FakeDaemon

    def test_search_then_mail() -> None:
        with FakeDaemon() as daemon:
            daemon.tool("search", "query", lambda args: {"hits": [args["q"]]})

            @daemon.tool("mail", "send")
            def send(args: dict) -> None:
                raise SkillUnavailable("mail is stopped")

            with Client(daemon.run_dir) as zs:
                assert zs.call("search", "query", {"q": "zmq"}) == {"hits": ["zmq"]}
                with pytest.raises(SkillUnavailable):
                    zs.call("mail", "send", {"to": "me"})
            assert daemon.received[0].tool == "query"

A handler takes the arguments (a dict) and returns the answer:

    a value                 the result (or, for an operation, the reply's body)
    raises ZskillError      that error, rebuilt as its class by the client
    raises anything else    RemoteError naming the type, with the traceback
    an ipc.WireError        that error as it is (a type the client may not know)
    Later(delay_s, answer)  ``answer`` after delay_s, without holding up others:
                            replies then come back out of order
    AfterJunk(answer)       frames that do not decode and a reply to a request
                            nobody made, then ``answer``
    NO_REPLY                nothing at all, so the client's own deadline trips
    (operations) a generator: each value it yields is sent as a Progress,
                            what it returns is the answer

A call to a tool with no handler fails as the daemon's would, SkillNotFound
or ToolNotFound. An operation with no handler is answered with
``{"op": op, "args": args}`` (``[{...}]`` for list, releases and events,
which answer lists), so a test can see what was asked. Handlers run one at
a time on the fake's thread. Every message the fake receives is kept in
``received``, every client's routing id in ``peers``.

Never imports the daemon (``orchestrator._daemon``).
"""

from __future__ import annotations

import builtins
import contextlib
import heapq
import inspect
import itertools
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, overload

import zmq

import ipc
from ipc import (
    CallReply,
    CallRequest,
    Message,
    PayloadError,
    Progress,
    Reply,
    Request,
    SkillNotFound,
    ToolNotFound,
    WireError,
    ZskillError,
)

from ._rundir import RunDir

__all__ = ["NO_REPLY", "AfterJunk", "FakeDaemon", "Handler", "Later"]

Handler = Callable[[dict[str, Any]], Any]
"""Takes a request's arguments, returns its answer (see the module doc)."""

_Frames = list[bytes]
_MakeReply = Callable[[int, Any, WireError | None], _Frames]  # req_id, value, error
_LIST_OPS = frozenset({"list", "releases", "events"})  # the operations that answer lists
_POLL_MS = 20  # how often the serving thread looks at its stop flag


@dataclass(frozen=True, slots=True)
class Later:
    """Answer ``answer`` after ``delay_s`` seconds; other requests are answered meanwhile."""

    delay_s: float
    answer: Any


@dataclass(frozen=True, slots=True)
class AfterJunk:
    """Send undecodable frames and a reply to an unknown request first, then ``answer``."""

    answer: Any


class _NoReply:
    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY: Final = _NoReply()
"""An answer that is never sent."""


class FakeDaemon:
    """A ROUTER on ``run_dir``'s control socket, served by a thread, answering
    with the handlers registered by :meth:`tool` and :meth:`op`.

    Without ``run_dir``, a fresh short directory under /tmp is made, and
    removed by :meth:`close`. ``version`` is the skill version every call
    reply names. A context manager: ``with FakeDaemon() as daemon`` starts it
    and closes it.
    """

    def __init__(self, run_dir: str | Path | None = None, *, version: str = "1.0.0") -> None:
        # ipc:// paths must stay under ~107 bytes: pytest's tmp_path is often too long.
        self._owns_run_dir = run_dir is None
        self._layout = RunDir(
            tempfile.mkdtemp(dir="/tmp", prefix="zs") if run_dir is None else run_dir
        )
        self.run_dir = self._layout.path
        self.endpoints = self._layout.endpoints
        self.version = version
        self.received: list[Message] = []
        self.peers: set[bytes] = set()
        self.crash: BaseException | None = None  # re-raised by stop(): no silent death
        self._tools: dict[tuple[str, str], Handler] = {}
        self._ops: dict[str, Handler] = {}
        self._later: list[tuple[float, int, _Frames]] = []  # (due, seq, frames): a heap
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-zskilld", daemon=True)

    @property
    def pid_file(self) -> Path:
        """Where the clients look for a live daemon: it names this process."""
        return self._layout.pid_file

    # --- what it answers -----------------------------------------------------------

    @overload
    def tool(self, skill: str, tool: str) -> Callable[[Handler], Handler]: ...

    @overload
    def tool(self, skill: str, tool: str, handler: Handler) -> Handler: ...

    def tool(
        self, skill: str, tool: str, handler: Handler | None = None
    ) -> Handler | Callable[[Handler], Handler]:
        """Answer calls of ``skill.tool`` with ``handler``; without one, a decorator."""
        if handler is None:
            return lambda h: self.tool(skill, tool, h)
        self._tools[(skill, tool)] = handler
        return handler

    @overload
    def op(self, name: str) -> Callable[[Handler], Handler]: ...

    @overload
    def op(self, name: str, handler: Handler) -> Handler: ...

    def op(
        self, name: str, handler: Handler | None = None
    ) -> Handler | Callable[[Handler], Handler]:
        """Answer the control operation ``name`` with ``handler``; without one, a decorator."""
        if handler is None:
            return lambda h: self.op(name, h)
        self._ops[name] = handler
        return handler

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> FakeDaemon:
        """Bind and serve; write the pid file that tells clients a daemon is there."""
        sdir = self._layout.socket_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if sdir != self.run_dir:  # a long run dir: the sockets go to a short private dir
            for part in (sdir.parent, sdir):
                part.mkdir(mode=0o700, exist_ok=True)
        self._thread.start()
        if not self._bound.wait(5):
            raise RuntimeError(f"the fake daemon did not bind {self.endpoints.control}")
        if self.crash is not None:
            raise RuntimeError("the fake daemon could not start") from self.crash
        self.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
        return self

    def stop(self) -> None:
        """Stop serving and remove the pid file (the socket file goes with the
        socket); a client then sees no daemon. Re-raises what crashed the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
            if self._thread.is_alive():
                raise RuntimeError("the fake daemon did not stop")
        self.pid_file.unlink(missing_ok=True)
        if self.crash is not None:
            raise AssertionError("the fake daemon crashed") from self.crash

    def close(self) -> None:
        """Stop, and remove the run dir if the fake made it."""
        try:
            self.stop()
        finally:
            if self._owns_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> FakeDaemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the serving thread ----------------------------------------------------------

    def _serve(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        try:
            ipc.configure(sock)
            sock.bind(self.endpoints.control)
            self._bound.set()
            while not self._stop.is_set():
                self._send_due(sock)
                wait_ms = _POLL_MS
                if self._later:
                    due_ms = int((self._later[0][0] - time.monotonic()) * 1000)
                    wait_ms = max(0, min(wait_ms, due_ms))
                if not sock.poll(wait_ms):
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._answer(sock, frames[0], frames[1:])
        except BaseException as exc:
            self.crash = exc
        finally:
            self._bound.set()  # a failed bind must not leave start() waiting
            sock.close(linger=0)

    def _send_due(self, sock: zmq.Socket[bytes]) -> None:
        now = time.monotonic()
        while self._later and self._later[0][0] <= now:
            _, _, frames = heapq.heappop(self._later)
            _send(sock, frames)

    def _out(self, sock: zmq.Socket[bytes], frames: _Frames, delay_s: float) -> None:
        if delay_s <= 0:
            _send(sock, frames)
        else:
            heapq.heappush(self._later, (time.monotonic() + delay_s, next(self._seq), frames))

    def _answer(self, sock: zmq.Socket[bytes], peer: bytes, frames: _Frames) -> None:
        msg = ipc.decode(frames)
        self.received.append(msg)
        self.peers.add(peer)
        if isinstance(msg, CallRequest):
            self._call(sock, peer, msg)
        elif isinstance(msg, Request):
            self._control(sock, peer, msg)
        elif isinstance(msg, ipc.Cancel):
            pass  # kept in received: a test sees what its code cancelled
        else:
            raise AssertionError(f"the client sent a {type(msg).__name__}")

    def _call(self, sock: zmq.Socket[bytes], peer: bytes, msg: CallRequest) -> None:
        handler = self._tools.get((msg.skill, msg.tool))
        answer: Any
        if handler is not None:
            answer = _run(handler, ipc.decode_payload(msg.payload))
        elif any(skill == msg.skill for skill, _ in self._tools):
            answer = ToolNotFound(
                f"skill {msg.skill!r} has no tool {msg.tool!r}", skill=msg.skill, tool=msg.tool
            )
        else:
            answer = SkillNotFound(f"no skill {msg.skill!r}", skill=msg.skill)

        def make(req_id: int, value: Any, error: WireError | None) -> _Frames:
            if error is not None:
                return ipc.encode(CallReply(req_id, self.version, error))
            return ipc.encode(CallReply(req_id, self.version, None, ipc.encode_payload(value)))

        self._reply(sock, peer, msg.req_id, answer, make, 0.0)

    def _control(self, sock: zmq.Socket[bytes], peer: bytes, msg: Request) -> None:
        handler = self._ops.get(msg.op)
        answer: Any
        if handler is not None:
            answer = _run(handler, msg.args)
        else:
            answer = {"op": msg.op, "args": msg.args}
            if msg.op in _LIST_OPS:
                answer = [answer]

        def make(req_id: int, value: Any, error: WireError | None) -> _Frames:
            return ipc.encode(Reply(req_id, value, error))

        self._reply(sock, peer, msg.req_id, answer, make, 0.0)

    def _reply(
        self,
        sock: zmq.Socket[bytes],
        peer: bytes,
        req_id: int,
        answer: Any,
        make: _MakeReply,
        delay_s: float,
    ) -> None:
        """Send ``answer`` to request ``req_id`` as the module doc says, ``delay_s`` from now."""
        if inspect.isgenerator(answer):
            try:
                while True:
                    update = ipc.encode(Progress(req_id, next(answer)))
                    self._out(sock, [peer, *update], delay_s)
            except StopIteration as stop:
                answer = stop.value
            except Exception as exc:
                answer = exc
        if answer is NO_REPLY:
            return
        if isinstance(answer, Later):
            self._reply(sock, peer, req_id, answer.answer, make, delay_s + answer.delay_s)
            return
        if isinstance(answer, AfterJunk):
            stray = make(req_id + 10_000, None, None)
            for junk in ([b"\xc1not msgpack"], [b"x", b"y", b"z"], stray):
                self._out(sock, [peer, *junk], delay_s)
            self._reply(sock, peer, req_id, answer.answer, make, delay_s)
            return
        if isinstance(answer, BaseException):
            frames = make(req_id, None, _wire_error(answer))
        elif isinstance(answer, WireError):
            frames = make(req_id, None, answer)
        else:
            try:
                frames = make(req_id, answer, None)
            except PayloadError as exc:  # as the SDK answers a result msgpack refuses
                frames = make(req_id, None, exc.to_wire())
        self._out(sock, [peer, *frames], delay_s)


def _run(handler: Handler, args: dict[str, Any]) -> Any:
    """What the handler answers: its return value, or the exception it raised."""
    try:
        return handler(args)
    except Exception as exc:
        return exc


def _send(sock: zmq.Socket[bytes], frames: _Frames) -> None:
    # EHOSTUNREACH (ROUTER_MANDATORY): that client has gone; drop the answer.
    with contextlib.suppress(zmq.ZMQError):
        sock.send_multipart(frames)


def _wire_error(exc: BaseException) -> WireError:
    """The wire form of an exception, as the skill SDK sends a handler's."""
    if isinstance(exc, ZskillError):
        error = exc.to_wire()
        # A subclass of the test's own is unknown to the client: name the
        # nearest class of ipc's tree, which it rebuilds.
        nearest = next(c for c in type(exc).__mro__ if c.__module__ == ZskillError.__module__)
        error.type = nearest.__name__
        return error
    cls = type(exc)
    remote_type = cls.__qualname__
    if cls.__module__ != builtins.__name__:
        remote_type = f"{cls.__module__}.{remote_type}"
    text = "".join(traceback.format_exception(exc))
    return WireError(
        "RemoteError", str(exc) or cls.__name__, {"remote_type": remote_type, "traceback": text}
    )
