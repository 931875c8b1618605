#!/usr/bin/env python3
"""How fast a cancel stops the work, and what progress costs a call, in one
run: one daemon, the batch example skill.

  cancel (sync)   Client.submit, then handle.cancel() once the handler is
                  working (items of 20 ms): the time until the caller has
                  Cancelled, and until the handler wrote its "end" line
  cancel (async)  the same through AsyncClient, the awaiting task cancelled
  progress        round trips of process(items=1, step_s=0) with and
                  without on_progress (one update per call)

    .venv/bin/python scripts/bench_cancel.py [--runs 20] [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from pathlib import Path

from _harness import LocalDaemon, skill_table

from orchestrator import AsyncClient, Cancelled


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for_end(log: Path, t0: float) -> float:
    while "end" not in lines(log):
        time.sleep(0.001)
    return time.monotonic() - t0


def ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
    return f"{statistics.median(values) * 1000:8.2f} {q[98] * 1000:8.2f}"


WORK = {"items": 10_000, "step_s": 0.02}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    with LocalDaemon(skill_table("batch", concurrency=4)) as d:
        zs = d.client
        answered, stopped = [], []
        for i in range(args.runs):
            log = d.root / f"sync-{i}.log"
            handle = zs.submit(
                "batch", "process", {"items": 10_000, "step_s": 0.02, "log": str(log)}
            )
            while len(lines(log)) < 3:
                time.sleep(0.001)
            t0 = time.monotonic()
            handle.cancel()
            try:
                handle.result()
            except Cancelled:
                answered.append(time.monotonic() - t0)
            stopped.append(wait_for_end(log, t0))

        async def cancel_tasks() -> list[float]:
            out = []
            async with AsyncClient(d.config) as client:
                for i in range(args.runs):
                    log = d.root / f"async-{i}.log"
                    task = asyncio.create_task(
                        client.call(
                            "batch",
                            "process_async",
                            {"items": 10_000, "step_s": 0.02, "log": str(log)},
                        )
                    )
                    while len(lines(log)) < 3:
                        await asyncio.sleep(0.001)
                    t0 = time.monotonic()
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    out.append(await asyncio.to_thread(wait_for_end, log, t0))
            return out

        stopped_async = asyncio.run(cancel_tasks())

        def round_trips(on_progress: object) -> list[float]:
            out = []
            for _ in range(args.calls):
                t0 = time.perf_counter()
                zs.call("batch", "process", {"items": 1, "step_s": 0.0}, on_progress=on_progress)
                out.append(time.perf_counter() - t0)
            return out

        round_trips(None)  # warm up
        plain = round_trips(None)
        with_progress = round_trips(lambda p: None)

    print(f"{'':34} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'cancel (sync): Cancelled answered':34} {ms(answered)}")
    print(f"{'cancel (sync): handler stopped':34} {ms(stopped)}")
    print(f"{'cancel (async): handler stopped':34} {ms(stopped_async)}")
    print(f"{'call without on_progress':34} {ms(plain)}")
    print(f"{'call with on_progress (1 update)':34} {ms(with_progress)}")
    ratio = statistics.median(with_progress) / statistics.median(plain)
    print(f"progress / plain p50: {ratio:.2f}")


if __name__ == "__main__":
    main()
