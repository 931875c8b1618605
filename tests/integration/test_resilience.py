"""Crashes, hangs, restarts and foreign peers, with real processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import psutil
import pytest
import zmq
from helpers import Daemon, InBackground, example, running_daemon, short_dir, variant, wait_for

from ipc import PROTOCOL_VERSION
from orchestrator import DaemonUnavailable, OutcomeUnknown, SkillUnavailable
from orchestrator._rundir import RunDir

FAST_LIVENESS = {"heartbeat_s": 0.2, "liveness_s": 1.0}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def scratch() -> Iterator[Path]:
    d = short_dir("zx")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_sigstop_mid_call_is_detected_killed_and_replaced() -> None:
    skills = {"slow": example("slow", concurrency=4, backoff_s=0.05)}
    with running_daemon(skills, FAST_LIVENESS) as d:
        st = d.wait_running("slow")["slow"]
        c = d.client()
        bg = InBackground(
            c,
            {
                "plain": ("slow", "sleep", {"seconds": 0.5}),
                "idem": ("slow", "sleep_idem", {"seconds": 0.5}),
            },
            timeout=15,
        )
        wait_for(lambda: d.status("slow")["in_flight"] == 2, 10, what="calls in flight")
        os.kill(st["pid"], signal.SIGSTOP)
        t0 = time.monotonic()
        out = bg.join(15)
        new = wait_for(
            lambda: (s := d.status("slow"))["state"] == "running" and s["pid"] != st["pid"] and s,
            15,
            what="a replacement process",
        )
        d.known_pids.add(new["pid"])
        assert time.monotonic() - t0 < 8
        assert gone(st["pid"])
        assert isinstance(out["plain"], OutcomeUnknown), out["plain"]
        assert out["idem"].value == 0.5
        events = [e["type"] for e in c.events("slow", limit=50)]
        assert "unresponsive" in events


def test_sigkill_mid_call_retries_idempotent_and_fails_the_rest() -> None:
    skills = {"slow": example("slow", concurrency=4, backoff_s=0.05)}
    with running_daemon(skills) as d:
        st = d.wait_running("slow")["slow"]
        c = d.client()
        bg = InBackground(
            c,
            {
                "plain": ("slow", "sleep", {"seconds": 1.0}),
                "idem": ("slow", "sleep_idem", {"seconds": 1.0}),
            },
            timeout=20,
        )
        wait_for(lambda: d.status("slow")["in_flight"] == 2, 10, what="calls in flight")
        os.kill(st["pid"], signal.SIGKILL)
        out = bg.join(20)
        assert isinstance(out["plain"], OutcomeUnknown), out["plain"]
        assert str(st["pid"]) in str(out["plain"]) or "slow" in str(out["plain"])
        assert out["idem"].value == 1.0 and out["idem"].version == "1.0.0"
        new = d.status("slow")
        d.known_pids.add(new["pid"])
        assert new["pid"] != st["pid"] and new["restarts"] >= 1
        exits = [e for e in c.events("slow", limit=50) if e["type"] == "exit"]
        assert exits and exits[-1]["data"]["outcome_unknown"] == 1
        assert exits[-1]["data"]["retried"] == 1


def test_daemon_killed_leaves_no_orphan_skill() -> None:
    root = short_dir()
    d = Daemon(root, {"echo": example("echo"), "clock": example("clock")}, FAST_LIVENESS)
    try:
        d.start()
        st = d.wait_running("echo", "clock")
        pids = [s["pid"] for s in st.values()]
        assert d.proc is not None
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        wait_for(lambda: all(gone(p) for p in pids), 10, what="skills to notice and exit")
        # and a new daemon recovers the stale run dir
        d.start()
        d.wait_running("echo", "clock")
        assert d.client().call("echo", "say", {"text": "back"}) == "back"
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_crash_loop_ends_in_errored_and_start_clears_it(scratch: Path) -> None:
    crashy = variant(
        scratch,
        "crashy",
        version="1.0.0",
        extra="import sys\nsys.exit(7)\n",
        replace={'Skill("echo"': 'Skill("crashy"'},
    )
    skills = {
        "echo": example("echo"),
        "crashy": {
            "path": str(crashy),
            "command": ["python", "main.py"],
            "max_restarts": 2,
            "backoff_s": 0.05,
            "restart_window_s": 30,
        },
    }
    with running_daemon(skills) as d:
        d.wait_running("echo")
        c = d.client()
        st = wait_for(
            lambda: (s := d.status("crashy"))["state"] == "errored" and s, 20, what="errored"
        )
        assert "code 7" in (st["last_exit"] or "")
        t0 = time.monotonic()
        with pytest.raises(SkillUnavailable, match="errored"):
            c.call("crashy", "say", {"text": "x"}, timeout=10)
        assert time.monotonic() - t0 < 1.0, "calls to an errored skill must fail fast"
        # fix the code, then `start` clears the errored state
        main = crashy / "main.py"
        main.write_text(main.read_text().replace("sys.exit(7)", "pass"))
        c.start("crashy")
        assert d.status("crashy")["state"] == "running"
        assert c.call("crashy", "say", {"text": "ok"}) == "ok"
        assert c.call("echo", "say", {"text": "ok"}) == "ok"


def test_stop_takes_the_whole_process_tree(scratch: Path) -> None:
    extra = (
        "@skill.tool()\ndef spawn() -> list[int]:\n"
        "    import subprocess\n"
        "    a = subprocess.Popen(['sleep', '300'])\n"
        "    b = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "    return [a.pid, b.pid]\n"
    )
    tree = variant(
        scratch, "tree", version="1.0.0", extra=extra, replace={'Skill("echo"': 'Skill("tree"'}
    )
    skills = {"tree": {"path": str(tree), "command": ["python", "main.py"], "grace_s": 1}}
    with running_daemon(skills) as d:
        st = d.wait_running("tree")["tree"]
        c = d.client()
        kids = c.call("tree", "spawn")
        d.known_pids.update(kids)
        assert all(psutil.pid_exists(k) for k in kids)
        status = c.stop("tree")
        assert status["state"] == "stopped"
        # never reported stopped while any process of its tree is alive
        assert gone(st["pid"]) and all(gone(k) for k in kids)


def test_client_rides_through_a_daemon_restart() -> None:
    root = short_dir()
    d = Daemon(root, {"echo": example("echo")})
    try:
        d.start()
        d.wait_running("echo")
        c = d.client()
        assert c.call("echo", "say", {"text": "1"}) == "1"
        assert d.proc is not None
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(30)
        t0 = time.monotonic()
        with pytest.raises(DaemonUnavailable):
            c.call("echo", "say", {"text": "2"}, timeout=1)
        assert time.monotonic() - t0 < 5
        d.start()
        d.wait_running("echo")
        # the same client object works again, without being recreated
        assert wait_for(lambda: c.call("echo", "say", {"text": "3"}, timeout=2) == "3", 15)
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_second_daemon_on_the_same_run_dir_is_refused() -> None:
    with running_daemon({"echo": example("echo")}) as d:
        r = subprocess.run(
            [sys.executable, "-m", "orchestrator", "up", "--config", str(d.config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode != 0
        assert "already running" in r.stdout + r.stderr
        assert d.client().ping()["pid"] == d.proc.pid  # type: ignore[union-attr]


def test_foreign_process_cannot_register_or_take_calls() -> None:
    with running_daemon({"echo": example("echo")}) as d:
        st = d.wait_running("echo")["echo"]
        real_id = st["instances"][0]["instance"]
        ep = RunDir(d.run_dir).endpoints
        ctx = zmq.Context.instance()
        replies = []
        for ident in ("intruder-1", real_id + "x"):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.ROUTING_ID, ident.encode())
            s.connect(ep.workers)
            hello = [
                1,
                PROTOCOL_VERSION,
                "echo",
                "6.6.6",
                ident,
                os.getpid(),
                8,
                [],
                False,
                "guess",
            ]
            s.send(msgpack.packb(hello))
            if s.poll(3000):
                replies.append(msgpack.unpackb(s.recv_multipart()[0]))
            s.close()
        assert all(r[0] == 3 for r in replies)  # Reject
        c = d.client()
        for i in range(20):
            assert c.call_detailed("echo", "say", {"text": str(i)}).version == "1.0.0"
        assert d.status("echo")["pid"] == st["pid"]
        assert (d.run_dir.stat().st_mode & 0o777) == 0o700
        for p in ep.paths():
            assert (p.stat().st_mode & 0o777) == 0o600
