"""The clients' side of cancellation, against the fake daemon: Client.cancel
and AsyncClient.cancel send Cancel for a call id; Client.submit runs a call
on a thread of its own and its handle cancels it by the same id; a CallRequest
asks for progress only when the caller takes it."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_for

from ipc import CallRequest, Cancel, ZskillError
from orchestrator import AsyncClient, CallHandle, Client
from orchestrator.testing import NO_REPLY, FakeDaemon, Later


def cancels(daemon: FakeDaemon) -> list[Cancel]:
    return [m for m in daemon.received if isinstance(m, Cancel)]


def test_submit_returns_a_handle_that_cancels_by_call_id() -> None:
    with FakeDaemon() as daemon, Client(daemon.run_dir, timeout=5.0) as zs:
        daemon.tool("batch", "process", lambda args: Later(0.2, {"processed": args["n"]}))
        daemon.tool("batch", "hang", lambda args: NO_REPLY)
        handle = zs.submit("batch", "process", {"n": 3})
        assert isinstance(handle, CallHandle)
        assert handle.result(timeout=5) == {"processed": 3}
        assert handle.done() and handle.detailed().value == {"processed": 3}

        hung = zs.submit("batch", "hang", {}, timeout=0.5)
        wait_for(lambda: len(daemon.received) == 2, 5.0, what="the second call sent")
        (request,) = [m for m in daemon.received[1:] if isinstance(m, CallRequest)]
        assert request.req_id == hung.call_id and not request.progress
        with pytest.raises(TimeoutError):
            hung.result(timeout=0.01)
        hung.cancel("not needed any more")
        wait_for(lambda: cancels(daemon), 5.0, what="the Cancel")
        assert cancels(daemon) == [Cancel(hung.call_id, "not needed any more")]

        zs.cancel(12345)  # an id nobody uses: sent all the same, the daemon ignores it
        wait_for(lambda: len(cancels(daemon)) == 2, 5.0, what="the second Cancel")
        assert cancels(daemon)[-1] == Cancel(12345, "cancelled by the caller")
        with pytest.raises(ZskillError, match="positive integer"):
            zs.cancel(0)


def test_progress_is_asked_for_only_with_a_callback() -> None:
    with FakeDaemon() as daemon, Client(daemon.run_dir, timeout=5.0) as zs:
        daemon.tool("batch", "process", lambda args: "ok")
        assert zs.call("batch", "process", {}, on_progress=lambda p: None) == "ok"
        assert zs.call("batch", "process", {}) == "ok"
        flags = [m.progress for m in daemon.received if isinstance(m, CallRequest)]
        assert flags == [True, False]


def test_a_cancelled_task_cancels_its_call() -> None:
    async def scenario(daemon: FakeDaemon) -> None:
        async with AsyncClient(daemon.run_dir, timeout=5.0) as zs:
            task = asyncio.create_task(zs.call("batch", "hang", {}))
            while not daemon.received:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            while not cancels(daemon):
                await asyncio.sleep(0.01)
            (request,) = [m for m in daemon.received if isinstance(m, CallRequest)]
            assert cancels(daemon) == [Cancel(request.req_id, "the caller stopped waiting")]
            zs.cancel(99, "explicit")
            while len(cancels(daemon)) < 2:
                await asyncio.sleep(0.01)
            assert cancels(daemon)[-1] == Cancel(99, "explicit")

    with FakeDaemon() as daemon:
        daemon.tool("batch", "hang", lambda args: NO_REPLY)
        asyncio.run(scenario(daemon))
