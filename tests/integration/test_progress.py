"""Progress and cancellation with a real daemon and the `batch` example skill:
updates reach the caller in order; a cancelled queued call never runs; a
cancelled sync or async handler stops within a second; Ctrl-C on `zskill
call` stops the remote work; handlers that ignore their cancel get their
process replaced and the skill serves again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Daemon, example, running_daemon, wait_for

from orchestrator import AsyncClient, CallTimeout, Cancelled, Progress


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def batch(**overrides: Any) -> dict[str, dict[str, Any]]:
    return {"batch": example("batch", **overrides)}


def ended_within(log: Path, seconds: float, since: float) -> float:
    """The handler wrote "end" (it returned) within ``seconds`` of ``since``."""
    wait_for(lambda: "end" in lines(log), seconds + 1.0, what=f"'end' in {log.name}")
    return time.monotonic() - since


def test_progress_arrives_in_order_at_sync_and_async_clients() -> None:
    with running_daemon(batch()) as d:
        d.wait_running("batch")
        zs = d.client()
        seen: list[Progress] = []
        result = zs.call_detailed(
            "batch", "process", {"items": 5, "step_s": 0.1}, on_progress=seen.append
        )
        assert result.value == {"processed": 5}
        assert [p.done for p in seen] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert {p.total for p in seen} == {5.0}
        assert seen[-1].message == "item 5" and seen[-1].fraction == 1.0
        assert len({p.call_id for p in seen}) == 1

        # A tight loop is coalesced in the skill: few updates, in order, the last one kept.
        tight: list[Progress] = []
        zs.call("batch", "process", {"items": 2000, "step_s": 0.0}, on_progress=tight.append)
        done = [p.done for p in tight]
        assert done == sorted(done) and done[-1] == 2000.0
        assert len(done) < 200, len(done)

        # Without on_progress nothing is asked for (and the call works the same).
        assert zs.call("batch", "process", {"items": 2, "step_s": 0.01}) == {"processed": 2}

        async def run_async() -> list[float]:
            got: list[float] = []
            async with AsyncClient(d.config) as client:
                value = await client.call(
                    "batch",
                    "process_async",
                    {"items": 4, "step_s": 0.1},
                    on_progress=lambda p: got.append(p.done),
                )
            assert value == {"processed": 4}
            return got

        assert asyncio.run(run_async()) == [1.0, 2.0, 3.0, 4.0]


def test_cancelled_queued_call_never_runs_and_running_sync_call_stops() -> None:
    with running_daemon(batch(concurrency=1)) as d:
        d.wait_running("batch")
        zs = d.client()
        a_log, b_log = d.root / "a.log", d.root / "b.log"
        a = zs.submit("batch", "process", {"items": 400, "step_s": 0.02, "log": str(a_log)})
        wait_for(lambda: len(lines(a_log)) >= 3, what="the first call working")
        b = zs.submit("batch", "process", {"items": 3, "step_s": 0.01, "log": str(b_log)})
        wait_for(lambda: d.status("batch")["queued"] == 1, what="the second call queued")

        b.cancel()
        with pytest.raises(Cancelled, match="before it ran"):
            b.result(timeout=5)

        # The running sync handler sees ctx.cancelled at its next step.
        t0 = time.monotonic()
        a.cancel()
        with pytest.raises(Cancelled, match="while it ran"):
            a.result(timeout=5)
        assert ended_within(a_log, 1.0, t0) < 1.0
        assert not any(line.startswith("item") for line in lines(a_log)[-1:])
        wait_for(lambda: d.status("batch")["in_flight"] == 0, 2.0, what="the slot freed")

        # The slot is free and the queue empty: the cancelled call never ran.
        assert zs.call("batch", "ping").startswith("pong")
        assert not b_log.exists()


def test_cancelled_async_task_and_deadline_stop_the_handler() -> None:
    with running_daemon(batch()) as d:
        d.wait_running("batch")
        log = d.root / "async.log"

        async def cancel_task() -> float:
            async with AsyncClient(d.config) as client:
                task = asyncio.create_task(
                    client.call(
                        "batch", "process_async", {"items": 500, "step_s": 0.02, "log": str(log)}
                    )
                )
                while len(lines(log)) < 3:
                    await asyncio.sleep(0.01)
                t0 = time.monotonic()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                return t0

        t0 = asyncio.run(cancel_task())
        assert ended_within(log, 1.0, t0) < 1.0
        wait_for(lambda: d.status("batch")["in_flight"] == 0, 2.0, what="the slot freed")

        # A deadline that expires cancels the work too.
        log2 = d.root / "deadline.log"
        zs = d.client()
        t0 = time.monotonic()
        with pytest.raises(CallTimeout):
            zs.call(
                "batch", "process", {"items": 500, "step_s": 0.02, "log": str(log2)}, timeout=0.5
            )
        assert ended_within(log2, 1.5, t0) < 1.5


def test_ctrl_c_on_zskill_call_cancels_the_remote_work() -> None:
    with running_daemon(batch()) as d:
        d.wait_running("batch")
        log = d.root / "cli.log"
        args = f'{{"items": 500, "step_s": 0.02, "log": "{log}"}}'
        argv = [sys.executable, "-m", "orchestrator", "call", "batch", "process", "--json", args]
        cli = subprocess.Popen(
            [*argv, "--config", str(d.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=d.root,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            wait_for(lambda: len(lines(log)) >= 3, what="the call working")
            t0 = time.monotonic()
            cli.send_signal(signal.SIGINT)
            _, err = cli.communicate(timeout=10)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait(5)
        assert cli.returncode == 130, err
        assert b"cancelled" in err
        assert ended_within(log, 1.0, t0) < 1.0


def replaced(d: Daemon, old_pid: int) -> dict[str, Any]:
    status = d.status("batch")
    if status["state"] == "running" and status["pid"] not in (None, old_pid):
        return status
    return {}


@pytest.mark.timeout(60)
def test_hung_handlers_get_their_process_replaced() -> None:
    skills = batch(concurrency=2, cancel_grace_s=1.0, grace_s=1.0, kill_timeout_s=1.0)
    with running_daemon(skills) as d:
        old_pid = d.wait_running("batch")["batch"]["pid"]
        zs = d.client()
        for _ in range(2):  # every slot hung, each call given up at its deadline
            with pytest.raises(CallTimeout):
                zs.call("batch", "stubborn", {"seconds": 120}, timeout=0.3)
        # Reported: both still hold their slots, counted as cancelling.
        st = wait_for(
            lambda: (s := d.status("batch"))["cancelling"] == 2 and s, 3.0, what="cancelling"
        )
        assert st["in_flight"] == 2
        events = wait_for(
            lambda: [e for e in zs.events("batch") if e["type"] == "cancel_ignored"],
            what="cancel_ignored events",
        )
        assert {e["data"]["tool"] for e in events} == {"stubborn"}

        # Past cancel_grace_s the process is replaced; the skill serves again.
        st = wait_for(lambda: replaced(d, old_pid), 15.0, what="a new process")
        assert zs.call("batch", "ping") == f"pong from {st['pid']}"
        restarts = [e for e in zs.events("batch") if e["type"] == "restart"]
        assert restarts and restarts[-1]["data"]["reason"] == "cancel_ignored"
        d.known_pids.add(old_pid)


def test_a_hung_process_is_not_drained_for_its_whole_grace() -> None:
    """The process replaced for a handler that ignored its cancel drained its
    full grace_s (30 s by default) for a call nobody waits for any more. Once
    only such calls are left on it, it gets SIGTERM at once."""
    import psutil

    skills = batch(concurrency=1, cancel_grace_s=1.0, grace_s=60.0, kill_timeout_s=1.0)
    with running_daemon(skills) as d:
        old_pid = d.wait_running("batch")["batch"]["pid"]
        d.known_pids.add(old_pid)
        zs = d.client()
        with pytest.raises(CallTimeout):
            zs.call("batch", "stubborn", {"seconds": 120}, timeout=0.3)
        st = wait_for(lambda: replaced(d, old_pid), 15.0, what="a new process")
        assert zs.call("batch", "ping") == f"pong from {st['pid']}"

        def gone() -> bool:
            try:
                return psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(gone, 10.0, what="the hung process ended well within its 60 s grace")
        (exit_,) = wait_for(  # the daemon reaps it a moment after it is a zombie
            lambda: [
                e["data"]
                for e in zs.events("batch", limit=200)
                if e["type"] == "exit" and e["data"]["pid"] == old_pid
            ],
            5.0,
            what="its exit event",
        )
        assert exit_["expected"], exit_  # retired by the restart, not a crash
