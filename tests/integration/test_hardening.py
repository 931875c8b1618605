"""Defects an adversarial pass found, each reproduced against the real CLI,
daemon and skill processes: the test fails on the code before its fix."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import EXAMPLES, Daemon, example, running_daemon, short_dir, write_config

from orchestrator._rundir import RunDir
from orchestrator.testing import FakeDaemon

ZSKILL = [sys.executable, "-m", "orchestrator"]
NOBODY = 65534


def zskill(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZSKILL, *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


@pytest.fixture
def shared_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in for /tmp that both this process and the CLI use (TMPDIR)."""
    base = short_dir("zsh")
    os.chmod(base, 0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.getuid() != 0, reason="playing the other user (chown) needs root")
def test_a_socket_dir_made_by_another_user_is_refused(shared_tmp: Path) -> None:
    """Hardening 1: a long run dir's sockets live under $TMPDIR/zskill-UID/.
    Another user who made that directory first, with their own control.sock
    in it, must get nothing: no call reaches them, `up` refuses cleanly."""
    root = shared_tmp / "p"
    root.mkdir()
    run_dir = root / ("r" * 100)
    config = root / "zskill.toml"
    write_config(config, {"echo": example("echo")}, {"run_dir": str(run_dir)})
    layout = RunDir(run_dir)
    assert layout.socket_dir.parent == shared_tmp / f"zskill-{os.getuid()}"
    env = {"TMPDIR": str(shared_tmp)}

    # The other user's directory, and their daemon listening in it.
    evil = layout.socket_dir.parent
    evil.mkdir(mode=0o777)
    os.chmod(evil, 0o777)
    os.chown(evil, NOBODY, NOBODY)
    with FakeDaemon(run_dir) as fake:
        fake.tool("echo", "say", lambda args: "forged answer")
        result = zskill(
            config, "call", "echo", "say", "--json", '{"text": "api_key=s3cret"}', env=env
        )
        assert result.returncode == 2, result
        assert "forged" not in result.stdout
        assert f"refusing to use {evil} for zskill's sockets" in result.stderr
        assert "belongs to uid 65534" in result.stderr
        assert fake.received == []  # not a byte of the call reached them
        listing = zskill(config, "list", env=env)
        assert listing.returncode == 2 and "refusing to use" in listing.stderr
        assert fake.received == []

    # `zskill up` refuses the same directory with a clear message, no traceback.
    up = zskill(config, "up", env=env)
    assert up.returncode == 2, up
    assert "refusing to use" in up.stderr and "Traceback" not in up.stderr

    # And the hash dir made by them inside a directory of ours: refused too.
    shutil.rmtree(evil)
    evil.mkdir(mode=0o700)
    layout.socket_dir.mkdir(mode=0o777)
    os.chown(layout.socket_dir, NOBODY, NOBODY)
    up = zskill(config, "up", env=env)
    assert up.returncode == 2, up
    assert f"refusing to use {layout.socket_dir}" in up.stderr
    assert "Traceback" not in up.stderr and "PermissionError" not in up.stderr


def test_an_upgrade_from_a_large_tree_never_blocks_the_daemon() -> None:
    """Hardening 2: copying and hashing a release of 20,000 files used to run
    on the daemon's one thread, which then answered nothing for seconds (a
    running call got OutcomeUnknown, every skill gave the daemon up for dead).
    It is the rollout's prepare step now, off that thread: calls to other
    skills are answered throughout, and the upgrade reports the step."""
    root = short_dir("zsl")
    try:
        big = root / "big"
        shutil.copytree(EXAMPLES / "echo", big, ignore=shutil.ignore_patterns("__pycache__"))
        seed = root / "seed.txt"
        seed.write_bytes(b"x" * 512)
        for d in range(100):
            sub = big / "data" / f"d{d:03}"
            sub.mkdir(parents=True)
            for f in range(200):
                os.link(seed, sub / f"f{f:03}.txt")  # fast to make; copied and read in full
        with running_daemon({"echo": example("echo"), "clock": example("clock")}) as zs:
            zs.wait_running("echo", "clock")
            c = zs.client()
            steps: list[dict[str, Any]] = []
            with ThreadPoolExecutor(1) as pool:
                upgrade = pool.submit(c.upgrade, "echo", str(big), on_progress=steps.append)
                worst_s = 0.0
                calls = 0
                while not upgrade.done():
                    t0 = time.monotonic()
                    c.call("clock", "now", {}, timeout=10)
                    worst_s = max(worst_s, time.monotonic() - t0)
                    calls += 1
                report = upgrade.result(timeout=60)
            prepare = [s for s in steps if s["step"] == "prepare"]
            assert [s["status"] for s in prepare] == ["started", "ok"]
            prepare_s = float(prepare[-1]["elapsed_s"])
            assert prepare_s > 1.0, f"the copy took only {prepare_s:.2f} s: no test of blocking"
            assert worst_s < 0.5, f"a call waited {worst_s:.2f} s while the release was copied"
            assert calls > 10
            assert report["ok"] and report["release"] is not None
            # No skill process gave the daemon up for dead meanwhile.
            exits = [e for e in c.events(limit=1000) if e["type"] == "exit"]
            assert [e["data"]["expected"] for e in exits] == [True]  # the old echo, retired
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_daemon_started_after_a_crash_is_not_disturbed_by_the_old_skills() -> None:
    """Hardening 7: `zskill up` right after the daemon was SIGKILLed. Its skill
    processes live on and reconnect to the new daemon's workers.sock with
    their routing ids; those used to restart at echo-1, so the new echo-1 was
    refused by ZeroMQ, never said hello, and came up ~10 s later as a counted
    crash. Ids carry a token of each daemon run now: the new processes are
    ready at once, and nothing counts as a crash."""
    skills = {"echo": example("echo")}  # one skill: the same ids in both runs
    root = short_dir("zsc")
    # A long liveness_s: the orphans keep waiting for a daemon, as they would
    # when `up` follows the crash within the default 5 s.
    zs = Daemon(root, skills, {"liveness_s": 30.0})
    orphans: set[int] = set()
    try:
        zs.start()
        before = zs.wait_running("echo")
        orphans = {i["pid"] for s in before.values() for i in s["instances"]}
        assert zs.proc is not None
        zs.proc.send_signal(signal.SIGKILL)  # the daemon alone, not its skills
        zs.proc.wait(10)
        zs.out.close()
        assert all(psutil.pid_exists(pid) for pid in orphans)

        started = time.monotonic()
        zs.start()
        after = zs.wait_running("echo", timeout=8)
        ready_s = time.monotonic() - started
        assert ready_s < 6, f"the skills took {ready_s:.1f} s to be ready"
        pids = {i["pid"] for s in after.values() for i in s["instances"]}
        assert not pids & orphans
        assert after["echo"]["restarts"] == 0
        c = zs.client()
        assert c.call("echo", "ping", {}, timeout=5) == "pong"
        assert [e for e in c.events(limit=1000) if e["type"] == "exit"] == []
    finally:
        zs.stop()
        for pid in orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(root, ignore_errors=True)
