"""The blocking Client against a fake daemon (a real ROUTER in a thread)."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import pytest
import zmq

import ipc
from ipc import (
    CallRequest,
    DaemonUnavailable,
    Event,
    InvalidArguments,
    MessageTooLarge,
    PayloadError,
    RemoteError,
    Request,
    WireError,
    ZskillError,
)
from orchestrator._client.common import LIVENESS_EVERY_S
from orchestrator._client.sync import CallResult, Client
from orchestrator._config import load
from orchestrator.testing import NO_REPLY, AfterJunk, FakeDaemon, Later


def short_run_dir() -> Path:
    # ipc:// paths must stay under ~107 bytes: pytest's tmp_path is too long.
    return Path(tempfile.mkdtemp(dir="/tmp", prefix="zs"))


def named_error(args: dict[str, Any]) -> WireError:
    """The error ``args`` name, sent as it is (``Mystery`` included)."""
    return WireError(str(args.get("type", "RemoteError")), str(args.get("message", "boom")), {})


def steps(args: dict[str, Any]) -> Generator[dict[str, int], None, dict[str, int]]:
    for i in range(int(args["steps"])):
        yield {"step": i}
    return {"steps": int(args["steps"])}


def scripted(daemon: FakeDaemon) -> FakeDaemon:
    """What the client tests call, on skill "echo" (other operations are echoed):

    tools     echo (the arguments), sleep (them, after ``delay_s``), raise
              (the error ``type``, ``message``), garbage (junk, then echo),
              never (no answer)
    ops       progress (``steps`` Progress, then ``{"steps": n}``), fail (as
              raise), never (no answer)
    """
    daemon.tool("echo", "echo", lambda args: args)
    daemon.tool("echo", "sleep", lambda args: Later(float(args["delay_s"]), args))
    daemon.tool("echo", "raise", named_error)
    daemon.tool("echo", "garbage", AfterJunk)
    daemon.tool("echo", "never", lambda args: NO_REPLY)
    daemon.op("progress", steps)
    daemon.op("fail", named_error)
    daemon.op("never", lambda args: NO_REPLY)
    return daemon


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    d = scripted(FakeDaemon()).start()
    yield d
    d.close()


@pytest.fixture
def client(daemon: FakeDaemon) -> Iterator[Client]:
    with Client(daemon.run_dir, timeout=5.0) as c:
        yield c


def run_threads(n: int, target: Callable[[int], None], timeout_s: float = 30.0) -> None:
    """Run target(0..n-1) in threads started together; re-raise the first failure."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(i: int) -> None:
        try:
            barrier.wait(5)
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a caller hangs"
    if errors:
        raise errors[0]


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# --- calls ---------------------------------------------------------------------


def test_call_returns_the_result(client: Client, daemon: FakeDaemon) -> None:
    assert client.call("echo", "echo", {"text": "hi", "n": [1, 2]}) == {"text": "hi", "n": [1, 2]}
    detailed = client.call_detailed("echo", "echo")
    assert detailed == CallResult({}, "1.0.0", detailed.elapsed_s)
    assert 0 < detailed.elapsed_s < 5
    sent = daemon.received[0]
    assert isinstance(sent, CallRequest)
    assert (sent.skill, sent.tool, sent.timeout_s) == ("echo", "echo", 5.0)


BAD_TIMEOUTS = [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), "soon"]


@pytest.mark.parametrize("bad", BAD_TIMEOUTS, ids=repr)
def test_a_timeout_not_positive_and_finite_is_refused_before_sending(
    client: Client, daemon: FakeDaemon, bad: Any
) -> None:
    """Hardening 9: a timeout of 0 (or less) gave up at once and said "no
    daemon", while the daemon ran the call with its 60 s default."""
    with pytest.raises(InvalidArguments, match=r"positive, finite number of seconds|a number"):
        client.call("echo", "echo", timeout=bad)
    with pytest.raises(InvalidArguments, match="timeout"):
        client.request("list", timeout=bad)
    with pytest.raises(InvalidArguments, match="timeout"):
        Client(daemon.run_dir, timeout=bad)
    assert daemon.received == []
    assert client.call("echo", "echo", {"still": "fine"}, timeout=2) == {"still": "fine"}


