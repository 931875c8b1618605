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
        self._local = threading.local()
        deadline = time.monotonic() + 10
        while True:  # until the worker is registered and answers
            try:
                self.call()
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                self._local.sock.close(linger=0)
                del self._local.sock

    def _sock(self) -> Any:
        import zmq

        s = getattr(self._local, "sock", None)
        if s is None:
            s = self._local.sock = self.ctx.socket(zmq.DEALER)
            s.connect(f"ipc://{self.dir}/fe.sock")
        return s

    def call(self) -> None:
        s = self._sock()
        s.send_multipart([b"1", b"\x80"])
        if not s.poll(2000):
            raise TimeoutError
        s.recv_multipart()

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


class Zskill:
    """The daemon and the echo skill. ``call`` gives each calling thread its
    own Client (one connection per caller, as the baseline has one socket per
    caller); ``call_shared`` has every thread share one Client."""

    name = "zskill"

    def __init__(self) -> None:
        from orchestrator import Client

        self.daemon = LocalDaemon(skill_table("echo", concurrency=16)).__enter__()
        self.shared = self.daemon.client
        self._local = threading.local()
        self._clients: list[Client] = []
        self._new = lambda: Client(self.daemon.config)

    def call(self) -> None:
        c = getattr(self._local, "client", None)
        if c is None:
            c = self._local.client = self._new()
            self._clients.append(c)
        c.call("echo", "noop")

    def call_shared(self) -> None:
        self.shared.call("echo", "noop")

    def close(self) -> None:
        for c in self._clients:
            c.close()
        self.daemon.__exit__(None, None, None)


# --- measurements --------------------------------------------------------------


def latency(call: Callable[[], None], n: int) -> tuple[float, float]:
    for _ in range(min(500, n)):
        call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples) * 1e6, samples[int(len(samples) * 0.99)] * 1e6


def throughput(call: Callable[[], None], callers: int, seconds: float) -> float:
    stop = time.monotonic() + seconds
    counts = [0] * callers

    def loop(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            call()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(callers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def measure(target: Any, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    out["p50_us"], out["p99_us"] = latency(target.call, args.latency_calls)
    for n in CALLERS:
        throughput(target.call, n, 0.3)  # warm up threads and queues
        out[f"tput_{n}"] = throughput(target.call, n, args.seconds)
        if isinstance(target, Zskill) and n > 1:
            out[f"shared_{n}"] = throughput(target.call_shared, n, args.seconds)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    ap.add_argument("--latency-calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each")
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

    results: dict[str, list[dict[str, float]]] = {"baseline": [], "zskill": []}
    # Alternate the two so that noise on a shared machine hits both alike.
    for _ in range(args.rounds):
        for key, cls in (("baseline", Baseline), ("zskill", Zskill)):
            target = cls()
            try:
                results[key].append(measure(target, args))
            finally:
                target.close()

    def best(key: str, metric: str) -> float:
        values = [r[metric] for r in results[key]]
        return min(values) if "_us" in metric else max(values)

    rows = []
    checks = []
    for metric, label, target_ratio in (
        ("p50_us", "p50 latency (us)", 1.5),
        ("p99_us", "p99 latency (us)", None),
        *((f"tput_{n}", f"calls/s, {n} caller{'s' * (n > 1)}", 0.7) for n in CALLERS),
        *((f"shared_{n}", f"  {n}, one shared Client", None) for n in CALLERS if n > 1),
    ):
        b = best("baseline", metric.replace("shared", "tput"))
        z = best("zskill", metric)
        ratio = z / b
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
        print(f"({os.cpu_count()} cores; best of {args.rounds} alternating rounds)")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
