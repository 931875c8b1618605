#!/usr/bin/env python3
"""CPU time per call, by process: the daemon, the skill, the client.

Wall-clock latency on a shared machine moves with whatever else runs; the
CPU each process spends per call moves far less, so this is the figure to
compare two versions of zskill by. It starts a daemon with the echo
example skill, makes 500 warm-up calls to ``noop`` and then ``--calls``
more from one caller, and prints the user+system CPU each process used per
call. To compare this tree with an older commit, alternate runs of the
two, the older one first on PYTHONPATH (the daemon and the skill inherit it):

    git worktree add /tmp/old 036d6cf
    PYTHONPATH=/tmp/old .venv/bin/python scripts/bench_cpu_per_call.py --repo /tmp/old
    .venv/bin/python scripts/bench_cpu_per_call.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repo", type=Path, default=REPO, help="the tree whose example skill runs")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zc", dir="/tmp"))
    (root / "zskill.toml").write_text(
        f'[daemon]\nrun_dir = ".zskill"\n[skills.echo]\n'
        f'path = "{args.repo}/skills/examples/echo"\ncommand = ["python", "main.py"]\n'
    )
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "up",
            "--quiet",
            "--config",
            str(root / "zskill.toml"),
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from orchestrator import Client

    client = Client(root / "zskill.toml")
    try:
        deadline = time.monotonic() + 30
        while not any(s["state"] == "running" for s in _listing(client)):
            if time.monotonic() > deadline:
                raise SystemExit("the echo skill did not start within 30 s")
            time.sleep(0.1)
        for _ in range(500):
            client.call("echo", "noop", {})
        procs = [psutil.Process(daemon.pid), *psutil.Process(daemon.pid).children(recursive=True)]
        me = psutil.Process()

        def cpu_s() -> list[float]:
            return [sum(p.cpu_times()[:2]) for p in [*procs, me]]

        before = cpu_s()
        for _ in range(args.calls):
            client.call("echo", "noop", {})
        per = [(b - a) / args.calls * 1e6 for a, b in zip(before, cpu_s(), strict=True)]
        print(
            f"CPU us per call: daemon {per[0]:.0f}, skill {sum(per[1:-1]):.0f}, "
            f"client {per[-1]:.0f}, total {sum(per):.0f}  ({args.calls} calls, {args.repo})"
        )
        client.shutdown()
    finally:
        client.close()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _listing(client: object) -> list[dict[str, object]]:
    try:
        return client.list()  # type: ignore[attr-defined,no-any-return]
    except Exception:  # the daemon is still starting
        return []


if __name__ == "__main__":
    sys.exit(main())
