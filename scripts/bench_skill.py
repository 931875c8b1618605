#!/usr/bin/env python3
"""A skill process's cold start and idle memory, next to their floor.

The floor: a bare interpreter that imports pyzmq, msgpack and pydantic,
connects a DEALER socket and sends one message -- the least a skill process
must do before the daemon hears from it. Timed from just before it is
spawned to the message's arrival at a ROUTER socket this script binds.

zskill: the ``echo`` example stopped and started by a real daemon, ``--rounds``
times; the daemon's own rollout steps time it (spawn + hello: its hello
arrived; + health: its first health check answered). Memory: RSS and USS of
the idle skill process after a few calls, next to the floor process's, also
idle after its message. Targets (issue "Performance"): cold start to hello
and to healthy at most 1.5x the floor; an idle example skill at most 25 MB
resident.

    .venv/bin/python scripts/bench_skill.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import zmq
from _harness import LocalDaemon, skill_table

FLOOR = """
import sys, time
import zmq, msgpack, pydantic
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.connect(sys.argv[1])
s.send(msgpack.packb(["hello", 1]))
sys.stdin.read()  # idle until the bench has measured it
"""


def floor_round(endpoint: str, router: zmq.Socket[bytes]) -> tuple[float, psutil.Process, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR, endpoint], stdin=subprocess.PIPE)
    if not router.poll(30_000):
        proc.kill()
        raise SystemExit("the floor process never sent its message")
    router.recv_multipart()
    return time.perf_counter() - t0, psutil.Process(proc.pid), proc


def memory_mb(p: psutil.Process) -> tuple[float, float]:
    info = p.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    ctx = zmq.Context()
    tmp = Path(tempfile.mkdtemp(prefix="zf", dir="/tmp"))
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tmp}/floor.sock"
    router.bind(endpoint)

    floors: list[float] = []
    colds: list[float] = []
    healthy: list[float] = []
    floor_mem: tuple[float, float] = (0.0, 0.0)
    skill_mem: tuple[float, float] = (0.0, 0.0)
    with LocalDaemon(skill_table("echo"), prefix="zk") as d:
        client = d.client
        for _ in range(args.rounds):
            # Alternate floor and zskill so both see the same machine.
            took, p, proc = floor_round(endpoint, router)
            floors.append(took)
            time.sleep(0.5)  # let it settle before reading its memory
            floor_mem = memory_mb(p)
            proc.communicate(b"")

            client.stop("echo")
            client.start("echo")
            events = [e for e in client.events("echo", limit=30) if e["type"] == "rollout"]
            steps = {
                e["data"]["step"]: e["data"]["elapsed_s"]
                for e in events
                if e["data"]["status"] == "ok"
            }
            colds.append(steps.get("spawn", 0) + steps.get("hello", 0))
            healthy.append(colds[-1] + steps.get("health", 0))
        for _ in range(20):
            client.call("echo", "say", {"text": "hi"})
        time.sleep(0.5)
        skill_mem = memory_mb(
            psutil.Process(next(s["pid"] for s in client.list() if s["name"] == "echo"))
        )
    router.close(0)
    ctx.term()

    floor = statistics.median(floors)
    cold, ready = statistics.median(colds), statistics.median(healthy)
    print(f"rounds: {args.rounds} (medians)")
    print(f"{'':34} {'ms':>8} {'x floor':>8}")
    print(f"{'floor: spawn -> one message':34} {floor * 1000:8.1f} {1.0:8.2f}")
    print(f"{'echo: spawn -> hello':34} {cold * 1000:8.1f} {cold / floor:8.2f}")
    print(f"{'echo: spawn -> healthy':34} {ready * 1000:8.1f} {ready / floor:8.2f}")
    print(f"{'':34} {'RSS MB':>8} {'USS MB':>8}")
    print(f"{'floor process, idle':34} {floor_mem[0]:8.1f} {floor_mem[1]:8.1f}")
    print(f"{'echo skill process, idle':34} {skill_mem[0]:8.1f} {skill_mem[1]:8.1f}")
    met = cold <= 1.5 * floor and ready <= 1.5 * floor and skill_mem[0] <= 25
    print("targets met" if met else "targets NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
