"""The CLI's dealings with the daemon process itself: connecting (failing
fast when none runs), starting one detached, waiting for one to exit.

    zskill up --detach
      1. spawn ``python -m orchestrator up --config <abs>`` in its own
         session, output appended to <run_dir>/logs/zskilld.out
      2. poll ping until the daemon that answers is our child
      3. the child exiting first is a failure: show the tail of its output

    zskill down
      1. ping: remember the daemon's pid
      2. shutdown (the daemon answers, then drains its skills and exits)
      3. poll until that process is gone
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipc import DaemonUnavailable

from .._rundir import RunDir
from .errors import CliError

if TYPE_CHECKING:
    from .._client.sync import Client
    from .._config import Config

PING_TIMEOUT_S = 2.0


def connect(config: Config, *, timeout_s: float = 60.0) -> Client:
    """A client whose daemon answered a ping; DaemonUnavailable otherwise."""
    from .._client.sync import Client

    client = Client(config, timeout=timeout_s)
    try:
        client.ping(timeout=PING_TIMEOUT_S)
    except BaseException:
        client.close()
        raise
    return client


def ping_quietly(config: Config) -> dict[str, Any] | None:
    """The ping reply of a daemon on ``config``'s run dir, or None."""
    from .._client.sync import Client

    with Client(config, timeout=PING_TIMEOUT_S) as client:
        try:
            return client.ping(timeout=PING_TIMEOUT_S)
        except DaemonUnavailable:
            return None


def ensure_daemon(config: Config, *, why: str, timeout_s: float = 30.0) -> None:
    """Start a daemon for ``config`` (detached) unless one already answers.
    Says so on stderr (stdout may be a protocol stream). Another process
    starting one at the same moment is no failure: its daemon serves us too."""
    if ping_quietly(config) is not None:
        return
    argv = [sys.executable, "-m", "orchestrator", "up", "--config", str(config.path)]
    try:
        pid = start_detached(config, argv=argv, timeout_s=timeout_s)
    except DetachFailed:
        if ping_quietly(config) is None:
            raise
        return
    print(
        f"{why}: started the zskill daemon (pid {pid}, run dir {config.run_dir})",
        file=sys.stderr,
        flush=True,
    )


class DetachFailed(CliError):
    """The detached daemon exited (or never answered) before serving."""


def _tail(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def start_detached(config: Config, *, argv: Sequence[str], timeout_s: float = 15.0) -> int:
    """Run ``argv`` (the daemon's command) in the background, its output
    appended to the run dir's file for it, and wait until the daemon it
    starts answers. Returns its pid; raises DetachFailed."""
    out_path = RunDir(config.run_dir).detached_output
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=config.base_dir,
            start_new_session=True,  # survives this terminal; Ctrl-C here is not its signal
        )
    deadline = time.monotonic() + timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            raise DetachFailed(
                f"the daemon exited with code {code} before serving; "
                f"its output ({out_path}):\n{_tail(out_path, offset)}"
            )
        reply = ping_quietly(config)
        # Another daemon answering means ours will fail on the run dir's lock.
        if reply is not None and reply.get("pid") == proc.pid:
            return proc.pid
        if time.monotonic() > deadline:
            raise DetachFailed(
                f"the daemon (pid {proc.pid}) did not answer within {timeout_s:g} s; "
                f"it keeps running; see {out_path}"
            )
        time.sleep(0.1)


class DaemonProcess:
    """The daemon's process, identified by pid and start time (so a reused
    pid is not mistaken for it), watched until it is gone."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.pid = pid
        try:
            self._proc: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._proc = None

    def gone(self) -> bool:
        import psutil

        if self._proc is None:
            return True
        try:
            return not self._proc.is_running() or self._proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return False

    def wait_gone(self, timeout_s: float, *, poll_s: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.gone():
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
        return True
