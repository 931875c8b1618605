"""The AsyncClient against the fake daemon (a real ROUTER in a thread)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import zmq
from test_client import scripted, short_run_dir

import ipc
from ipc import (
    CallRequest,
    DaemonUnavailable,
    Event,
    InvalidArguments,
    OutcomeUnknown,
    Request,
    UpgradeFailed,
    ZskillError,
)
from orchestrator._client.aio import AsyncClient
from orchestrator._client.common import LIVENESS_EVERY_S
from orchestrator.testing import FakeDaemon

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]], timeout_s: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(make(), timeout_s)

    return asyncio.run(bounded())


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    d = scripted(FakeDaemon()).start()
    yield d
    d.close()


def test_call_and_call_detailed(daemon: FakeDaemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.run_dir, timeout=5.0) as client:
            assert await client.call("echo", "echo", {"a": 1}) == {"a": 1}
            detailed = await client.call_detailed("echo", "echo", timeout=1.5)
            assert (detailed.value, detailed.version) == ({}, "1.0.0")
            sent = daemon.received[-1]
            assert isinstance(sent, CallRequest) and sent.timeout_s == 1.5

    run(main)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "soon"], ids=repr)
def test_a_timeout_not_positive_and_finite_is_refused_before_sending(
    daemon: FakeDaemon, bad: Any
) -> None:
    """Hardening 9, as for the blocking Client."""

    async def main() -> None:
        async with AsyncClient(daemon.run_dir, timeout=5.0) as client:
            with pytest.raises(InvalidArguments, match="timeout"):
                await client.call("echo", "echo", timeout=bad)
            with pytest.raises(InvalidArguments, match="timeout"):
                await client.request("list", timeout=bad)
            with pytest.raises(InvalidArguments, match="timeout"):
                AsyncClient(daemon.run_dir, timeout=bad)
            assert daemon.received == []
            assert await client.call("echo", "echo", {"a": 1}, timeout=2) == {"a": 1}

    run(main)


def test_many_concurrent_tasks_get_their_own_answers(daemon: FakeDaemon) -> None:
    async def worker(client: AsyncClient, t: int) -> None:
        rnd = random.Random(t)
        for i in range(50):
            if rnd.random() < 0.3:
                delay = rnd.random() * 0.005
                got = await client.call("echo", "sleep", {"t": t, "i": i, "delay_s": delay})
                assert got == {"t": t, "i": i, "delay_s": delay}
            else:
                assert await client.call("echo", "echo", {"t": t, "i": i}) == {"t": t, "i": i}

    async def main() -> None:
        async with AsyncClient(daemon.run_dir) as client:
            await asyncio.gather(*(worker(client, t) for t in range(64)))

    run(main)
    assert len(daemon.peers) == 1


def test_errors_and_client_side_checks(daemon: FakeDaemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.run_dir, max_message_bytes=4096) as client:
            with pytest.raises(OutcomeUnknown, match="gone"):
                await client.call("echo", "raise", {"type": "OutcomeUnknown", "message": "gone"})
            with pytest.raises(UpgradeFailed):
                await client.request("fail", {"type": "UpgradeFailed"})
            with pytest.raises(InvalidArguments):
                await client.call("echo", "echo", 3)  # type: ignore[arg-type]
            with pytest.raises(ipc.MessageTooLarge):
                await client.call("echo", "echo", {"x": "y" * 5000})
            assert await client.call("echo", "garbage", {"ok": True}) == {"ok": True}

    run(main)


def test_timeouts_and_no_daemon(daemon: FakeDaemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.run_dir) as client:
            started = time.monotonic()
            with pytest.raises(DaemonUnavailable, match=r"for never \(req \d+\)"):
                await client.request("never", timeout=0.2)
            assert 0.2 <= time.monotonic() - started < 1.5
            started = time.monotonic()
            with pytest.raises(DaemonUnavailable, match=r"for call echo\.never"):
                await client.call("echo", "never", timeout=0.1)
            assert 2.1 <= time.monotonic() - started < 3.5
        empty = short_run_dir()
        try:
            async with AsyncClient(empty) as client:
                started = time.monotonic()
                with pytest.raises(DaemonUnavailable, match="no zskill daemon is running"):
                    await client.ping()
                assert time.monotonic() - started < 1.0
        finally:
            empty.rmdir()

    run(main)


def test_daemon_dying_mid_wait_is_noticed(daemon: FakeDaemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.run_dir) as client:
            waiting = asyncio.ensure_future(client.request("never"))
            deadline = time.monotonic() + 5
            while not any(isinstance(m, Request) and m.op == "never" for m in daemon.received):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            await asyncio.to_thread(daemon.stop)
            with pytest.raises(DaemonUnavailable, match="no zskill daemon is running"):
                await asyncio.wait_for(waiting, 4.0)

    run(main)


def test_progress_and_control_operations(daemon: FakeDaemon) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.run_dir) as client:
            seen: list[Any] = []
            assert await client.request("progress", {"steps": 3}, on_progress=seen.append) == {
                "steps": 3
            }
            assert seen == [{"step": 0}, {"step": 1}, {"step": 2}]

            def broken(body: Any) -> None:
                raise RuntimeError("callback failed")

            with pytest.raises(RuntimeError, match="callback failed"):
                await client.request("progress", {"steps": 2}, on_progress=broken)
            assert (await client.ping())["op"] == "ping"
            assert await client.list() == [{"op": "list", "args": {}}]
            tools: Any = await client.tools("echo")  # the fake echoes op and args
            assert tools["args"] == {"skill": "echo"}
            for op in ("start", "stop", "restart", "rollback"):
                assert await getattr(client, op)("echo") == {"op": op, "args": {"skill": "echo"}}
            assert (await client.upgrade("echo", "/x"))["args"] == {"skill": "echo", "from": "/x"}
            assert (await client.releases("echo"))[0]["args"] == {"skill": "echo"}
            assert (await client.events("echo", 3))[0]["args"] == {"skill": "echo", "limit": 3}
            await client.shutdown()
            last = daemon.received[-1]
            assert isinstance(last, Request) and (last.op, last.args) == ("shutdown", {})

    run(main)


def test_one_client_across_event_loops_and_close(daemon: FakeDaemon) -> None:
    client = AsyncClient(daemon.run_dir)
    assert run(lambda: client.call("echo", "echo", {"loop": 1})) == {"loop": 1}
    assert run(lambda: client.call("echo", "echo", {"loop": 2})) == {"loop": 2}

    async def close_while_waiting() -> None:
        waiting = asyncio.ensure_future(client.request("never"))
        while not client._pending:
            await asyncio.sleep(0.001)
        await client.aclose()
        with pytest.raises(ZskillError, match="client is closed"):
            await waiting
        with pytest.raises(ZskillError, match="client is closed"):
            await client.call("echo", "echo")
        await client.aclose()

    run(close_while_waiting)


def test_event_stream(daemon: FakeDaemon) -> None:
    pub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    ipc.configure(pub)
    pub.bind(daemon.endpoints.events)
    lock = threading.Lock()  # the PUB socket is used from to_thread workers

    def publish(skill: str, seq: int) -> None:
        with lock:
            event = Event(seq, time.time(), skill, "upgraded", {"to": "2"})
            pub.send_multipart([skill.encode(), *ipc.encode(event)])

    async def main() -> None:
        async with AsyncClient(daemon.run_dir) as client:
            async with client.subscribe("mail") as stream:
                first = None
                while first is None:  # until the subscription reaches the publisher
                    await asyncio.to_thread(publish, "mail", 0)
                    first = await stream.next(timeout=0.02)
                assert (first.skill, first.type) == ("mail", "upgraded")
                while await stream.next(timeout=0.05) is not None:
                    pass
                await asyncio.to_thread(publish, "mailer", 1)
                await asyncio.to_thread(publish, "mail", 2)
                async for event in stream:
                    assert event.seq == 2
                    break
                assert await stream.next(timeout=0.02) is None
            with pytest.raises(ZskillError, match="closed"):
                await stream.next(0)

    async def awaited() -> None:
        # The spelling of when subscribe was a coroutine still gives the stream.
        async with (
            AsyncClient(daemon.run_dir) as client,
            await client.subscribe("mail") as stream,
        ):
            assert await stream.next(timeout=0.01) is None

    try:
        run(main)
        run(awaited)
    finally:
        pub.close(linger=0)


def test_a_connection_dropped_for_an_oversized_reply_recovers(daemon: FakeDaemon) -> None:
    """Hardening 5, as for the blocking Client: the requests sent on the
    connection libzmq dropped fail in seconds, the next ones go out on a new one."""
    daemon.op("tools", lambda args: {"echo": [{"description": "x" * 400_000}]})

    async def main() -> None:
        async with AsyncClient(daemon.run_dir, timeout=30.0, max_message_bytes=64 * 1024) as client:
            assert await client.call("echo", "echo", {"n": 1}) == {"n": 1}
            other = asyncio.ensure_future(client.call("echo", "sleep", {"delay_s": 20.0}))
            deadline = time.monotonic() + 5
            while len(daemon.received) < 2:  # sent on the connection about to be dropped
                assert time.monotonic() < deadline, "the call never reached the fake daemon"
                await asyncio.sleep(0.01)
            started = time.monotonic()
            with pytest.raises(DaemonUnavailable, match="was dropped before req"):
                await client.request("tools")  # no timeout: it waited as long as the daemon lived
            with pytest.raises(DaemonUnavailable, match="was dropped before req"):
                await other
            assert time.monotonic() - started < 2 * LIVENESS_EVERY_S + 1
            assert await client.call("echo", "echo", {"n": 2}) == {"n": 2}
            calls = [client.call("echo", "echo", {"n": i}) for i in range(50)]
            assert await asyncio.gather(*calls) == [{"n": i} for i in range(50)]
            assert len(daemon.peers) == 2

    run(main)
