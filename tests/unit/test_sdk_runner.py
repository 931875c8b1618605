"""Running calls and health checks on real threads, without a socket: the
Mailbox is read the way the I/O loop reads it."""

from __future__ import annotations

import asyncio
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ipc
from ipc import Call, HealthCheck, HealthReply, Result
from skills._calls import CallRunner
from skills._executors import AsyncWorker, ThreadWorkers
from skills._health import HealthRunner
from skills._mailbox import Mailbox
from skills._tool import Tool

TIMEOUT_S = 10.0


@pytest.fixture
def loop() -> Iterator[AsyncWorker]:
    worker = AsyncWorker("test-async")
    yield worker
    worker.close()


def wait_readable(box: Mailbox, deadline: float) -> None:
    """Sleep in select() on the mailbox pipe, as the I/O loop does in its poll."""
    if box.may_sleep():
        select.select([box.fd], [], [], max(0.0, deadline - time.monotonic()))
    box.awake()
    box.clear()


def collect_results(box: Mailbox, runner: CallRunner | None, n: int) -> list[Result]:
    deadline = time.monotonic() + TIMEOUT_S
    out: list[Result] = []
    while len(out) < n:
        assert time.monotonic() < deadline, f"got {len(out)} of {n} results"
        if runner is not None:
            runner.start_ready()
        wait_readable(box, deadline)
        while box.results:
            msg = ipc.decode(box.results.popleft())
            assert isinstance(msg, Result)
            out.append(msg)
            if runner is not None:
                runner.finished()
    return out


def make_runner(
    box: Mailbox, loop: AsyncWorker | None, *fns: Callable[..., Any], concurrency: int = 4
) -> CallRunner:
    return CallRunner(
        "test",
        {t.name: t for t in (Tool(f) for f in fns)},
        concurrency=concurrency,
        max_bytes=1 << 20,
        mailbox=box,
        threads=ThreadWorkers(concurrency, "test-call"),
        loop=loop,
    )


def call(call_id: int, tool: str, **arguments: Any) -> Call:
    return Call(call_id, tool, 10.0, payload=ipc.encode_payload(arguments))


