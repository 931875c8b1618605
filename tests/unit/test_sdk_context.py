"""The call context in the SDK: a Context parameter is no argument of the
tool; progress is validated and coalesced (at most one update per call per
interval, in order, the last one before the Result); cancellation reaches a
queued call at once, a sync handler through ctx.cancelled and an async
handler through its task."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from test_sdk_runner import call, collect_results, make_runner

import ipc
from ipc import CallProgress, Cancelled
from skills import Context
from skills._executors import AsyncWorker
from skills._mailbox import Mailbox
from skills._progress import ProgressOut
from skills._tool import Tool


@pytest.fixture
def loop() -> Iterator[AsyncWorker]:
    worker = AsyncWorker("test-async")
    yield worker
    worker.close()


def test_a_context_parameter_is_left_out_of_the_schema() -> None:
    def index(path: str, ctx: Context, depth: int = 1) -> int:
        return depth

    tool = Tool(index)
    assert tool.context_param == "ctx"
    assert set(tool.input_schema["properties"]) == {"path", "depth"}
    assert tool.input_schema["required"] == ["path"]
    assert tool.arguments(ipc.encode_payload({"path": "/"})) == {"path": "/", "depth": 1}
    with pytest.raises(ipc.InvalidArguments, match="unknown argument 'ctx'"):
        tool.arguments(ipc.encode_payload({"path": "/", "ctx": 1}))

    def twice(a: Context, b: Context) -> None: ...

    with pytest.raises(TypeError, match="more than one Context"):
        Tool(twice)


def test_progress_is_checked_and_sent_only_when_asked() -> None:
    posted: list[CallProgress] = []
    out = ProgressOut(lambda: None)
    out.post = lambda ctx, update: posted.append(update)  # type: ignore[method-assign]
    quiet = Context(1, "t")
    quiet.progress(1, 2, "nobody listens")  # no ProgressOut: nothing, no error
    ctx = Context(2, "t", out=out)
    ctx.progress(3, 10, "x" * 5000)
    ctx.progress(4)
    assert [(u.id, u.done, u.total) for u in posted] == [(2, 3.0, 10.0), (2, 4.0, None)]
    assert posted[0].message is not None and len(posted[0].message) == 1000
    for bad in (float("nan"), "3", None):
        with pytest.raises(TypeError, match="done"):
            ctx.progress(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="total"):
        ctx.progress(1, float("inf"))
    with pytest.raises(TypeError, match="message"):
        ctx.progress(1, 2, 3)  # type: ignore[arg-type]


def test_updates_are_coalesced_in_order_and_the_last_kept() -> None:
    wakes: list[int] = []
    out = ProgressOut(lambda: wakes.append(1), interval_s=0.05)
    ctx = Context(7, "t", out=out)
    for i in range(1000):
        ctx.progress(i, 1000)
    assert len(wakes) == 1  # one wake-up for the burst, not one per update
    assert [u.done for u in out.take(10.0)] == [999.0]
    ctx.progress(1000, 1000)
    assert out.take(10.01) == [] and out.next_due == pytest.approx(10.05)
    ctx.progress(1001, 1000)  # replaces the one held back
    assert [u.done for u in out.take(10.05)] == [1001.0]
    ctx.progress(1002, 1000)
    out.finish(ctx)  # the handler returned: its last update goes before its Result
    assert [u.done for u in out.final] == [1002.0]
    assert out.take(20.0) == []
    out.finish(Context(8, "t", out=out))  # nothing waiting: nothing to send


def test_cancel_reaches_queued_sync_and_async_calls(loop: AsyncWorker) -> None:
    box = Mailbox()
    started = threading.Event()

    def grind(ctx: Context) -> str:
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ctx.raise_if_cancelled()
            time.sleep(0.005)
        return "never cancelled"

    async def wait_long(ctx: Context) -> str:
        await asyncio.sleep(10)
        return "never cancelled"

    runner = make_runner(box, loop, grind, wait_long, concurrency=2)
    assert runner.submit(call(1, "grind")) is None
    assert runner.submit(call(2, "wait_long")) is None
    assert runner.submit(call(3, "grind")) is None  # concurrency 2: queued here
    runner.start_ready()
    assert started.wait(5)

    queued = runner.cancel(3, "the caller gave up")
    assert queued is not None
    answer = ipc.decode(queued)
    assert isinstance(answer, ipc.Result) and answer.error is not None
    assert answer.error.type == "Cancelled" and "the caller gave up" in answer.error.message
    assert runner.cancel(3, "again") is None  # answered: nothing more
    assert runner.in_flight == 2

    t0 = time.monotonic()
    assert runner.cancel(1, "stop") is None
    assert runner.cancel(2, "stop") is None
    results = {r.call_id: r for r in collect_results(box, runner, 2)}
    assert time.monotonic() - t0 < 2.0
    for call_id in (1, 2):
        error = results[call_id].error
        assert error is not None and error.type == "Cancelled", error
    assert runner.in_flight == 0
    with pytest.raises(Cancelled):
        ctx = Context(5, "t")
        ctx.cancel("why")
        assert ctx.cancelled
        ctx.raise_if_cancelled()
    box.close()
