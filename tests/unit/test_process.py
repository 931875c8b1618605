"""The OS layer of skill processes (process.py), on real short-lived
processes: what a spawned process finds in its environment and fds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ipc import ENV_ENDPOINT, ENV_INSTANCE, ENV_SECRET
from orchestrator._daemon import cgroups, process
from skills._env import ENV_SECRET_FD as SDK_ENV_SECRET_FD

# What the child reports: its environment as another process reads it from
# /proc, then what the SDK reads, then whether the fd is still open.
CHILD = """
import json, os
from skills._env import ENV_SECRET_FD, RuntimeEnv
with open(f"/proc/{os.getpid()}/environ", "rb") as f:
    environ = f.read().decode()
fd = int(os.environ[ENV_SECRET_FD])
env = RuntimeEnv.from_environ()
try:
    os.fstat(fd)
    still_open = True
except OSError:
    still_open = False
print(json.dumps({"environ": environ, "secret": env.secret, "still_open": still_open,
                  "fd_var_left": ENV_SECRET_FD in os.environ}))
"""


def run(tmp_path: Path, env: dict[str, str]) -> dict[str, object]:
    repo = Path(__file__).resolve().parents[2]
    child = process.spawn([sys.executable, "-c", CHILD], tmp_path, {"PYTHONPATH": str(repo), **env})
    try:
        assert child.popen is not None and child.stdout_fd is not None
        assert child.popen.wait(30) == 0, os.read(child.stderr_fd or 0, 65536)
        os.set_blocking(child.stdout_fd, True)
        out = b""
        while chunk := os.read(child.stdout_fd, 65536):
            out += chunk
        report: dict[str, object] = json.loads(out)
        return report
    finally:
        process.close_pipes(child)


def test_the_secret_reaches_the_child_through_a_pipe_not_its_environment(
    tmp_path: Path,
) -> None:
    """Hardening 11: any process of the daemon's user reads /proc/PID/environ;
    the secret is not there, yet the SDK in the child has it."""
    secret = "5ec7e7" * 5
    report = run(
        tmp_path,
        {ENV_ENDPOINT: "ipc:///tmp/x", ENV_INSTANCE: "echo-1", ENV_SECRET: secret},
    )
    assert report["secret"] == secret
    environ = str(report["environ"])
    assert secret not in environ and f"{ENV_SECRET}=" not in environ
    assert f"{ENV_INSTANCE}=echo-1" in environ.split("\0")
    assert report["still_open"] is False  # read once, then closed
    assert report["fd_var_left"] is False  # nothing for a grandchild to look for


def test_the_daemon_and_the_sdk_name_the_same_fd_variable() -> None:
    assert process.ENV_SECRET_FD == SDK_ENV_SECRET_FD == "ZSKILL_SECRET_FD"


def test_no_pipe_is_left_open_in_the_daemon(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    run(tmp_path, {ENV_ENDPOINT: "ipc:///tmp/x", ENV_SECRET: "s"})
    assert set(os.listdir("/proc/self/fd")) <= before


# A skill process that leaves an escaped grandchild: cleared environment, a
# session of its own, re-parented away from it (its shell exits). It prints
# the grandchild's pid, then waits to be killed.
ESCAPER = """
import subprocess, sys, time
cmd = "setsid env -i sleep 300 >/dev/null 2>&1 & echo $!"
print(subprocess.run(["sh", "-c", cmd], capture_output=True, text=True).stdout, flush=True)
time.sleep(300)
"""

needs_cgroups = pytest.mark.skipif(
    cgroups.root() is None, reason="no cgroup v2 this process may write"
)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@needs_cgroups
def test_a_skill_process_and_its_escaped_grandchild_share_a_cgroup_killed_as_one(
    tmp_path: Path,
) -> None:
    """Hardening 8: the grandchild left the session and cleared its
    environment; it is still in the skill process's cgroup, and dies with it."""
    child = process.spawn([sys.executable, "-c", ESCAPER], tmp_path, {ENV_INSTANCE: "echo-test-1"})
    grandchild = 0
    try:
        assert child.cgroup is not None and child.cgroup.parent == cgroups.root()
        assert child.cgroup.name == f"zskill-{os.getpid()}-echo-test-1"
        assert child.stdout_fd is not None
        os.set_blocking(child.stdout_fd, True)
        grandchild = int(os.read(child.stdout_fd, 100))
        sleeper = psutil.Process(grandchild)
        wait_until(lambda: sleeper.cmdline() == ["sleep", "300"])  # setsid and env done
        wait_until(lambda: sleeper.ppid() not in (child.pid, *process.descendants(child.pid)))
        assert os.getsid(grandchild) == grandchild
        assert set(cgroups.pids(child.cgroup)) >= {child.pid, grandchild}

        process.signal_tree(child, signal.SIGKILL)
        assert child.popen is not None
        child.exited(child.popen.wait(10))
        wait_until(lambda: gone(grandchild))
        cgroup = child.cgroup
        wait_until(lambda: not process.tree_alive(child))
        assert child.cgroup is None and not cgroup.exists()  # removed once empty
    finally:
        if grandchild:
            with contextlib.suppress(psutil.Error):
                psutil.Process(grandchild).kill()
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        process.close_pipes(child)