def test_sync_and_async_calls_answer(mailbox: Mailbox, loop: AsyncWorker) -> None:
    def say(text: str, times: int = 1) -> str:
        return " ".join([text] * times)

    async def later(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    runner = make_runner(mailbox, loop, say, later)
    assert runner.submit(call(1, "say", text="hi", times=2)) is None
    assert runner.submit(call(2, "later", seconds=0.01)) is None
    results = {r.call_id: r for r in collect_results(mailbox, runner, 2)}
    assert ipc.decode_payload(results[1].payload) == "hi hi"
    assert ipc.decode_payload(results[2].payload) == 0.01
    assert runner.in_flight == 0


def test_errors_answer_their_call(mailbox: Mailbox, loop: AsyncWorker) -> None:
    def fail(message: str) -> None:
        raise ValueError(message)

    async def afail() -> None:
        raise KeyError("k")

    runner = make_runner(mailbox, loop, fail, afail)
    runner.submit(call(1, "fail", message="boom"))
    runner.submit(call(2, "afail"))
    runner.submit(call(3, "fail", nope=1))
    results = {r.call_id: r.error for r in collect_results(mailbox, runner, 3)}
    assert results[1] is not None and results[1].type == "RemoteError"
    assert results[1].details["remote_type"] == "ValueError"
    # The traceback starts at the handler: the SDK's own frames are left out.
    assert "skills/_" not in results[1].details["traceback"]
    assert "in fail" in results[1].details["traceback"]
    assert results[2] is not None and results[2].details["remote_type"] == "KeyError"
    assert results[3] is not None and results[3].type == "InvalidArguments"


def test_unknown_tool_is_answered_at_once(mailbox: Mailbox) -> None:
    def ping() -> str:
        return "pong"

    runner = make_runner(mailbox, None, ping)
    frames = runner.submit(call(5, "nope"))
    assert frames is not None
    result = ipc.decode(frames)
    assert isinstance(result, Result) and result.error is not None
    assert result.error.type == "ToolNotFound" and "'nope'" in result.error.message
    assert runner.in_flight == 0


def test_at_most_concurrency_calls_run_and_extra_ones_queue(mailbox: Mailbox) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0
    release = threading.Event()

    def block(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(TIMEOUT_S)
        with lock:
            running -= 1
        return i

    runner = make_runner(mailbox, None, block, concurrency=2)
    for i in range(5):  # more than the credit the daemon would give
        assert runner.submit(call(i, "block", i=i)) is None
    assert runner.in_flight == 5
    runner.start_ready()
    deadline = time.monotonic() + TIMEOUT_S
    while running < 2:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)  # give a third call the chance to start, were the limit broken
    release.set()
    results = collect_results(mailbox, runner, 5)
    assert sorted(ipc.decode_payload(r.payload) for r in results) == [0, 1, 2, 3, 4]
    assert peak == 2 and runner.in_flight == 0


def test_draining_refuses_new_calls_and_finishes_accepted_ones(mailbox: Mailbox) -> None:
    release = threading.Event()

    def block() -> str:
        release.wait(TIMEOUT_S)
        return "done"

    runner = make_runner(mailbox, None, block, concurrency=1)
    runner.submit(call(1, "block"))
    runner.submit(call(2, "block"))  # queued before the drain: still runs
    runner.drain()
    refused = runner.submit(call(3, "block"))
    assert refused is not None
    error = ipc.decode(refused)
    assert isinstance(error, Result) and error.error is not None
    assert error.error.type == "SkillUnavailable" and "draining" in error.error.message
    release.set()
    assert {r.call_id for r in collect_results(mailbox, runner, 2)} == {1, 2}
    assert runner.in_flight == 0


# --- health ---------------------------------------------------------------------


def collect_health(box: Mailbox, health: HealthRunner, n: int = 1) -> list[HealthReply]:
    """Replies as the loop would send them: settled ones and expired checks."""
    deadline = time.monotonic() + TIMEOUT_S
    out: list[HealthReply] = []
    while True:
        out.extend(health.expire(time.monotonic()))
        while box.health:
            reply = box.health.popleft()
            if health.settle(reply):
                out.append(reply)
        if len(out) >= n:
            return out
        assert time.monotonic() < deadline, "no health reply in time"
        next_deadline = health.next_deadline
        wait_readable(box, deadline if next_deadline is None else min(deadline, next_deadline))


def health_runner(box: Mailbox, hook: Any, loop: AsyncWorker | None = None) -> HealthRunner:
    return HealthRunner(hook, mailbox=box, threads=ThreadWorkers(1, "test-health"), loop=loop)


def test_no_hook_is_healthy(mailbox: Mailbox) -> None:
    reply = HealthRunner(None, mailbox=mailbox, threads=None, loop=None).check(
        HealthCheck(1, 1.0), time.monotonic()
    )
    assert reply is not None and reply.ok


@pytest.mark.parametrize(
    ("hook", "ok", "detail"),
    [
        (lambda: True, True, ""),
        (lambda: False, False, "returned False"),
        (lambda: None, False, "returned None"),
        (lambda: 1 / 0, False, "raised ZeroDivisionError: division by zero"),
    ],
)
def test_sync_hook_outcomes(mailbox: Mailbox, hook: Any, ok: bool, detail: str) -> None:
    health = health_runner(mailbox, hook)
    assert health.check(HealthCheck(3, 5.0), time.monotonic()) is None
    [reply] = collect_health(mailbox, health)
    assert (reply.check_id, reply.ok) == (3, ok)
    assert detail in reply.detail


def test_hung_sync_hook_is_unhealthy_at_the_deadline(mailbox: Mailbox) -> None:
    stuck = threading.Event()
    health = health_runner(mailbox, lambda: stuck.wait(TIMEOUT_S))
    started = time.monotonic()
    health.check(HealthCheck(4, 0.2), started)
    [reply] = collect_health(mailbox, health)
    assert not reply.ok and "did not answer within 0.2s" in reply.detail
    assert time.monotonic() - started < 5
    stuck.set()  # its late answer is dropped
    deadline = time.monotonic() + TIMEOUT_S
    while not mailbox.health:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert not health.settle(mailbox.health.popleft())


def test_async_hook(mailbox: Mailbox, loop: AsyncWorker) -> None:
    async def good() -> bool:
        await asyncio.sleep(0)
        return True

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    health = health_runner(mailbox, good, loop)
    health.check(HealthCheck(1, 5.0), time.monotonic())
    assert collect_health(mailbox, health)[0].ok
    health = health_runner(mailbox, hangs, loop)
    health.check(HealthCheck(2, 0.1), time.monotonic())
    [reply] = collect_health(mailbox, health)
    assert not reply.ok and "within 0.1s" in reply.detail


def test_inline_tool_runs_on_the_io_thread(mailbox: Mailbox) -> None:
    seen: list[threading.Thread] = []

    def quick() -> str:
        seen.append(threading.current_thread())
        return "done"

    def pooled() -> str:
        seen.append(threading.current_thread())
        return "pooled"

    runner = CallRunner(
        "test",
        {"quick": Tool(quick, inline=True), "pooled": Tool(pooled)},
        concurrency=2,
        max_bytes=1 << 20,
        mailbox=mailbox,
        threads=ThreadWorkers(2, "test-call"),
        loop=None,
    )
    assert runner.submit(call(1, "quick")) is None
    runner.start_ready()
    # inline: the Result is waiting before start_ready returns
    assert seen == [threading.current_thread()] and len(mailbox.results) == 1
    first = ipc.decode(mailbox.results.popleft())
    assert isinstance(first, Result) and first.call_id == 1 and first.error is None
    runner.finished()
    assert runner.submit(call(2, "pooled")) is None
    results = collect_results(mailbox, runner, 1)
    assert results[0].call_id == 2 and seen[1] is not threading.current_thread()


def test_inline_is_for_sync_handlers_only() -> None:
    async def later() -> None:
        return None

    with pytest.raises(ValueError, match="inline"):
        Tool(later, inline=True)
