#!/usr/bin/env python3
"""Canaries and instances under closed-loop load, on one daemon each.

1. A faulty release (every call of it fails) reaches callers two ways, with
   the same callers calling ``echo.say`` without pause:

     plain     ``zskill upgrade``: it takes every call at once; rolled back
               by hand one step (``--step-s``) later -- the baseline;
     canary    ``zskill upgrade --canary 10,50,100``: it takes 10% of the
               calls and the daemon rolls it back at the step's end.

   Reported: calls while the faulty version was live, failed calls, their
   share, and the time from its first call to its rollback. Targets (canary):
   failed calls within the canary's share of one step's calls (10%, plus
   one call per caller for the calls in flight at the edges), rollback
   within one step (``step_s`` plus one daemon tick, 0.1 s).

2. A CPU-bound tool (``spin``: a Python loop of ``--spin`` iterations, a
   fixed amount of work that holds its process's GIL; ``slow.work`` would not
   do, it spins until a wall-clock deadline) with ``instances = 1`` and
   ``instances = 2``: calls/s each. Target: >= 1.6x on 2 cores.

    .venv/bin/python scripts/bench_canary.py [--step-s 3] [--callers 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import LocalDaemon, release, skill_table

from orchestrator import UpgradeFailed

SPIN = '''
@skill.tool()
def spin(n: int) -> int:
    """Count to n: CPU work that holds the GIL."""
    total = 0
    for i in range(n):
        total += i
    return total

'''
FAULTY = {'return " ".join([text] * times)': 'raise ValueError("faulty release")'}


class Load:
    """Closed-loop callers on one client: each call's end time and outcome."""

    def __init__(self, client: Any, callers: int, tool: tuple[str, str, dict[str, Any]]) -> None:
        self.client, self.tool = client, tool
        self.done: list[tuple[float, bool, str]] = []  # (end, ok, version or error)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(callers)]

    def _run(self) -> None:
        skill, name, args = self.tool
        while not self._stop.is_set():
            try:
                r = self.client.call_detailed(skill, name, args, timeout=60)
                outcome = (time.monotonic(), True, r.version)
            except Exception as exc:
                outcome = (time.monotonic(), False, type(exc).__name__)
            with self._lock:
                self.done.append(outcome)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def between(self, t0: float, t1: float) -> list[tuple[float, bool, str]]:
        with self._lock:
            return [d for d in self.done if t0 <= d[0] <= t1]


def faulty_release(callers: int, step_s: float) -> list[dict[str, Any]]:
    return [_faulty_run(mode, callers, step_s) for mode in ("plain", "canary")]


def _faulty_run(mode: str, callers: int, step_s: float) -> dict[str, Any]:
    with LocalDaemon(skill_table("echo", grace_s=5), prefix="zbc") as d:
        bad = release(d.root, "echo", "2.0.0", replace=FAULTY)
        marks: dict[str, float] = {}  # "step:status" -> when it was first heard

        def progress(p: Any) -> None:
            if isinstance(p, dict):
                marks.setdefault(f"{p.get('step')}:{p.get('status')}", time.monotonic())

        with Load(d.client, callers, ("echo", "say", {"text": "x"})) as load:
            time.sleep(1.0)  # warm
            t_start = time.monotonic()
            if mode == "plain":
                d.client.upgrade("echo", from_dir=bad, on_progress=progress)
                live_at = marks.get("switch:ok", t_start)
                time.sleep(step_s)  # someone notices within one step, and rolls back
                d.client.rollback("echo")
                gone_at = time.monotonic()
            else:
                plan = {"weights": [10, 50, 100], "step_s": step_s}
                with contextlib.suppress(UpgradeFailed):  # rolled back: what is measured
                    d.client.upgrade("echo", from_dir=bad, canary=plan, on_progress=progress)
                live_at = marks.get("canary:started", t_start)
                gone_at = marks.get("canary:failed", time.monotonic())
            time.sleep(0.5)
        calls = load.between(live_at, gone_at + 0.05)
        failed = sum(1 for c in calls if not c[1])
        outside = [c for c in load.done if not live_at <= c[0] <= gone_at + 0.05]
        return {
            "mode": mode,
            "calls": len(calls),
            "failed": failed,
            "share": failed / len(calls) if calls else 0.0,
            "rollback_s": gone_at - live_at,
            "stable_failed": sum(1 for c in outside if not c[1]),
        }


def cpu_bound(callers: int, seconds: float, spin: int) -> list[dict[str, Any]]:
    rows = []
    for n in (1, 2):
        code = Path(tempfile.mkdtemp(prefix="zbs", dir="/tmp"))
        try:
            path = release(code, "slow", "1.0.0", extra=SPIN)
            cfg = skill_table("slow", path, instances=n, concurrency=8)
            with (
                LocalDaemon(cfg, prefix="zbi") as d,
                Load(d.client, callers, ("slow", "spin", {"n": spin})) as load,
            ):
                time.sleep(1.0)
                t0 = time.monotonic()
                time.sleep(seconds)
                t1 = time.monotonic()
        finally:
            shutil.rmtree(code, ignore_errors=True)
        calls = load.between(t0, t1)
        failed = sum(1 for c in calls if not c[1])
        rows.append({"instances": n, "calls_per_s": len(calls) / (t1 - t0), "failed": failed})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--step-s", type=float, default=3.0)
    ap.add_argument("--callers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0, help="per instances setting")
    ap.add_argument("--spin", type=int, default=200_000, help="iterations per call")
    a = ap.parse_args()

    print(f"1. a faulty release (every call fails), {a.callers} closed-loop callers, "
          f"step {a.step_s:g} s")  # fmt: skip
    rows = faulty_release(a.callers, a.step_s)
    print(f"{'mode':<8}{'calls':>8}{'failed':>8}{'share':>8}{'rolled back after':>19}"
          f"{'other failed':>14}")  # fmt: skip
    for r in rows:
        print(f"{r['mode']:<8}{r['calls']:>8}{r['failed']:>8}{r['share']:>8.1%}"
              f"{r['rollback_s']:>17.2f} s{r['stable_failed']:>14}")  # fmt: skip
    canary = next(r for r in rows if r["mode"] == "canary")
    bound = 0.10 * canary["calls"] + a.callers
    print(f"   canary: failed {canary['failed']} <= 10% of its step's calls + {a.callers} in "
          f"flight = {bound:.0f}: {'yes' if canary['failed'] <= bound else 'NO'}; rolled back "
          f"within one step ({a.step_s:g} s + 0.1 s tick): "
          f"{'yes' if canary['rollback_s'] <= a.step_s + 0.1 + 0.05 else 'NO'}")  # fmt: skip

    print(f"\n2. spin ({a.spin} iterations a call), 8 closed-loop callers, {a.seconds:g} s each")
    cpu = cpu_bound(8, a.seconds, a.spin)
    print(f"{'instances':<10}{'calls/s':>10}{'failed':>8}")
    for r in cpu:
        print(f"{r['instances']:<10}{r['calls_per_s']:>10.1f}{r['failed']:>8}")
    ratio = cpu[1]["calls_per_s"] / cpu[0]["calls_per_s"]
    print(f"   instances = 2 serve {ratio:.2f}x the calls/s of one (target >= 1.6x)")


if __name__ == "__main__":
    main()
