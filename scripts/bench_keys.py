#!/usr/bin/env python3
"""What an idempotency key costs a call, against the same call without one,
in the same run: one daemon, the echo example skill's ``noop`` tool, one
caller on one Client, calls one after another.

  no key          the baseline
  new key         each call a new key: digest, a START and a DONE record
                  appended to idempotency.log, the entry kept
  retry           a key already done: answered from the daemon's record,
                  the skill not called at all

Prints p50 and p99 round trips and the ratio of each p50 to the baseline's,
and the size of idempotency.log at the end.

    .venv/bin/python scripts/bench_keys.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from _harness import LocalDaemon, skill_table


def timed(n: int, call: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    n = args.calls
    config = "[daemon]\nrun_dir = '.zskill'\n\n" + skill_table("echo")
    with LocalDaemon(config, prefix="zbk") as d:
        c = d.client
        for i in range(200):  # warm-up: the tool proven fast runs inline
            c.call("echo", "noop", {})
            c.call("echo", "noop", {}, key=f"warm-{i}")
        rows = {}
        # Interleaved in rounds, so that the machine's noise falls on all three.
        plain: list[float] = []
        keyed: list[float] = []
        retry: list[float] = []
        rounds = 10
        for r in range(rounds):
            m = n // rounds
            plain += timed(m, lambda i: c.call("echo", "noop", {}))
            keyed += timed(m, lambda i, r=r: c.call("echo", "noop", {}, key=f"k-{r}-{i}"))
            retry += timed(m, lambda i, r=r: c.call("echo", "noop", {}, key=f"k-{r}-{i}"))
        rows = {"no key": plain, "new key": keyed, "retry (answered from the record)": retry}
        log_bytes = (d.root / ".zskill" / "idempotency.log").stat().st_size
    base = statistics.median(plain)
    print(f"{'calls':<34}{'p50 us':>10}{'p99 us':>10}{'p50 ratio':>11}")
    for name, xs in rows.items():
        xs.sort()
        p50, p99 = statistics.median(xs), xs[int(len(xs) * 0.99) - 1]
        print(f"{name:<34}{p50 * 1e6:>10.0f}{p99 * 1e6:>10.0f}{p50 / base:>11.2f}")
    print(f"idempotency.log: {log_bytes} bytes for {n + 200} keys")


if __name__ == "__main__":
    main()
