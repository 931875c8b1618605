#!/usr/bin/env python3
"""The daemon's own CPU with idle skills, alone and with the dashboard open.

Starts a daemon with N idle echo skills (default 20), waits until they all
serve, then measures over a window (default 30 s) the CPU time the daemon
process itself used (not its skills): first with nothing connected, then
with ``zskill dashboard`` running in a real terminal (a pseudo-terminal of
100x40, its output read and thrown away) polling at its default rate. Also
reports the dashboard's own CPU and the skills' (heartbeats). Target: the
daemon under 2% of one core with the dashboard open.

    .venv/bin/python scripts/bench_idle_cpu.py [--skills 20] [--window-s 30]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
IDLE_SKILL = """\
import os

from skills import Skill

# One directory serves every idle skill: each takes the name it is configured as.
skill = Skill(os.environ["ZSKILL_SKILL"], version="1.0.0")


@skill.tool()
def ping() -> str:
    return "pong"


if __name__ == "__main__":
    skill.run()
"""
TARGET_PERCENT = 2.0


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def tree_cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += cpu_s(p)
    return total


def measure(
    daemon: psutil.Process, others: list[psutil.Process], window_s: float
) -> tuple[float, float]:
    """CPU % of one core used by ``daemon`` and by ``others`` over the window."""
    d0, o0, t0 = cpu_s(daemon), tree_cpu_s(others), time.monotonic()
    time.sleep(window_s)  # the measurement window itself, not a synchronisation
    d1, o1, t1 = cpu_s(daemon), tree_cpu_s(others), time.monotonic()
    return (d1 - d0) / (t1 - t0) * 100, (o1 - o0) / (t1 - t0) * 100


class Terminal:
    """A command on a pseudo-terminal whose output is drained and dropped."""

    def __init__(self, argv: list[str], cwd: Path, cols: int = 100, rows: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ, TERM="xterm-256color")
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
            start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self._master = master
        self.bytes_read = 0
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            self.bytes_read += len(data)

    def send(self, data: bytes) -> None:
        os.write(self._master, data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(b"q")
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._master)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skills", type=int, default=20)
    ap.add_argument("--window-s", type=float, default=30.0)
    args = ap.parse_args()

    from orchestrator import Client

    root = Path(tempfile.mkdtemp(prefix="zi", dir="/tmp"))
    cfg = root / "zskill.toml"
    (root / "idle").mkdir()
    (root / "idle" / "main.py").write_text(IDLE_SKILL)
    tables = [
        f'[skills.idle{i:02d}]\npath = "idle"\ncommand = ["python", "main.py"]\n'
        for i in range(1, args.skills + 1)
    ]
    cfg.write_text("\n".join(tables))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "up", "--quiet", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
    )
    dash: Terminal | None = None
    try:
        client = Client(cfg)
        deadline = time.monotonic() + 60
        while True:
            try:
                states = [s["state"] for s in client.list()]
                if len(states) == args.skills and all(s == "running" for s in states):
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the skills did not all start within 60 s")
            time.sleep(0.1)
        client.close()
        time.sleep(3.0)  # let start-up settle before measuring
        me = psutil.Process(daemon.pid)
        skills = me.children(recursive=True)

        alone, skills_pct = measure(me, skills, args.window_s)

        zskill = [sys.executable, "-m", "orchestrator", "dashboard", "--config", str(cfg)]
        dash = Terminal(zskill, root)
        time.sleep(3.0)  # the dashboard starts and draws its first frames
        if dash.proc.poll() is not None:
            raise SystemExit(f"the dashboard exited with code {dash.proc.returncode}")
        dash_proc = psutil.Process(dash.proc.pid)
        with_dash, dash_pct = measure(me, [dash_proc], args.window_s)
        drawn = dash.bytes_read
    finally:
        if dash is not None:
            dash.close()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        shutil.rmtree(root, ignore_errors=True)

    cores = psutil.cpu_count() or 1
    print(f"{args.skills} idle skills, {args.window_s:g} s windows, {cores} cores; % of one core")
    print(f"{'':<40}{'CPU %':>8}")
    print(f"{'daemon, nothing connected':<40}{alone:>8.2f}")
    print(f"{'daemon, dashboard open':<40}{with_dash:>8.2f}")
    print(f"{'the dashboard itself':<40}{dash_pct:>8.2f}")
    print(f"{'the skills, all together':<40}{skills_pct:>8.2f}")
    print(f"(the dashboard wrote {drawn / 1024:.0f} KiB of frames to its terminal)")
    passed = with_dash < TARGET_PERCENT
    print(f"\n{'ok  ' if passed else 'MISS'} daemon under {TARGET_PERCENT:g}% of a core with the "
          "dashboard open")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
