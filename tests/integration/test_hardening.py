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

import msgpack
import psutil
import pytest
import zmq
from helpers import (
    EXAMPLES,
    Daemon,
    example,
    running_daemon,
    short_dir,
    variant,
    wait_for,
    write_config,
)

import ipc
from orchestrator import MessageTooLarge, UpgradeFailed
from orchestrator._daemon import cgroups
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
        if cgroups.root() is not None:  # the new daemon kills what the dead one left
            wait_for(lambda: all(_gone(pid) for pid in orphans), 10, what="the orphans gone")
    finally:
        zs.stop()
        for pid in orphans:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(root, ignore_errors=True)


def _hello_as(pid: int, environ: dict[str, str]) -> Any:
    """Say hello as the skill process whose environment this is, with what
    secret that environment holds (what a process of the daemon's user, which
    reads /proc/PID/environ, could do); the daemon's answer."""
    instance = environ["ZSKILL_INSTANCE"]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.ROUTING_ID, instance.encode())
        ipc.configure(sock)
        sock.connect(environ["ZSKILL_ENDPOINT"])
        hello = ipc.Hello(
            protocol=ipc.PROTOCOL_VERSION,
            skill="echo",
            version="6.6.6",
            instance=instance,
            pid=pid,  # not ours: the daemon adds a welcomed pid to the tree it kills
            concurrency=1,
            tools=[],
            has_health=False,
            secret=environ.get("ZSKILL_SECRET", ""),
        )
        sock.send_multipart(ipc.encode(hello))
        return ipc.decode(sock.recv_multipart()) if sock.poll(10_000) else None
    finally:
        sock.close(linger=0)
        ctx.term()


