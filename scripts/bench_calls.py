#!/usr/bin/env python3
"""Call latency and throughput through zskill, next to a bare pyzmq baseline.

Both sides make the same hop, client -> broker -> worker -> broker -> client,
over ipc:// sockets between three processes:

  baseline   a ROUTER/ROUTER broker forwarding frames and a DEALER worker
             that echoes them: no orchestrator logic at all;
  zskill     the real daemon and the echo example skill's ``noop`` tool,
             called through ``orchestrator.Client``.

Reports sequential round-trip latency (p50, p99) and closed-loop throughput
(calls/s) with 1, 4 and 16 concurrent callers, and the ratios. Like the
baseline's callers (one socket each), each zskill caller has its own
Client; the rows "one shared Client" show the same callers sharing one
connection, pipelined. ``noop`` is a plain ``@skill.tool()``: after its
first 16 calls (the warm-up) it runs on the skill's I/O thread, as any tool
proven fast does. Targets: p50 at most 1.5x the baseline's; throughput at
least 0.7x the baseline's.

    .venv/bin/python scripts/bench_calls.py [--seconds 3] [--latency-calls 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from _harness import LocalDaemon, skill_table

CALLERS = (1, 4, 16)


# --- the baseline: a broker and a worker with no logic -------------------------


def run_broker(d: str) -> None:
    import zmq

    ctx = zmq.Context()
    fe, be = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    fe.bind(f"ipc://{d}/fe.sock")
    be.bind(f"ipc://{d}/be.sock")
    poller = zmq.Poller()
    poller.register(fe, zmq.POLLIN)
    poller.register(be, zmq.POLLIN)
    worker = None
    while True:
        for sock, _ in poller.poll():
            if sock is be:
                frames = be.recv_multipart()
                if frames[1] == b"ready":
                    worker = frames[0]
                else:
                    fe.send_multipart(frames[1:])
            elif worker is not None:
                be.send_multipart([worker, *fe.recv_multipart()])


def run_worker(d: str) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.DEALER)
    sock.connect(f"ipc://{d}/be.sock")
    sock.send(b"ready")
    while True:
        sock.send_multipart(sock.recv_multipart())


Caller = tuple[Callable[[], None], Callable[[], None]]
"""A calling thread's (call, close)."""


class Baseline:
    name = "pyzmq baseline"

    def __init__(self) -> None:
        import zmq

        self.dir = tempfile.mkdtemp(prefix="zb", dir="/tmp")
        me = [sys.executable, __file__]
        self.procs = [
            subprocess.Popen([*me, "--role", "broker", "--dir", self.dir]),
            subprocess.Popen([*me, "--role", "worker", "--dir", self.dir]),
        ]
        self.ctx = zmq.Context()
        deadline = time.monotonic() + 10
        while True:  # until the worker is registered and answers
            call, close = self.caller()
            try:
                call()
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
            finally:
                close()

    def caller(self) -> Caller:
        """One socket, as each zskill caller has its own Client."""
        import zmq

        s = self.ctx.socket(zmq.DEALER)
        s.connect(f"ipc://{self.dir}/fe.sock")

        def call() -> None:
            s.send_multipart([b"1", b"\x80"])
            if not s.poll(2000):
                raise TimeoutError
            s.recv_multipart()

        return call, lambda: s.close(linger=0)

    shared_caller = caller  # the baseline has no shared connection to compare

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


class Zskill:
    """The daemon and the echo skill. ``caller`` gives a calling thread its
    own Client (one connection per caller, as the baseline has one socket per
    caller); with ``shared_caller`` every thread shares one Client."""

    name = "zskill"

    def __init__(self) -> None:
        self.daemon = LocalDaemon(skill_table("echo", concurrency=16)).__enter__()

    def caller(self) -> Caller:
        from orchestrator import Client

        c = Client(self.daemon.config)
        return lambda: c.call("echo", "noop"), c.close

    def shared_caller(self) -> Caller:
        shared = self.daemon.client
        return lambda: shared.call("echo", "noop"), lambda: None

    def close(self) -> None:
        self.daemon.__exit__(None, None, None)


# --- measurements --------------------------------------------------------------


