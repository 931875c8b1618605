"""Where sync handlers run: on the pool until they prove fast, then on the I/O
loop's thread; and the InlineGuard taking the loop over from a run that blocks.
Real threads, no socket (the process-level takeover is in test_sdk_process)."""

from __future__ import annotations

import threading
import time

from helpers import wait_for
from test_sdk_runner import call, collect_results

import ipc
from ipc import Result
from skills._calls import CallRunner
from skills._executors import ThreadWorkers
from skills._inline import FAST_S, INLINE_AFTER, TAKEOVER_PENALTY, Deposed, InlineGuard
from skills._mailbox import Mailbox
from skills._tool import Tool

TIMEOUT_S = 10.0


def test_a_sync_tool_moves_to_the_io_thread_once_fast_and_back_when_slow(
    mailbox: Mailbox,
) -> None:
    seen: list[threading.Thread] = []

    def work(us: float) -> None:
        seen.append(threading.current_thread())
        end = time.perf_counter() + us / 1e6
        while time.perf_counter() < end:
            pass

    tool = Tool(work)
    runner = CallRunner(
        "test",
        {"work": tool},
        concurrency=2,
        max_bytes=1 << 20,
        mailbox=mailbox,
        threads=ThreadWorkers(2, "test-call"),
        loop=None,
    )
    me = threading.current_thread()

    def one(call_id: int, us: float) -> threading.Thread:
        assert runner.submit(call(call_id, "work", us=us)) is None
        [result] = collect_results(mailbox, runner, 1)
        assert isinstance(result, Result) and result.error is None
        return seen[-1]

    call_id = 0
    # Fast runs on the pool until INLINE_AFTER of them in a row. (A run slowed
    # down by the machine starts the streak again; the loop allows for that.)
    while tool.fast_runs < INLINE_AFTER:
        call_id += 1
        assert one(call_id, 0) is not me
        assert call_id < 50 * INLINE_AFTER, "fast runs never counted"
    # Proved fast: runs right here, the thread that reads the socket.
    assert one(call_id + 1, 0) is me
    # A slow run (still inline: nobody knew) sends the tool back to the pool.
    assert one(call_id + 2, FAST_S * 1e6 * 20) is me
    assert tool.fast_runs == 0
    assert one(call_id + 3, 0) is not me


def test_the_guard_takes_the_loop_over_from_a_blocked_run() -> None:
    took_over = threading.Event()
    by: list[threading.Thread] = []

    def take_over() -> None:
        by.append(threading.current_thread())
        took_over.set()

    guard = InlineGuard(take_over, tick_s=0.002)
    try:
        # A run that ends quickly is left alone.
        quick = guard.begin("t")
        assert guard.end(quick) is False
        # One that blocks is taken over, on another thread, and learns so at its end.
        blocked = guard.begin("t")
        assert took_over.wait(TIMEOUT_S)
        assert by == [by[0]] and by[0] is not threading.current_thread()
        assert guard.end(blocked) is True
        assert guard.takeovers == 1
        # The new holder of the loop gets a standby of its own.
        took_over.clear()
        again = guard.begin("t")
        assert took_over.wait(TIMEOUT_S)
        assert guard.end(again) is True and guard.takeovers == 2
    finally:
        guard.close()


def test_the_standby_parks_when_idle_and_wakes_for_the_next_run() -> None:
    took_over = threading.Event()
    guard = InlineGuard(took_over.set, tick_s=0.01)
    try:
        assert guard.end(guard.begin("t")) is False
        wait_for(lambda: guard.parked, interval=0.005, what="the standby to park")
        run = guard.begin("t")  # wakes it
        assert took_over.wait(TIMEOUT_S)
        assert guard.end(run) is True
    finally:
        guard.close()


def test_a_deposed_run_leaves_the_loop_and_its_tool_waits_longer(mailbox: Mailbox) -> None:
    release = threading.Event()
    took_over = threading.Event()

    def blocks() -> str:
        release.wait(TIMEOUT_S)
        return "late"

    def quick() -> str:
        return "quick"

    guard = InlineGuard(took_over.set, tick_s=0.002)
    blocking = Tool(blocks)
    blocking.fast_runs = INLINE_AFTER  # proved fast before: runs inline
    runner = CallRunner(
        "test",
        {"blocks": blocking, "quick": Tool(quick)},
        concurrency=4,
        max_bytes=1 << 20,
        mailbox=mailbox,
        threads=ThreadWorkers(4, "test-call"),
        loop=None,
        guard=guard,
    )
    try:
        # A pool call waits to be started at the end of the loop's turn...
        assert runner.submit(call(2, "quick")) is None
        errors: list[BaseException] = []

        def loop_turn() -> None:
            try:  # ...when an inline call arrives, runs at once, and blocks.
                runner.submit(call(1, "blocks"))
            except BaseException as exc:
                errors.append(exc)

        turn = threading.Thread(target=loop_turn)
        turn.start()
        assert took_over.wait(TIMEOUT_S)
        release.set()
        turn.join(TIMEOUT_S)
        assert len(errors) == 1 and isinstance(errors[0], Deposed)
        # Its Result was posted like a pool worker's; the pool call is left
        # for the loop's new holder to start.
        first = ipc.decode(mailbox.results.popleft())
        assert isinstance(first, Result) and first.call_id == 1
        assert blocking.fast_runs == 0
        assert blocking.inline_after == INLINE_AFTER * TAKEOVER_PENALTY
        runner.finished()
        [second] = collect_results(mailbox, runner, 1)
        assert second.call_id == 2 and ipc.decode_payload(second.payload) == "quick"
    finally:
        release.set()
        guard.close()


def test_a_run_deposed_before_another_is_still_deposed_when_it_ends() -> None:
    took_over = threading.Event()
    guard = InlineGuard(took_over.set, tick_s=0.002)
    try:
        first = guard.begin("a")
        assert took_over.wait(TIMEOUT_S)
        took_over.clear()
        # The thread that took over runs a handler inline, and blocks too.
        second = guard.begin("b")
        assert took_over.wait(TIMEOUT_S)
        # The first handler returns only now: its thread must still leave.
        assert guard.end(first) is True
        assert guard.end(second) is True
        third = guard.begin("c")  # the latest holder of the loop
        assert guard.end(third) is False
    finally:
        guard.close()
