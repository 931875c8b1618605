"""The core with real processes: a daemon, skill processes, real sockets."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from helpers import Daemon, example, running_daemon, wait_for

from orchestrator import (
    CallTimeout,
    InvalidArguments,
    PayloadError,
    RemoteError,
    SkillNotFound,
    ToolNotFound,
)
from orchestrator._rundir import RunDir


@pytest.fixture(scope="module")
def zs() -> Iterator[Daemon]:
    skills = {
        "echo": example("echo"),
        "slow": example("slow", concurrency=2),
        "clock": example("clock"),
    }
    with running_daemon(skills) as d:
        d.wait_running("echo", "slow", "clock")
        yield d


def test_call_returns_result_and_version(zs: Daemon) -> None:
    c = zs.client()
    assert c.call("echo", "say", {"text": "hi", "times": 2}) == "hi hi"
    r = c.call_detailed("echo", "say", {"text": "x"})
    assert r.value == "x" and r.version == "1.0.0"


def test_calls_to_two_skills_at_once(zs: Daemon) -> None:
    c = zs.client()
    with ThreadPoolExecutor(8) as pool:
        a = [pool.submit(c.call, "echo", "say", {"text": f"e{i}"}) for i in range(50)]
        b = [pool.submit(c.call, "clock", "wait", {"seconds": 0.01}) for i in range(50)]
        assert [f.result(timeout=30) for f in a] == [f"e{i}" for i in range(50)]
        assert all(f.result(timeout=30) == 0.01 for f in b)


def test_concurrency_limit_queues_the_rest_and_loses_none(zs: Daemon) -> None:
    c = zs.client()
    peak = {"in_flight": 0, "queued": 0}
    stop = threading.Event()

    def watch() -> None:
        w = zs.client()
        while not stop.is_set():
            s = next(x for x in w.list() if x["name"] == "slow")
            peak["in_flight"] = max(peak["in_flight"], s["in_flight"])
            peak["queued"] = max(peak["queued"], s["queued"])
            time.sleep(0.01)

    t = threading.Thread(target=watch)
    t.start()
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(c.call, "slow", "sleep", {"seconds": 0.2}) for _ in range(8)]
            results = [f.result(timeout=30) for f in futs]
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    assert results == [0.2] * 8
    # concurrency = 2: eight 0.2 s calls take at least four rounds.
    assert elapsed >= 0.75
    assert peak["in_flight"] <= 2
    assert peak["queued"] >= 1


def test_sync_and_async_tools(zs: Daemon) -> None:
    c = zs.client()
    now = c.call("clock", "now")
    assert abs(now - time.time()) < 5
    assert c.call("clock", "wait", {"seconds": 0.05}) == 0.05
    assert c.call("slow", "sleep", {"seconds": 0.01}) == 0.01


def test_remote_error_carries_type_and_message(zs: Daemon) -> None:
    c = zs.client()
    with pytest.raises(RemoteError) as ei:
        c.call("echo", "fail", {"message": "boom"})
    assert "boom" in str(ei.value)
    assert "ValueError" in ei.value.remote_type
    assert "Traceback" in ei.value.traceback or "ValueError" in ei.value.traceback


def test_call_timeout(zs: Daemon) -> None:
    c = zs.client()
    t0 = time.monotonic()
    with pytest.raises(CallTimeout):
        c.call("slow", "sleep", {"seconds": 3}, timeout=0.3)
    assert time.monotonic() - t0 < 2.5
    # The skill still answers later calls.
    assert c.call("slow", "sleep", {"seconds": 0.01}, timeout=10) == 0.01


def test_bad_calls_get_clear_errors(zs: Daemon) -> None:
    c = zs.client()
    with pytest.raises(SkillNotFound, match="nope"):
        c.call("nope", "say", {})
    with pytest.raises(ToolNotFound, match="missing"):
        c.call("echo", "missing", {})
    with pytest.raises(InvalidArguments, match="times"):
        c.call("echo", "say", {"text": "x", "times": "many"})
    with pytest.raises(InvalidArguments):
        c.call("echo", "say", {"text": "x", "bogus": 1})
    with pytest.raises(PayloadError):
        c.call("echo", "unencodable")
    # and the daemon keeps serving
    assert c.call("echo", "say", {"text": "ok"}) == "ok"


def test_sigkill_of_one_skill_leaves_the_other_serving(zs: Daemon) -> None:
    c = zs.client()
    before = {s["name"]: s for s in c.list()}
    victim = before["clock"]["pid"]
    os.kill(victim, signal.SIGKILL)
    # echo keeps answering while clock is down and coming back.
    for i in range(20):
        assert c.call("echo", "say", {"text": str(i)}) == str(i)
    st = wait_for(
        lambda: (s := zs.status("clock"))["state"] == "running" and s["pid"] != victim and s,
        20,
        what="clock restarted",
    )
    zs.known_pids.add(st["pid"])
    assert st["restarts"] >= 1
    assert zs.status("echo")["pid"] == before["echo"]["pid"]
    assert c.call("clock", "wait", {"seconds": 0.01}) == 0.01


def test_down_leaves_no_process_and_no_socket() -> None:
    with running_daemon({"echo": example("echo"), "clock": example("clock")}) as d:
        st = d.wait_running("echo", "clock")
        pids = {s["pid"] for s in st.values()} | {d.proc.pid}  # type: ignore[union-attr]
        c = d.client()
        c.shutdown()
        assert d.proc is not None
        d.proc.wait(30)
        for pid in pids:
            assert (
                not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
            )
        for p in RunDir(d.run_dir).endpoints.paths():
            assert not p.exists(), p
        assert not (d.run_dir / "zskilld.pid").exists()