def test_a_process_reading_a_skills_environment_cannot_say_hello_in_its_place() -> None:
    """Hardening 11: the per-instance secret was in ZSKILL_SECRET, which any
    process of the daemon's user reads in /proc/PID/environ: with it, that
    process registered as the instance. The secret comes through an inherited
    pipe now; the environment holds no secret and such a hello is refused."""
    root = short_dir("zst")
    try:
        slow = root / "slow"  # a new version that takes its time to say hello
        slow.mkdir()
        (slow / "main.py").write_text("import time\ntime.sleep(60)\n")
        with running_daemon({"echo": example("echo", start_timeout_s=10)}) as zs:
            old_pid = zs.wait_running("echo")["echo"]["pid"]
            c = zs.client()
            with ThreadPoolExecutor(1) as pool:
                upgrade = pool.submit(c.upgrade, "echo", str(slow))
                new_pid = wait_for(
                    lambda: next(
                        (
                            i["pid"]
                            for i in zs.status("echo")["instances"]
                            if i["pid"] not in (None, old_pid)
                        ),
                        None,
                    ),
                    10,
                    what="the new process",
                )
                raw = Path(f"/proc/{new_pid}/environ").read_bytes().decode()
                environ = dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)
                answer = _hello_as(new_pid, environ)
                assert type(answer).__name__ == "Reject", answer
                assert "ZSKILL_SECRET" not in environ and "ZSKILL_INSTANCE" in environ
                with pytest.raises(UpgradeFailed):
                    upgrade.result(30)
            st = zs.status("echo")
            assert st["state"] == "running" and st["version"] == "1.0.0"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_stop_overtaken_by_a_start_is_answered() -> None:
    """Hardening 3: `zskill stop` waited for "no process left"; a start that
    arrived while it drained spawned a new process, and the stop hung for
    ever. It returns once the process it retired is gone (within grace_s),
    exit 1: the skill was put back in service, so it is not stopped."""
    from helpers import InBackground, wait_for

    with running_daemon({"slow": example("slow", grace_s=10)}) as zs:
        zs.wait_running("slow")
        c = zs.client()
        slow_call = InBackground(c, {"slow": ("slow", "sleep", {"seconds": 3})})
        wait_for(lambda: zs.status("slow")["in_flight"] == 1, 10, what="the call running")
        t0 = time.monotonic()
        stop = subprocess.Popen(
            [*ZSKILL, "stop", "slow", "--config", str(zs.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: zs.status("slow")["state"] == "stopping", 10, what="stopping")
            start = zskill(zs.config, "start", "slow", env={})
            assert start.returncode == 0, start
            assert ": running" in start.stdout
            out, err = stop.communicate(timeout=20)
        finally:
            if stop.poll() is None:
                stop.kill()
                stop.wait(5)
        took_s = time.monotonic() - t0
        assert stop.returncode == 1, (out, err)
        assert "stop of 'slow' was overtaken: a start put it back in service" in err
        assert "Traceback" not in err
        assert took_s < 10, f"the stop took {took_s:.1f} s, more than its grace"
        (result,) = slow_call.join().values()
        assert result.value == 3  # the drained call finished where it ran
        st = zs.wait_running("slow")["slow"]
        assert len(st["instances"]) == 1


def test_memory_limit_replaces_a_process_without_failing_a_call() -> None:
    """Hardening 12: a skill leaking memory grew to 1.5 GiB with nothing
    done. Over memory_limit (RSS sampled every 2 s), its process is
    replaced by a zero-downtime restart; no call fails; the event says why."""
    from helpers import Load, variant, wait_for

    root = short_dir("zsm")
    try:
        hog = variant(
            root,
            "hog",
            version="1.0.0",
            extra=(
                "KEPT: list[bytes] = []\n\n\n@skill.tool()\ndef hog(mb: int) -> int:\n"
                "    KEPT.append(b'x' * (mb << 20))  # written: resident, not just reserved\n"
                "    return sum(map(len, KEPT)) >> 20\n"
            ),
        )
        skill = example("echo", path=str(hog), memory_limit="80MiB", grace_s=5)
        with running_daemon({"echo": skill}) as zs:
            first = zs.wait_running("echo")["echo"]
            c = zs.client()
            with Load(c, "echo", "say", {"text": "hi"}, callers=3) as load:
                load.wait_calls(50)
                assert c.call("echo", "hog", {"mb": 100}, timeout=20) == 100
                new = wait_for(
                    lambda: (
                        (s := zs.status("echo"))["pid"] != first["pid"]
                        and s["state"] == "running"
                        and s
                    ),
                    20,
                    what="the process replaced",
                )
                zs.known_pids.add(new["pid"])
                load.wait_calls(50)
            assert load.failures == [], load.failures[:5]
            (restart,) = [e["data"] for e in c.events("echo", limit=1000) if e["type"] == "restart"]
            assert restart["reason"] == "memory_limit"
            assert restart["pid"] == first["pid"] and restart["rss_bytes"] > 100 << 20
            assert "over the skill's memory_limit of 80 MiB" in restart["why"]
            exits = wait_for(
                lambda: [e["data"] for e in c.events("echo", limit=1000) if e["type"] == "exit"],
                10,
                what="the old process to exit",
            )
            assert [e["expected"] for e in exits] == [True]  # retired, not crashed
            assert new["restarts"] == 1 and new["state"] == "running"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_flood_over_max_queued_is_refused_at_once() -> None:
    """Hardening 12: 1e5 queued calls took the daemon from 43 to 612 MiB.
    Calls waiting for a slot are bounded by max_queued: one more is
    refused at once with SkillOverloaded, and every accepted call succeeds."""
    from helpers import InBackground

    from orchestrator import SkillOverloaded

    skills = {"slow": example("slow", concurrency=4, max_queued=4)}
    with running_daemon(skills) as zs:
        zs.wait_running("slow")
        c = zs.client()
        t0 = time.monotonic()
        calls = {f"c{i}": ("slow", "sleep", {"seconds": 2.0}) for i in range(30)}
        flood = InBackground(c, calls, timeout=20)
        results = flood.join(30)
        ok = [k for k, r in results.items() if not isinstance(r, Exception)]
        refused = {k: r for k, r in results.items() if isinstance(r, Exception)}
        assert len(ok) == 8, results  # 4 in flight, 4 queued
        assert all(results[k].value == 2.0 for k in ok)
        assert len(refused) == 22
        for k, exc in refused.items():
            assert isinstance(exc, SkillOverloaded), exc
            assert "max_queued = 4" in str(exc) and "'slow'" in str(exc)
            assert flood.finished_at[k] - t0 < 1.5, "a refused call must be answered at once"
        st = zs.status("slow")
        assert st["queued"] == 0 and st["state"] == "running"


def test_a_skill_whose_path_is_gone_says_why_it_errored() -> None:
    """Hardening 14: an errored skill whose path does not exist showed "the
    old version keeps serving" as its last exit."""
    from helpers import wait_for

    root = short_dir("zsg")
    try:
        gone = root / "gone"
        skill = example("echo", path=str(gone), max_restarts=1, backoff_s=0.05)
        with running_daemon({"echo": skill}) as zs:
            st = wait_for(
                lambda: (s := zs.status("echo"))["state"] == "errored" and s, 20, what="errored"
            )
            last = st["last_exit"] or ""
            assert "keeps serving" not in last
            assert last.startswith("start failed: cannot start `") and str(gone) in last, last
            listing = zskill(zs.config, "list", env={})
            assert "keeps serving" not in listing.stdout
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_tcp_client_gives_up_on_a_daemon_gone_silent() -> None:
    """Hardening 10: over tcp:// there is no pid to look at, and a client
    waited forever on a daemon that went away (a control operation without a
    timeout never returned). The daemon stopped (SIGSTOP: its host gone
    silent, no FIN, no RST): the call in flight fails once the ZMTP
    heartbeats time out, a new request once the connection stays down for
    REMOTE_DOWN_S; when the daemon comes back the same client is served."""
    import socket

    from orchestrator import Client, DaemonUnavailable
    from orchestrator._client.common import LIVENESS_EVERY_S
    from orchestrator._client.link import HEARTBEAT_IVL_MS, HEARTBEAT_TIMEOUT_MS, REMOTE_DOWN_S

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    root = short_dir("zst")
    d = Daemon(root, {"slow": example("slow")}, {"tcp_control": endpoint})
    try:
        keys = zskill(d.config, "keys", "--client", "agent", env={})
        assert keys.returncode == 0, keys.stderr
        d.start()
        d.wait_running("slow")
        assert d.proc is not None
        c = Client(
            endpoint,
            server_key=d.run_dir / "keys" / "server.key",
            client_key=d.run_dir / "keys" / "clients" / "agent.key_secret",
        )
        try:
            assert c.list()[0]["name"] == "slow"
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(c.call, "slow", "sleep", {"seconds": 30}, timeout=50)
                d.proc.send_signal(signal.SIGSTOP)
                stopped = time.monotonic()
                try:
                    bound_s = (HEARTBEAT_IVL_MS + HEARTBEAT_TIMEOUT_MS) / 1000 + LIVENESS_EVERY_S
                    with pytest.raises(DaemonUnavailable, match="dropped"):
                        in_flight.result(timeout=bound_s + 5)
                    assert time.monotonic() - stopped < bound_s + 2
                    asked = time.monotonic()
                    with pytest.raises(DaemonUnavailable, match="no connection to the daemon"):
                        c.list()  # no timeout: before the fix, this never returned
                    assert time.monotonic() - asked < REMOTE_DOWN_S + LIVENESS_EVERY_S + 2
                finally:
                    d.proc.send_signal(signal.SIGCONT)
            assert c.list()[0]["name"] == "slow"
        finally:
            c.close()
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def _raw_client(endpoint: str, ident: bytes | None = None) -> zmq.Socket[bytes]:
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if ident is not None:
        s.setsockopt(zmq.ROUTING_ID, ident)
    s.connect(endpoint)
    return s


def _answer(s: zmq.Socket[bytes], timeout_s: float) -> list[Any] | None:
    """The header of the next message on ``s``, or None if none came in time."""
    if not s.poll(int(timeout_s * 1000)):
        return None
    header: list[Any] = msgpack.unpackb(s.recv_multipart()[0])
    return header


def test_a_call_at_the_size_limit_never_wedges_a_skill() -> None:
    """Hardening 4: a CallRequest of exactly max_message_bytes (its timeout an
    integer, as any msgpack client may send it) was accepted, then forwarded
    as a Call a few bytes larger (a float timeout), which the skill dropped
    as too large: the slot stayed taken, and every later call timed out
    'still queued'. The daemon now refuses, at once, a call the skill could
    not read; and the skill answers one it cannot read anyway."""
    limit = 64 * 1024
    echo = example("echo", concurrency=1)
    with running_daemon({"echo": echo}, {"max_message_bytes": limit, "call_timeout_s": 2}) as d:
        d.wait_running("echo")
        s = _raw_client(RunDir(d.run_dir).endpoints.control)
        try:
            header = msgpack.packb([21, 1, "echo", "say", 0])  # timeout 0: the default
            args = {"text": ""}
            filler = limit - len(header) - len(msgpack.packb(args))
            args["text"] = "x" * (filler - 2)  # str header: 3 bytes for 32..64 KiB, not 1
            payload = msgpack.packb(args)
            assert len(header) + len(payload) == limit
            s.send_multipart([header, payload])
            answer = _answer(s, 10)
            assert answer is not None and answer[:2] == [23, 1], answer
            assert answer[3][0] == "MessageTooLarge", answer
            assert f"over the limit of {limit}" in answer[3][1]
            # The one slot is free: a call right after is served.
            c = d.client()
            assert c.call("echo", "say", {"text": "after"}, timeout=10) == "after"
        finally:
            s.close()


# A tool that leaves a grandchild behind the way a careless (or hostile) skill
# might: its environment cleared, a session of its own, and re-parented away
# from the skill process at once (its shell exits).
SLEEPER = '''
@skill.tool()
def sleeper() -> int:
    """Start `sleep 300` escaped from this process: the sleeper's pid."""
    import subprocess

    cmd = "setsid env -i sleep 300 >/dev/null 2>&1 & echo $!"
    return int(subprocess.run(["sh", "-c", cmd], capture_output=True, check=True).stdout)
'''


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_grandchild_that_cleared_its_env_and_left_the_session_ends_with_its_skill() -> None:
    """Hardening 8: a grandchild started with a cleared environment under
    setsid, re-parented to the daemon, survived stop, upgrade, restart and
    `down` (the daemon knew it only by ZSKILL_INSTANCE in its environment).
    Each skill process has a cgroup of its own now (the subreaper where the
    system allows none): whatever it started ends with it."""
    root = short_dir("zsg")
    sleepers: list[int] = []
    try:
        v1 = variant(root, "v1", version="1.0.0", extra=SLEEPER)
        v2 = variant(root, "v2", version="2.0.0", extra=SLEEPER)
        with running_daemon({"echo": example("echo", path=str(v1))}) as zs:
            zs.wait_running("echo")
            c = zs.client()

            def escaped() -> int:
                pid = int(c.call("echo", "sleeper", {}, timeout=10))
                sleepers.append(pid)
                p = psutil.Process(pid)
                wait_for(lambda: p.cmdline() == ["sleep", "300"], 5, what="env to exec sleep")
                assert os.getsid(pid) == pid
                assert "ZSKILL_INSTANCE" not in p.environ()
                return pid

            pid = escaped()
            c.stop("echo")
            wait_for(lambda: _gone(pid), 10, what="the grandchild gone after stop")
            c.start("echo")
            zs.wait_running("echo")

            pid = escaped()
            c.upgrade("echo", str(v2))
            wait_for(lambda: _gone(pid), 10, what="the grandchild gone after upgrade")

            pid = escaped()
            c.restart("echo")
            wait_for(lambda: _gone(pid), 10, what="the grandchild gone after restart")

            pid = escaped()
            c.shutdown()  # what `zskill down` asks
            assert zs.proc is not None
            zs.proc.wait(30)
            wait_for(lambda: _gone(pid), 10, what="the grandchild gone after down")
    finally:
        for pid in sleepers:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(root, ignore_errors=True)


def test_a_message_of_many_frames_is_refused_without_being_read_whole() -> None:
    """Hardening 6: MAXMSGSIZE bounds a frame, not a message: 48 frames of
    16 MiB were read, each copied, into one list before the daemon looked at
    them. It keeps the first frames now, frees the rest uncopied, and answers
    the call, by its id, with MessageTooLarge naming the frame count."""
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        s = _raw_client(RunDir(d.run_dir).endpoints.control)
        try:
            header = msgpack.packb([21, 5, "echo", "say", 5.0])
            s.send_multipart([header, *[b"\0" * 2**20] * 47], copy=False)
            answer = _answer(s, 20)
            assert answer is not None and answer[:2] == [23, 5], answer
            assert answer[3][0] == "MessageTooLarge", answer
            assert "message of 48 frames" in answer[3][1]
            assert d.client().call("echo", "say", {"text": "up"}, timeout=10) == "up"
        finally:
            s.close()


def test_a_reply_over_the_limit_is_an_error_not_a_dead_connection(tmp_path: Path) -> None:
    """Hardening 5, the daemon's side: tools() of three skills with 50 KB
    descriptions made a reply larger than the client's MAXMSGSIZE, and
    libzmq closed the client's connection for good (every later request:
    'send queue full'). The daemon sends MessageTooLarge instead, naming the
    size and the limit, and the connection serves on."""
    limit = 64 * 1024
    wordy = variant(
        tmp_path,
        "wordy",
        replace={'Skill("echo"': 'Skill(os.environ["ZSKILL_SKILL"]'},
        extra=(
            "def wordy() -> None:\n    pass\n\n\n"
            'wordy.__doc__ = "w" * 50_000\nskill.tool()(wordy)\n'
        ),
    )
    skills = {name: example("echo", path=str(wordy)) for name in ("w1", "w2", "w3")}
    with running_daemon(skills, {"max_message_bytes": limit}) as d:
        d.wait_running("w1", "w2", "w3")
        c = d.client(timeout=10)
        assert len(c.tools("w1")["w1"]) > 1  # one skill's tools fit
        with pytest.raises(MessageTooLarge, match=f"over the limit of {limit} bytes") as info:
            c.tools()
        assert info.value.details["size"] > limit
        assert c.ping()["pid"] > 0
        assert c.call("w2", "say", {"text": "still connected"}) == "still connected"


@pytest.mark.skipif(
    not cgroups.can_limit_memory(),
    reason="no memory cgroup (v2 or v1) the daemon may write here",
)
def test_a_skill_growing_faster_than_sampling_is_stopped_by_the_kernel() -> None:
    """Hardening 12: RSS sampling replaces a process over memory_limit, but a
    tree can grow without bound between two samples. The kernel's limit
    (twice memory_limit, on the skill process's cgroup) stops it; its exit
    says why; the skill serves again."""
    from helpers import variant, wait_for

    from orchestrator import OutcomeUnknown

    root = short_dir("zsk")
    try:
        hog = variant(
            root,
            "hog",
            version="1.0.0",
            extra=(
                "KEPT: list[bytes] = []\n\n\n@skill.tool()\ndef hog(mb: int) -> int:\n"
                "    for _ in range(mb >> 4):\n"
                "        KEPT.append(b'x' * (16 << 20))\n"
                "    return sum(map(len, KEPT)) >> 20\n"
            ),
        )
        skill = example("echo", path=str(hog), memory_limit="64MiB")
        with running_daemon({"echo": skill}) as zs:
            first = zs.wait_running("echo")["echo"]
            c = zs.client()
            with pytest.raises(OutcomeUnknown, match="memory backstop of 128 MiB"):
                c.call("echo", "hog", {"mb": 512}, timeout=30)
            (exit_,) = [e["data"] for e in c.events("echo", limit=1000) if e["type"] == "exit"]
            assert exit_["pid"] == first["pid"] and not exit_["expected"]
            assert "killed by the kernel" in exit_["how"], exit_
            wait_for(
                lambda: (
                    zs.status("echo")["state"] == "running"
                    and zs.status("echo")["pid"] != first["pid"]
                ),
                20,
                what="the skill restarted",
            )
            zs.known_pids.add(zs.status("echo")["pid"])
            assert c.call("echo", "say", {"text": "back"}, timeout=10) == "back"
    finally:
        shutil.rmtree(root, ignore_errors=True)