def latency(target: Any, n: int) -> tuple[float, float]:
    call, close = target.caller()
    try:
        for _ in range(min(500, n)):
            call()
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            call()
            samples.append(time.perf_counter() - t)
    finally:
        close()
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def throughput(target: Any, callers: int, seconds: float, shared: bool = False) -> float:
    """Calls per second of ``callers`` threads calling in a closed loop; each
    thread's connection is opened before the clock starts, closed after."""
    opened = [target.shared_caller() if shared else target.caller() for _ in range(callers)]
    counts = [0] * callers
    go = threading.Event()
    stop = 0.0

    def loop(i: int) -> None:
        call = opened[i][0]
        call()  # connected and warm
        go.wait()
        n = 0
        while time.monotonic() < stop:
            call()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    stop = t0 + seconds
    go.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    for _, close in opened:
        close()
    return sum(counts) / elapsed


Measure = Callable[[Any], dict[str, float]]


def measurements(args: argparse.Namespace) -> list[Measure]:
    """Each step measures one or two metrics on one target."""

    def lat(t: Any) -> dict[str, float]:
        p50, p99 = latency(t, args.latency_calls)
        return {"p50_us": p50, "p99_us": p99}

    def tput(n: int, shared: bool) -> Measure:
        def run(t: Any) -> dict[str, float]:
            key = "shared" if shared else "tput"
            return {f"{key}_{n}": throughput(t, n, args.seconds, shared)}

        return run

    steps = [lat]
    for n in CALLERS:
        steps.append(tput(n, False))
        if n > 1:
            steps.append(tput(n, True))  # the baseline's side: its usual callers
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5, help="pairs of runs per metric")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--role", choices=["broker", "worker"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "broker":
        run_broker(args.dir)
        return 0
    if args.role == "worker":
        run_worker(args.dir)
        return 0

    # Both systems run side by side (the idle one costs next to nothing), and
    # every run of one is paired with a run of the other right before or
    # after it, the order alternating: a shared machine's load drifts over
    # seconds to minutes, and a pair sees the same drift. Each metric's ratio
    # is the median of its pairs' ratios.
    results: dict[str, list[dict[str, float]]] = {"baseline": [], "zskill": []}
    ratios: dict[str, list[float]] = {}
    base, zs = Baseline(), Zskill()
    try:
        for step in measurements(args):
            for r in range(args.rounds):
                order = [("baseline", base), ("zskill", zs)]
                got = {key: step(t) for key, t in (order if r % 2 == 0 else order[::-1])}
                results["baseline"].append(got["baseline"])
                results["zskill"].append(got["zskill"])
                for metric, z in got["zskill"].items():
                    ratios.setdefault(metric, []).append(z / got["baseline"][metric])
    finally:
        zs.close()
        base.close()

    def median(key: str, metric: str) -> float:
        return statistics.median(r[metric] for r in results[key] if metric in r)

    rows = []
    checks = []
    for metric, label, target_ratio in (
        ("p50_us", "p50 latency (us)", 1.5),
        ("p99_us", "p99 latency (us)", None),
        *((f"tput_{n}", f"calls/s, {n} caller{'s' * (n > 1)}", 0.7) for n in CALLERS),
        *((f"shared_{n}", f"  {n}, one shared Client", None) for n in CALLERS if n > 1),
    ):
        b = median("baseline", metric)
        z = median("zskill", metric)
        ratio = statistics.median(ratios[metric])
        if target_ratio is None:
            verdict = ""
        elif metric.startswith("p"):
            verdict = "ok" if ratio <= target_ratio else "MISS"
            checks.append(verdict == "ok")
        else:
            verdict = "ok" if ratio >= target_ratio else "MISS"
            checks.append(verdict == "ok")
        goal = (
            ""
            if target_ratio is None
            else (f"<= {target_ratio}x" if metric.startswith("p") else f">= {target_ratio}x")
        )
        rows.append((label, b, z, ratio, goal, verdict))

    if args.json:
        print(json.dumps({"rows": rows, "raw": results}, indent=1))
    else:
        print(f"{'metric':<24}{'baseline':>12}{'zskill':>12}{'ratio':>8}  {'target':<9}")
        for label, b, z, ratio, goal, verdict in rows:
            print(f"{label:<24}{b:>12.0f}{z:>12.0f}{ratio:>7.2f}x  {goal:<9}{verdict}")
        print(
            f"({os.cpu_count()} cores; medians of {args.rounds} back-to-back pairs per metric;"
            " ratio: the median pair's)"
        )
    return 0 if all(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