def test_call_sends_its_own_timeout(client: Client, daemon: FakeDaemon) -> None:
    client.call("echo", "echo", timeout=0.5)
    sent = daemon.received[-1]
    assert isinstance(sent, CallRequest) and sent.timeout_s == 0.5


def test_threads_pipeline_on_one_connection(client: Client, daemon: FakeDaemon) -> None:
    results: dict[int, list[Any]] = {}

    def caller(t: int) -> None:
        results[t] = [client.call("echo", "echo", {"t": t, "i": i}) for i in range(200)]

    run_threads(16, caller)
    for t in range(16):
        assert results[t] == [{"t": t, "i": i} for i in range(200)]
    assert len(daemon.peers) == 1


def test_a_call_is_not_held_behind_a_long_one(client: Client) -> None:
    # The first caller reads alone, first in a blocking receive (see
    # orchestrator._client.connection): the second's request still goes out at once.
    slow = threading.Thread(target=client.call, args=("echo", "sleep", {"delay_s": 2.0}))
    slow.start()
    wait_for(lambda: bool(client._conn._waiters))
    started = time.monotonic()
    assert client.call("echo", "echo", {"quick": True}) == {"quick": True}
    assert time.monotonic() - started < 1.0
    assert slow.is_alive()
    slow.join(10)


def test_out_of_order_replies_reach_their_callers(client: Client) -> None:
    # Caller 0 waits longest, so replies come back in the reverse order.
    got: dict[int, Any] = {}

    def caller(t: int) -> None:
        got[t] = client.call("echo", "sleep", {"t": t, "delay_s": 0.02 * (8 - t)})

    run_threads(8, caller)
    assert got == {t: {"t": t, "delay_s": 0.02 * (8 - t)} for t in range(8)}


def test_mixed_traffic_with_timeouts_and_progress(client: Client) -> None:
    """Readers come and go (some give up at their deadline, some get progress):
    every caller still gets its own answer and none hangs."""

    def caller(t: int) -> None:
        rnd = random.Random(t)
        for i in range(60):
            kind = rnd.randrange(4)
            if kind == 0:
                assert client.call("echo", "echo", {"i": i}) == {"i": i}
            elif kind == 1:
                delay = rnd.random() * 0.004
                assert client.call("echo", "sleep", {"delay_s": delay}) == {"delay_s": delay}
            elif kind == 2:
                with pytest.raises(DaemonUnavailable, match="for never"):
                    client.request("never", timeout=rnd.random() * 0.01)
            else:
                seen: list[Any] = []
                assert client.request("progress", {"steps": 3}, on_progress=seen.append) == {
                    "steps": 3
                }
                assert seen == [{"step": 0}, {"step": 1}, {"step": 2}]

    run_threads(12, caller)
    assert client.call("echo", "echo", {"after": True}) == {"after": True}


def test_frames_that_do_not_decode_are_ignored(client: Client) -> None:
    assert client.call("echo", "garbage", {"x": 1}) == {"x": 1}


# --- errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "SkillNotFound",
        "ToolNotFound",
        "InvalidArguments",
        "RemoteError",
        "CallTimeout",
        "OutcomeUnknown",
        "SkillUnavailable",
    ],
)
def test_call_errors_become_their_class(client: Client, name: str) -> None:
    with pytest.raises(ZskillError) as info:
        client.call("echo", "raise", {"type": name, "message": "it failed"})
    assert type(info.value).__name__ == name
    assert info.value.message == "it failed"


@pytest.mark.parametrize("name", ["BadRequest", "UpgradeInProgress", "UpgradeFailed"])
def test_control_errors_become_their_class(client: Client, name: str) -> None:
    with pytest.raises(ZskillError) as info:
        client.request("fail", {"type": name, "message": "no"})
    assert type(info.value).__name__ == name


def test_unknown_error_type_is_a_zskill_error(client: Client) -> None:
    with pytest.raises(ZskillError) as info:
        client.call("echo", "raise", {"type": "Mystery", "message": "?"})
    assert type(info.value) is ZskillError
    assert info.value.details["type"] == "Mystery"
    with pytest.raises(RemoteError):
        client.call("echo", "raise", {"type": "RemoteError"})


