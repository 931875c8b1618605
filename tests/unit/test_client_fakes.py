"""A fake daemon for the client's unit tests: a real ROUTER on a run dir's
ipc:// control socket, served by a thread, answering the way the tests ask.

Calls, by tool name:
    echo      CallReply with the arguments payload as result
    sleep     the same, after ``args["delay_s"]`` (without blocking the others,
              so replies come back out of order)
    raise     CallReply with the error ``args["type"]``, ``args["message"]``
    garbage   junk frames and a reply to an unknown req_id first, then echo
    never     no reply at all

Control operations, by op:
    progress  ``args["steps"]`` Progress messages, then Reply ``{"steps": n}``
    fail      Reply with the error ``args["type"]``, ``args["message"]``
    never     no reply at all
    list, releases, events    Reply ``[{"op", "args"}]``
    anything else             Reply ``{"op", "args"}``

Every message received is kept in ``received``, every routing id in ``peers``.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq

import ipc
from ipc import CallReply, CallRequest, Message, Progress, Reply, Request, WireError
from orchestrator._rundir import RunDir


def short_run_dir() -> Path:
    # ipc:// paths must stay under ~107 bytes: pytest's tmp_path is too long.
    return Path(tempfile.mkdtemp(dir="/tmp", prefix="zs"))


def wire_error(args: dict[str, Any]) -> WireError:
    return WireError(str(args.get("type", "RemoteError")), str(args.get("message", "boom")), {})


class FakeDaemon:
    def __init__(self, run_dir: Path | None = None, *, version: str = "1.0.0") -> None:
        self.run_dir = run_dir or short_run_dir()
        self.endpoints = RunDir(self.run_dir).endpoints
        self.version = version
        self.received: list[Message] = []
        self.peers: set[bytes] = set()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-daemon", daemon=True)
        self._later: list[tuple[float, int, list[bytes]]] = []
        self._seq = itertools.count()
        self.crash: BaseException | None = None  # re-raised by stop(): no silent death

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "zskilld.pid"

    def start(self) -> FakeDaemon:
        self._thread.start()
        assert self._bound.wait(5), "fake daemon did not bind"
        self.pid_file.write_text(f"{os.getpid()}\n")
        return self

    def stop(self) -> None:
        """Stop serving and remove the pid file (the socket file goes with the socket)."""
        self._stop.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "fake daemon did not stop"
        self.pid_file.unlink(missing_ok=True)
        if self.crash is not None:
            raise AssertionError("the fake daemon crashed") from self.crash

    def cleanup(self) -> None:
        try:
            if not self._stop.is_set():
                self.stop()
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- the serving thread ------------------------------------------------------

    def _serve(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        ipc.configure(sock)
        sock.bind(self.endpoints.control)
        self._bound.set()
        try:
            while not self._stop.is_set():
                self._send_due(sock)
                wait_ms = 20
                if self._later:
                    wait_ms = max(
                        0, min(wait_ms, int((self._later[0][0] - time.monotonic()) * 1000))
                    )
                if not sock.poll(wait_ms):
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    for out in self._answer(frames[0], frames[1:]):
                        self._send(sock, out)
        except BaseException as exc:
            self.crash = exc
        finally:
            sock.close(linger=0)

    def _send_due(self, sock: zmq.Socket[bytes]) -> None:
        now = time.monotonic()
        while self._later and self._later[0][0] <= now:
            _, _, frames = heapq.heappop(self._later)
            self._send(sock, frames)

    @staticmethod
    def _send(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        # EHOSTUNREACH (ROUTER_MANDATORY): that client has gone; drop the answer.
        with contextlib.suppress(zmq.ZMQError):
            sock.send_multipart(frames)

    def _later_send(self, delay_s: float, frames: list[bytes]) -> None:
        heapq.heappush(self._later, (time.monotonic() + delay_s, next(self._seq), frames))

    def _answer(self, peer: bytes, frames: list[bytes]) -> list[list[bytes]]:
        msg = ipc.decode(frames)
        self.received.append(msg)
        self.peers.add(peer)
        if isinstance(msg, CallRequest):
            return [[peer, *f] for f in self._call(peer, msg)]
        if isinstance(msg, Request):
            return [[peer, *f] for f in self._control(msg)]
        raise AssertionError(f"the client sent a {type(msg).__name__}")

    def _call(self, peer: bytes, msg: CallRequest) -> list[list[bytes]]:
        args = ipc.decode_payload(msg.payload)
        echo = ipc.encode(CallReply(msg.req_id, self.version, None, payload=msg.payload))
        if msg.tool == "echo":
            return [echo]
        if msg.tool == "sleep":
            self._later_send(float(args["delay_s"]), [peer, *echo])
            return []
        if msg.tool == "raise":
            return [ipc.encode(CallReply(msg.req_id, self.version, wire_error(args)))]
        if msg.tool == "garbage":
            stray = ipc.encode(CallReply(msg.req_id + 10_000, self.version, None))
            return [[b"\xc1not msgpack"], [b"x", b"y", b"z"], stray, echo]
        if msg.tool == "never":
            return []
        raise AssertionError(f"the fake daemon has no tool {msg.tool!r}")

    def _control(self, msg: Request) -> list[list[bytes]]:
        if msg.op == "progress":
            steps = int(msg.args["steps"])
            updates = [ipc.encode(Progress(msg.req_id, {"step": i})) for i in range(steps)]
            return [*updates, ipc.encode(Reply(msg.req_id, {"steps": steps}))]
        if msg.op == "fail":
            return [ipc.encode(Reply(msg.req_id, None, wire_error(msg.args)))]
        if msg.op == "never":
            return []
        body: Any = {"op": msg.op, "args": msg.args}
        if msg.op in ("list", "releases", "events"):
            body = [body]
        return [ipc.encode(Reply(msg.req_id, body))]
