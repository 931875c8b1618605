"""The SDK's runtime in a real skill process, against a fake daemon: a ROUTER
socket in this test speaking the workers protocol. No zskilld involved."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq

import ipc
from ipc import (
    Call,
    Drain,
    Drained,
    HealthCheck,
    HealthReply,
    Heartbeat,
    Hello,
    Message,
    Reject,
    Result,
    Welcome,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "skills" / "examples"
WAIT_S = 15.0


@dataclass
class FakeDaemon:
    """The daemon's end of one skill process."""

    sock: zmq.Socket[bytes]
    endpoint: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    peer: bytes = b""

    def spawn(self, example: str, **env: str) -> None:
        full_env = {
            **os.environ,
            # The repo first, whatever state the venv's editable install is in.
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            ipc.ENV_ENDPOINT: self.endpoint,
            ipc.ENV_INSTANCE: "echo-1",
            ipc.ENV_SKILL: "echo",
            ipc.ENV_SECRET: "s3cret",
            ipc.ENV_CONCURRENCY: "3",
            **env,
        }
        with open(self.workdir / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "main.py"],
                cwd=EXAMPLES / example,
                env=full_env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def stderr(self) -> str:
        return (self.workdir / "stderr.txt").read_text(errors="replace")

    def recv(self, skip_heartbeats: bool = True) -> Message:
        deadline = time.monotonic() + WAIT_S
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            assert remaining_ms > 0 and self.sock.poll(remaining_ms), (
                f"no message from the skill; its stderr:\n{self.stderr()}"
            )
            peer, *frames = self.sock.recv_multipart()
            self.peer = peer
            msg = ipc.decode(frames)
            if not (skip_heartbeats and isinstance(msg, Heartbeat)):
                return msg

    def send(self, msg: Message) -> None:
        self.sock.send_multipart([self.peer, *ipc.encode(msg)])

    def call(self, call_id: int, tool: str, **arguments: Any) -> Result:
        self.send(Call(call_id, tool, 10.0, payload=ipc.encode_payload(arguments)))
        msg = self.recv()
        assert isinstance(msg, Result) and msg.call_id == call_id, msg
        return msg

    def exit_code(self) -> int:
        assert self.proc is not None
        return self.proc.wait(WAIT_S)


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    # Not tmp_path: ipc:// paths must stay under ~107 bytes.
    workdir = Path(tempfile.mkdtemp(dir="/tmp", prefix="zs"))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    ipc.configure(sock)
    endpoint = f"ipc://{workdir}/w.sock"
    sock.bind(endpoint)
    fake = FakeDaemon(sock, endpoint, workdir)
    try:
        yield fake
    finally:
        if fake.proc is not None and fake.proc.poll() is None:
            os.kill(fake.proc.pid, signal.SIGKILL)
            fake.proc.wait(WAIT_S)
        sock.close(linger=0)
        ctx.term()
        shutil.rmtree(workdir, ignore_errors=True)


def handshake(daemon: FakeDaemon, heartbeat_s: float = 0.2, liveness_s: float = 5.0) -> Hello:
    hello = daemon.recv()
    assert isinstance(hello, Hello), hello
    daemon.send(Welcome(ipc.PROTOCOL_VERSION, heartbeat_s, liveness_s))
    return hello