def test_bad_arguments_fail_before_sending(daemon: FakeDaemon) -> None:
    with Client(daemon.run_dir, max_message_bytes=4096) as client:
        with pytest.raises(InvalidArguments, match="mapping"):
            client.call("echo", "echo", ["not", "a", "map"])  # type: ignore[arg-type]
        with pytest.raises(PayloadError):
            client.call("echo", "echo", {"x": object()})
        with pytest.raises(MessageTooLarge):
            client.call("echo", "echo", {"x": "y" * 5000})
        with pytest.raises(MessageTooLarge):
            client.request("start", {"skill": "y" * 5000})
        assert client.call("echo", "echo", {"x": "small"}) == {"x": "small"}
    assert len(daemon.received) == 1


def test_a_reply_that_never_comes_fails_after_timeout_and_margin(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(DaemonUnavailable, match=r"for call echo\.never \(req \d+\)") as info:
        client.call("echo", "never", timeout=0.2)
    elapsed = time.monotonic() - started
    assert 2.2 <= elapsed < 3.5
    assert str(client.run_dir) in info.value.message
    # The late answer is not mixed up with later calls.
    assert client.call("echo", "echo", {"n": 1}) == {"n": 1}


def test_control_request_with_timeout_fails_at_it(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(DaemonUnavailable, match=r"for never \(req \d+\)"):
        client.request("never", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5


def test_no_daemon_fails_fast_and_construction_does_not() -> None:
    run_dir = short_run_dir()
    try:
        client = Client(run_dir)  # nothing listens yet: fine
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="no zskill daemon is running for") as info:
            client.call("echo", "echo")
        with pytest.raises(DaemonUnavailable, match="zskill up"):
            client.list()
        assert time.monotonic() - started < 1.0
        assert str(run_dir) in info.value.message
        client.close()
    finally:
        run_dir.rmdir()


def test_stale_pid_file_counts_as_no_daemon(daemon: FakeDaemon) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    daemon.pid_file.write_text(gone.stdout)
    with Client(daemon.run_dir) as client:
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="no zskill daemon is running"):
            client.ping()
        assert time.monotonic() - started < 1.0


def test_a_daemon_that_comes_later_is_used() -> None:
    run_dir = short_run_dir()
    try:
        with Client(run_dir) as client:
            with pytest.raises(DaemonUnavailable):
                client.ping()
            daemon = FakeDaemon(run_dir).start()
            try:
                assert client.ping()["op"] == "ping"
            finally:
                daemon.close()
    finally:
        shutil.rmtree(run_dir)


def test_a_daemon_that_dies_mid_wait_is_noticed(client: Client, daemon: FakeDaemon) -> None:
    """A control op waits without limit, but not for a daemon that is gone."""
    client.ping()

    def stop_once_asked() -> None:
        wait_for(lambda: any(isinstance(m, Request) and m.op == "never" for m in daemon.received))
        daemon.stop()

    stopper = threading.Thread(target=stop_once_asked)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(DaemonUnavailable, match="no zskill daemon is running"):
        client.request("never")
    assert time.monotonic() - started < 4.0
    stopper.join(5)


@pytest.mark.parametrize("when", ["registered", "in its first wait"])
def test_closing_fails_waiting_calls_and_later_ones(client: Client, when: str) -> None:
    # A lone caller first waits unregistered, in a blocking receive that
    # close() cannot wake (see orchestrator._client.connection); it fails as soon
    # as that wait ends. Later, it waits as a registered waiter.
    failure: list[BaseException] = []

    def waiter() -> None:
        try:
            client.request("never")
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    conn = client._conn
    wait_for(lambda: bool(conn._waiters) if when == "registered" else conn._reading)
    client.close()
    thread.join(5)
    assert not thread.is_alive()
    assert [str(e) for e in failure] == ["client is closed"]
    with pytest.raises(ZskillError, match="client is closed"):
        client.call("echo", "echo")
    with pytest.raises(ZskillError, match="client is closed"):
        client.subscribe()
    client.close()  # twice is fine


def test_closing_under_load_leaves_nobody_waiting(daemon: FakeDaemon) -> None:
    client = Client(daemon.run_dir, timeout=5.0)
    answered = [0] * 8

    def caller(t: int) -> None:
        rnd = random.Random(t)
        try:
            while True:
                delay = rnd.random() * 0.002
                assert client.call("echo", "sleep", {"delay_s": delay}) == {"delay_s": delay}
                answered[t] += 1
        except ZskillError as exc:
            assert str(exc) == "client is closed"

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(answered) >= 200)
    client.close()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "a caller hangs after close"