@needs_cgroups
def test_what_a_dead_daemon_left_in_its_cgroups_is_killed(tmp_path: Path) -> None:
    """Hardening 7: the skill processes of a daemon that was SIGKILLed are
    killed, with their trees, when the next daemon looks for its cgroups."""
    root = cgroups.root()
    assert root is not None
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = root / f"zskill-{dead.pid}-echo-gone-1"
    left.mkdir()
    orphan = subprocess.Popen(["sleep", "300"])
    try:
        (left / "cgroup.procs").write_text(str(orphan.pid))
        cgroups._clear_dead_daemons(root)
        assert orphan.wait(10) == -signal.SIGKILL
        wait_until(lambda: not left.exists() or not cgroups.pids(left))
    finally:
        orphan.kill()
        orphan.wait()
        with contextlib.suppress(OSError):
            left.rmdir()


def test_descends_from_walks_the_parent_chain() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run(['sleep', '30'])"]
    )
    try:

        def grandchild() -> int | None:
            kids = psutil.Process(child.pid).children()
            return kids[0].pid if kids else None

        deadline = time.monotonic() + 10
        gc = grandchild()
        while gc is None and time.monotonic() < deadline:
            time.sleep(0.01)
            gc = grandchild()
        assert gc is not None
        me = os.getpid()
        assert process.descends_from(gc, child.pid) and process.descends_from(gc, me)
        assert not process.descends_from(child.pid, gc)
        assert not process.descends_from(me, child.pid)  # a hello naming the test runner
        assert not process.descends_from(999_999_999, child.pid)
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()


HOG = """
import sys
kept = []
for _ in range(int(sys.argv[1])):
    kept.append(b"x" * (16 << 20))  # written pages: resident, charged to the cgroup
print("survived", flush=True)
"""


def test_the_backstop_is_twice_the_limit_with_room_for_small_ones() -> None:
    assert cgroups.backstop_bytes(512 << 20) == 1024 << 20
    assert cgroups.backstop_bytes(16 << 20) == 80 << 20  # at least 64 MiB of room


@pytest.mark.skipif(
    not cgroups.can_limit_memory(), reason="no memory cgroup (v2 or v1) this process may write"
)
def test_the_kernel_stops_a_tree_over_its_memory_backstop(tmp_path: Path) -> None:
    """Hardening 12: between two RSS samples a skill can grow without bound;
    the kernel's limit on its cgroup stops it, and its exit says why."""
    child = process.spawn(
        [sys.executable, "-c", HOG, "16"],  # 256 MiB
        tmp_path,
        {ENV_INSTANCE: "hog-test-1"},
        memory_max_bytes=96 << 20,
    )
    try:
        assert child.memory_cgroup is not None and child.memory_max_bytes == 96 << 20
        assert child.popen is not None
        child.exited(child.popen.wait(30))
        assert child.exit_code == -signal.SIGKILL
        assert child.oom_killed
        assert "memory backstop of 96 MiB" in child.describe_exit()
        memory_cgroup = child.memory_cgroup
        wait_until(lambda: not process.tree_alive(child))
        assert child.memory_cgroup is None and not memory_cgroup.exists()
    finally:
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGKILL)
        process.close_pipes(child)


def test_without_a_memory_limit_a_tree_gets_no_kernel_limit(tmp_path: Path) -> None:
    child = process.spawn([sys.executable, "-c", HOG, "6"], tmp_path, {ENV_INSTANCE: "hog-test-2"})
    try:
        assert child.memory_cgroup is None
        assert child.popen is not None
        child.exited(child.popen.wait(30))
        assert child.exit_code == 0 and not child.oom_killed
    finally:
        process.close_pipes(child)