def test_echo_lifecycle(daemon: FakeDaemon) -> None:
    daemon.spawn("echo", ECHO_VERSION="1.2.3")
    assert daemon.proc is not None
    hello = handshake(daemon)
    assert daemon.peer == b"echo-1"
    assert (hello.skill, hello.version, hello.instance) == ("echo", "1.2.3", "echo-1")
    assert (hello.pid, hello.concurrency, hello.secret) == (daemon.proc.pid, 3, "s3cret")
    assert hello.protocol == ipc.PROTOCOL_VERSION and hello.has_health
    tools = {t.name: t for t in hello.tools}
    assert {"say", "ping", "noop", "fail", "unencodable", "big", "env"} <= set(tools)
    assert tools["ping"].idempotent and not tools["say"].idempotent
    assert tools["say"].input_schema["properties"]["times"]["default"] == 1

    result = daemon.call(1, "say", text="hi", times=2)
    assert result.error is None and ipc.decode_payload(result.payload) == "hi hi"
    assert ipc.decode_payload(daemon.call(2, "noop").payload) is None
    failed = daemon.call(3, "fail", message="boom").error
    assert failed is not None and failed.type == "RemoteError" and failed.message == "boom"
    assert failed.details["remote_type"] == "ValueError"
    assert "main.py" in failed.details["traceback"]
    bad = daemon.call(4, "say", times=2).error
    assert bad is not None and bad.type == "InvalidArguments" and "'text'" in bad.message
    unencodable = daemon.call(5, "unencodable").error
    assert unencodable is not None and unencodable.type == "PayloadError"
    assert ipc.decode_payload(daemon.call(6, "env", name=ipc.ENV_SKILL).payload) == "echo"

    daemon.send(HealthCheck(7, 2.0))
    assert daemon.recv() == HealthReply(7, True, "")

    # Garbage from the daemon is logged and ignored, never fatal.
    daemon.sock.send_multipart([daemon.peer, b"\xc1garbage"])
    heartbeat = daemon.recv(skip_heartbeats=False)  # proves the loop is alive and beating
    assert heartbeat == Heartbeat(0)

    daemon.send(Drain())
    assert daemon.recv() == Drained()
    assert daemon.recv() == ipc.Bye("drained")
    assert daemon.exit_code() == 0
    assert "undecodable" in daemon.stderr()


def test_sigterm_drains_a_call_in_flight(daemon: FakeDaemon) -> None:
    daemon.spawn("slow", SLOW_VERSION="1.0.0", **{ipc.ENV_SKILL: "slow"})
    assert daemon.proc is not None
    handshake(daemon)
    daemon.send(Call(1, "sleep", 10.0, payload=ipc.encode_payload({"seconds": 0.5})))
    # The call is running once a heartbeat reports it in flight.
    while daemon.recv(skip_heartbeats=False) != Heartbeat(1):
        pass
    daemon.proc.send_signal(signal.SIGTERM)
    # Draining once a new call is refused (until then, quick calls still run).
    deadline = time.monotonic() + WAIT_S
    call_id = 2
    while True:
        daemon.send(Call(call_id, "sleep", 10.0, payload=ipc.encode_payload({"seconds": 0})))
        answer = daemon.recv()
        assert isinstance(answer, Result) and answer.call_id == call_id, answer
        if answer.error is not None:
            assert answer.error.type == "SkillUnavailable"
            break
        assert time.monotonic() < deadline
        call_id += 1
    finished = daemon.recv()
    assert isinstance(finished, Result) and finished.call_id == 1 and finished.error is None
    assert daemon.recv() == Drained()
    assert daemon.exit_code() == 0
    # The drain is routine: nothing about it on the skill's stderr (its author's).
    assert "draining" not in daemon.stderr()


def test_reject_exits_3(daemon: FakeDaemon) -> None:
    daemon.spawn("echo")
    assert isinstance(daemon.recv(), Hello)
    daemon.send(Reject("wrong secret"))
    assert daemon.exit_code() == 3
    assert "wrong secret" in daemon.stderr()


def test_silent_daemon_means_exit_5(daemon: FakeDaemon) -> None:
    daemon.spawn("clock", **{ipc.ENV_SKILL: "clock"})
    handshake(daemon, heartbeat_s=0.1, liveness_s=0.5)
    started = time.monotonic()
    assert daemon.exit_code() == 5  # we never answer its heartbeats
    assert time.monotonic() - started < 5
    assert "nothing heard from the daemon" in daemon.stderr()


def _answers_in_order(daemon: FakeDaemon, ids: set[int]) -> tuple[list[int], int]:
    """Results for ``ids`` in the order they came, and the heartbeats seen
    between the first and the last of them."""
    order: list[int] = []
    beats = 0
    while len(order) < len(ids):
        msg = daemon.recv(skip_heartbeats=False)
        if isinstance(msg, Heartbeat):
            beats += bool(order)
            continue
        assert isinstance(msg, Result) and msg.call_id in ids and msg.error is None, msg
        order.append(msg.call_id)
    return order, beats