# --- control operations ------------------------------------------------------------


def test_progress_runs_in_the_callers_thread(client: Client) -> None:
    seen: dict[int, list[tuple[int, Any]]] = {}

    def caller(t: int) -> None:
        me = threading.get_ident()
        got: list[tuple[int, Any]] = []
        for _ in range(10):
            client.request("progress", {"steps": 4}, on_progress=lambda b: got.append((me, b)))
        assert all(ident == threading.get_ident() for ident, _ in got)
        seen[t] = got

    run_threads(6, caller)
    for got in seen.values():
        assert [body for _, body in got] == [{"step": s} for _ in range(10) for s in range(4)]


def test_a_progress_callback_may_call_the_client(client: Client) -> None:
    """The reader steps out while its callbacks run, so a call made from one
    (say, to show the status during an upgrade) does not wait for itself."""

    def caller(t: int) -> None:
        nested: list[Any] = []

        def on_progress(body: Any) -> None:
            nested.append(client.call("echo", "echo", {"t": t, **body}))

        for _ in range(5):
            client.request("progress", {"steps": 2}, on_progress=on_progress)
        assert nested == [{"t": t, "step": s} for _ in range(5) for s in range(2)]

    caller(-1)  # alone: the caller is the reader when its progress comes
    run_threads(6, caller)


def test_control_operations_send_their_arguments(client: Client, daemon: FakeDaemon) -> None:
    assert client.ping()["op"] == "ping"
    assert client.list() == [{"op": "list", "args": {}}]
    tools: Any = client.tools()  # the fake echoes op and args
    assert tools == {"op": "tools", "args": {}}
    tools = client.tools("echo")
    assert tools["args"] == {"skill": "echo"}
    for op in ("start", "stop", "restart", "rollback"):
        assert getattr(client, op)("echo") == {"op": op, "args": {"skill": "echo"}}
    assert client.upgrade("echo")["args"] == {"skill": "echo"}
    upgraded = client.upgrade("echo", "rel/dir")
    assert upgraded["args"] == {"skill": "echo", "from": str(Path("rel/dir").absolute())}
    assert client.releases("echo") == [{"op": "releases", "args": {"skill": "echo"}}]
    assert client.events()[0]["args"] == {"limit": 100}
    assert client.events("echo", limit=5)[0]["args"] == {"skill": "echo", "limit": 5}
    client.shutdown()
    last = daemon.received[-1]
    assert isinstance(last, Request) and (last.op, last.args) == ("shutdown", {})
    with pytest.raises(InvalidArguments):
        client.request("start", "echo")  # type: ignore[arg-type]


def test_target_is_a_config_file_a_config_or_a_run_dir(tmp_path: Path) -> None:
    config = tmp_path / "zskill.toml"
    config.write_text('[daemon]\nrun_dir = "state"\nmax_message_bytes = 5000\n')
    for client in (Client(config), Client.from_config(config), Client(load(config))):
        with client:
            assert client.run_dir == tmp_path / "state"
            with pytest.raises(MessageTooLarge):  # the config's limit applies
                client.call("s", "t", {"x": "y" * 6000})
    with Client(tmp_path) as client:
        assert client.run_dir == tmp_path
    with Client.from_run_dir(tmp_path / "not-yet") as client:
        assert client.run_dir == tmp_path / "not-yet"
    with pytest.raises(ipc.ConfigError):
        Client(tmp_path / "missing.toml")


# --- events ------------------------------------------------------------------------


