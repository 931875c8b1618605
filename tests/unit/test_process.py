"""The OS layer of skill processes (process.py), on real short-lived
processes: what a spawned process finds in its environment and fds."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ipc import ENV_ENDPOINT, ENV_INSTANCE, ENV_SECRET
from orchestrator._daemon import process
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