def test_a_handler_blocking_the_io_thread_is_taken_over(daemon: FakeDaemon) -> None:
    daemon.spawn("slow", **{ipc.ENV_SKILL: "slow"})
    handshake(daemon, heartbeat_s=0.05)
    # `stall` runs on the I/O thread (inline=True) and sleeps there. Another
    # thread takes the I/O over: the call behind it is answered at once and
    # heartbeats go on while it sleeps. Twice: the second stall blocks the
    # thread that took over the first time.
    for stall_id, quick_id in ((1, 2), (3, 4)):
        daemon.send(Call(stall_id, "stall", 10.0, payload=ipc.encode_payload({"seconds": 0.5})))
        daemon.send(Call(quick_id, "sleep", 10.0, payload=ipc.encode_payload({"seconds": 0})))
        order, beats = _answers_in_order(daemon, {stall_id, quick_id})
        assert order == [quick_id, stall_id]
        assert beats >= 3, f"{beats} heartbeats while the I/O thread was blocked"
    assert daemon.stderr().count("another thread takes the I/O over") == 2
    daemon.send(Drain())
    assert daemon.recv() == Drained()
    assert daemon.exit_code() == 0


def test_sigterm_reaches_a_skill_whose_io_moved_to_another_thread(daemon: FakeDaemon) -> None:
    daemon.spawn("slow", **{ipc.ENV_SKILL: "slow"})
    handshake(daemon)
    stalled = daemon.call(1, "stall", seconds=0.2)
    assert stalled.error is None
    # The main thread, its handler done, now only waits for the loop's end:
    # the signal handler runs there and the loop on the other thread drains.
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.recv() == Drained()
    assert daemon.exit_code() == 0


def test_a_skill_ends_when_the_daemon_is_gone_though_a_handler_blocks(
    daemon: FakeDaemon,
) -> None:
    daemon.spawn("slow", **{ipc.ENV_SKILL: "slow"})
    handshake(daemon, heartbeat_s=0.1, liveness_s=0.6)
    daemon.send(Call(1, "stall", 10.0, payload=ipc.encode_payload({"seconds": 600})))
    started = time.monotonic()
    # We go silent. The thread that took the I/O over gives up on the daemon
    # and, the main thread being stuck in `stall`, ends the process itself.
    assert daemon.exit_code() == 5
    assert time.monotonic() - started < 10
    assert "a handler still blocks" in daemon.stderr()


def test_a_call_the_skill_cannot_read_is_answered(daemon: FakeDaemon) -> None:
    """A Call dropped unanswered would hold its slot in the daemon for good:
    one too large, or of too many frames, gets an error Result for its id."""
    limit = 64 * 1024
    daemon.spawn("echo", **{ipc.ENV_MAX_MESSAGE_BYTES: str(limit)})
    handshake(daemon)
    too_large = ipc.encode(Call(1, "say", 10.0, payload=ipc.encode_payload({"text": "x" * limit})))
    daemon.sock.send_multipart([daemon.peer, *too_large])
    answer = daemon.recv()
    assert isinstance(answer, Result) and answer.call_id == 1, answer
    assert answer.error is not None and answer.error.type == "MessageTooLarge"
    header, payload = ipc.encode(
        Call(2, "say", 10.0, payload=ipc.encode_payload({"text": "y" * 40_000}))
    )
    daemon.sock.send_multipart([daemon.peer, header, payload, b"extra", b"more"])
    answer = daemon.recv()
    assert isinstance(answer, Result) and answer.call_id == 2, answer
    assert answer.error is not None and answer.error.type == "MessageTooLarge"
    assert "4 frames" in answer.error.message
    result = daemon.call(3, "say", text="still serving")
    assert result.error is None and ipc.decode_payload(result.payload) == "still serving"