def test_event_stream_delivers_its_skills_events(daemon: FakeDaemon) -> None:
    pub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    ipc.configure(pub)
    pub.bind(daemon.endpoints.events)

    def publish(skill: str, seq: int) -> None:
        event = Event(seq, time.time(), skill, "started", {"pid": 1})
        pub.send_multipart([skill.encode(), *ipc.encode(event)])

    try:
        with Client(daemon.run_dir) as client, client.subscribe("echo") as stream:
            # A subscription takes a moment to reach the publisher: publish until heard.
            deadline = time.monotonic() + 5
            first = None
            while first is None:
                assert time.monotonic() < deadline, "no event arrived"
                publish("echo", 0)
                first = stream.next(timeout=0.02)
            assert (first.skill, first.type, first.data) == ("echo", "started", {"pid": 1})
            while stream.next(timeout=0.05) is not None:  # the extra copies
                pass
            publish("echo2", 1)  # same prefix, other skill: filtered out
            pub.send_multipart([b"echo", b"\xc1junk"])
            publish("echo", 2)
            assert next(iter(stream)).seq == 2
            assert stream.next(timeout=0.05) is None
        with pytest.raises(ZskillError, match="closed"):
            stream.next(0)
        assert list(stream) == []
    finally:
        pub.close(linger=0)


def test_a_connection_dropped_for_an_oversized_reply_recovers(daemon: FakeDaemon) -> None:
    """Hardening 5: a reply over the client's limit makes libzmq drop the
    connection for good. The request waiting on it, and any other sent on
    it, got no answer ever (tools() hung), and every later send failed with
    'send queue full'. Now they fail in seconds, and the client reconnects."""
    daemon.op("tools", lambda args: {"echo": [{"description": "x" * 400_000}]})
    with (
        Client(daemon.run_dir, timeout=30.0, max_message_bytes=64 * 1024) as c,
        ThreadPool(1) as pool,
    ):
        assert c.call("echo", "echo", {"n": 1}) == {"n": 1}
        other = pool.apply_async(c.call, ("echo", "sleep", {"delay_s": 20.0}))
        wait_for(lambda: len(daemon.received) == 2)
        started = time.monotonic()
        with pytest.raises(DaemonUnavailable, match="was dropped before req"):
            c.request("tools")  # no timeout: only the daemon's death ended this wait
        with pytest.raises(DaemonUnavailable, match="was dropped before req"):
            other.get(timeout=10)
        assert time.monotonic() - started < 2 * LIVENESS_EVERY_S + 1
        # The next request goes out on a fresh connection.
        assert c.call("echo", "echo", {"n": 2}) == {"n": 2}
        assert [c.call("echo", "echo", {"n": i}) for i in range(50)] == [
            {"n": i} for i in range(50)
        ]
        assert len(daemon.peers) == 2


def test_a_send_that_finds_the_connection_dropped_reconnects(daemon: FakeDaemon) -> None:
    """Hardening 5: a request that timed out before the drop was seen left
    the client with a socket that refused every send ('send queue full')."""
    daemon.op("tools", lambda args: {"echo": [{"description": "x" * 400_000}]})
    with Client(daemon.run_dir, timeout=30.0, max_message_bytes=64 * 1024) as c:
        with pytest.raises(DaemonUnavailable, match="no answer"):
            c.request("tools", timeout=0.3)  # gives up before a liveness check
        wait_for(lambda: len(daemon.received) == 1)
        for i in range(20):
            assert c.call("echo", "echo", {"n": i}) == {"n": i}
        assert len(daemon.peers) == 2


def test_clients_opened_and_closed_leave_nothing_behind(daemon: FakeDaemon) -> None:
    """Every Client's socket is watched by a monitor; one left running when
    its socket closed was never reaped: three file descriptors per Client,
    and after some 340 of them no socket could be made at all."""
    import os

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    Client(daemon.run_dir).close()
    before = open_fds()
    for _ in range(400):
        Client(daemon.run_dir, timeout=5).close()
    wait_for(lambda: open_fds() <= before + 10)
    with Client(daemon.run_dir, timeout=5) as c:
        assert c.call("echo", "echo", {"n": 1}) == {"n": 1}
