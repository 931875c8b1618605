#!/usr/bin/env python3
"""Calls under load while a skill is upgraded many times in a row.

Closed-loop callers (a few, sharing one client) call ``slow.work`` (a few
ms of CPU) without pause. Three phases in one run, on one daemon:

  steady     no upgrade: the reference figures;
  upgrades   the skill upgraded N times in a row (alternating releases);
  broken     N upgrades to a release whose health check fails (rolled back).

Reports calls, failed calls, p50/p99/max latency per phase, and the time
from the upgrade command to the new version serving (client side, until the
switch) next to the skill's own cold start (spawn to hello) plus its health
check -- both as measured on an idle start and, for the target, as the same
steps took in the same upgrades under the same load. Targets: zero failed calls;
max latency during upgrades at most 2x the max without; new version serving
within 1.5x cold start + health check.

    .venv/bin/python scripts/bench_upgrade.py [--upgrades 10] [--callers 4]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from _harness import LocalDaemon, release, skill_table


class Load:
    def __init__(self, client: Any, callers: int, work_ms: float) -> None:
        self.client = client
        self.work_ms = work_ms
        self.samples: list[float] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(callers)]

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.client.call("slow", "work", {"ms": self.work_ms}, timeout=60)
            except Exception as exc:
                with self._lock:
                    self.failed.append(f"{type(exc).__name__}: {exc}")
                continue
            dt = time.perf_counter() - t0
            with self._lock:
                self.samples.append(dt)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def take(self) -> tuple[list[float], list[str]]:
        """The samples and failures since the last take."""
        with self._lock:
            s, f = self.samples, self.failed
            self.samples, self.failed = [], []
        return s, f

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


# The broken release: its health hook says no.
UNHEALTHY = {"def healthy() -> bool:\n    return True": "def healthy() -> bool:\n    return False"}


def stats(samples: list[float], failed: list[str]) -> dict[str, float]:
    s = sorted(samples)
    if not s:
        return {"calls": len(failed), "failed": len(failed), "p50": 0, "p99": 0, "max": 0}
    return {
        "calls": len(s) + len(failed),
        "failed": len(failed),
        "p50": statistics.median(s) * 1000,
        "p99": s[int(len(s) * 0.99)] * 1000,
        "max": s[-1] * 1000,
    }


def timed_upgrade(client: Any, src: Path) -> tuple[float, dict[str, float], bool]:
    """Client-side seconds from the command to the switch, and step times."""
    t0 = time.perf_counter()
    serving: list[float] = []

    def progress(p: dict[str, Any]) -> None:
        if p["step"] == "switch" and p["status"] == "ok":
            serving.append(time.perf_counter() - t0)

    steps: dict[str, float] = {}
    try:
        report = client.upgrade("slow", src, on_progress=progress)
        ok = True
        for s in report["steps"]:
            steps[s["step"]] = s["elapsed_s"]
    except Exception:
        ok = False
    total = serving[0] if serving else time.perf_counter() - t0
    return total, steps, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upgrades", type=int, default=10)
    ap.add_argument("--callers", type=int, default=4)
    ap.add_argument("--work-ms", type=float, default=3.0)
    ap.add_argument("--steady-s", type=float, default=5.0)
    args = ap.parse_args()

    ok = True
    with LocalDaemon(skill_table("slow", concurrency=8, grace_s=30), prefix="zu") as d:
        client, root = d.client, d.root
        # The skill's own cold start, measured by the daemon: restart from stopped.
        colds, healths = [], []
        for _ in range(3):
            client.stop("slow")
            client.start("slow")
            ev = [e for e in client.events("slow", limit=20) if e["type"] == "rollout"]
            last = {
                e["data"]["step"]: e["data"]["elapsed_s"] for e in ev if e["data"]["status"] == "ok"
            }
            colds.append(last.get("spawn", 0) + last.get("hello", 0))
            healths.append(last.get("health", 0))
        cold, health = statistics.median(colds), statistics.median(healths)

        good = [release(root, "slow", v) for v in ("2.0.0", "3.0.0")]
        bad = release(root, "slow", "9.9.9", replace=UNHEALTHY)
        load = Load(client, args.callers, args.work_ms)
        load.start()
        time.sleep(1.0)
        load.take()  # warm-up
        time.sleep(args.steady_s)
        steady = stats(*load.take())

        to_serving: list[float] = []
        loaded_start: list[float] = []  # the new process's own spawn+hello+health
        for i in range(args.upgrades):
            t, steps, up_ok = timed_upgrade(client, good[i % 2])
            ok &= up_ok
            to_serving.append(t)
            loaded_start.append(sum(steps.get(k, 0.0) for k in ("spawn", "hello", "health")))
        upgrading = stats(*load.take())

        rollback_s: list[float] = []
        for _ in range(args.upgrades):
            t0 = time.perf_counter()
            _t, _steps, up_ok = timed_upgrade(client, bad)
            rollback_s.append(time.perf_counter() - t0)
            ok &= not up_ok
        broken = stats(*load.take())
        load.stop()

    print(f"{'phase':<26}{'calls':>8}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, s in (
        ("no upgrade", steady),
        (f"{args.upgrades} upgrades", upgrading),
        (f"{args.upgrades} broken (rolled back)", broken),
    ):
        print(
            f"{name:<26}{s['calls']:>8.0f}{s['failed']:>8.0f}{s['p50']:>9.2f}"
            f"{s['p99']:>9.2f}{s['max']:>9.2f}"
        )
    serve_med = statistics.median(to_serving)
    # The same start-up measured in the same run, under the same load: what
    # zskill adds on top of the skill's own start is the ratio to this.
    budget = statistics.median(loaded_start)
    print()
    print(f"cold start (spawn -> hello), idle, median of 3:   {cold * 1000:8.1f} ms")
    print(f"health check, idle:                               {health * 1000:8.1f} ms")
    print(f"cold start + health under the load, median:       {budget * 1000:8.1f} ms")
    print(
        f"command -> new version serving, median:           {serve_med * 1000:8.1f} ms "
        f"(max {max(to_serving) * 1000:.1f})"
    )
    print(
        f"  ratio to cold start + health under load {serve_med / budget:.2f}x, "
        f"to idle cold start + health {serve_med / (cold + health):.2f}x"
    )
    print(
        "broken release rejected, median:                  "
        f"{statistics.median(rollback_s) * 1000:8.1f} ms"
    )
    checks = {
        "zero failed calls": steady["failed"] + upgrading["failed"] + broken["failed"] == 0,
        "max latency during upgrades <= 2x steady max": upgrading["max"] <= 2 * steady["max"],
        "max latency during broken upgrades <= 2x steady max": broken["max"] <= 2 * steady["max"],
        "serving within 1.5x cold start + health (same load)": serve_med <= 1.5 * budget,
        "every upgrade succeeded, every broken one rolled back": ok,
    }
    print()
    for name, passed in checks.items():
        print(f"{'ok  ' if passed else 'MISS'} {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
