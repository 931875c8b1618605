#!/usr/bin/env python3
"""Pipelined asyncio callers: one AsyncClient, many calls in flight.

Agent loops are asyncio programs; their path is one ``AsyncClient`` with
many calls in flight. Both sides run ``--window`` tasks in one event loop,
each calling in a closed loop, for ``--seconds``:

  floor    a ``zmq.asyncio`` DEALER on the minimal broker and worker of
           ``bench_calls.py`` (no orchestrator logic at all), a reader task
           handing each reply to its request's future by id: the least an
           asyncio client must do;
  zskill   ``AsyncClient.call("echo", "noop")`` through the real daemon.

Rounds alternate the two; the ratio is the median of the rounds' ratios.
Target (issue "Performance"): zskill >= 0.8x the floor at window 64.

    .venv/bin/python scripts/bench_async.py [--window 64] [--seconds 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Awaitable, Callable

from bench_calls import Baseline, Zskill

Call = Callable[[], Awaitable[object]]


async def closed_loop(call: Call, window: int, seconds: float) -> float:
    """Calls per second of ``window`` tasks each calling without pause."""
    for _ in range(window):
        await call()  # connected and warm
    stop = time.monotonic() + seconds
    counts = [0] * window

    async def task(i: int) -> None:
        while time.monotonic() < stop:
            await call()
            counts[i] += 1

    t0 = time.monotonic()
    await asyncio.gather(*(task(i) for i in range(window)))
    return sum(counts) / (time.monotonic() - t0)


async def floor_rate(base: Baseline, window: int, seconds: float) -> float:
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"ipc://{base.dir}/fe.sock")
    pending: dict[bytes, asyncio.Future[None]] = {}
    ids = itertools.count()

    async def reader() -> None:
        while True:
            frames = await sock.recv_multipart()
            fut = pending.pop(frames[0], None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def call() -> None:
        req = str(next(ids)).encode()
        fut = asyncio.get_running_loop().create_future()
        pending[req] = fut
        await sock.send_multipart([req, b"\x80"])
        await fut

    read = asyncio.create_task(reader())
    try:
        return await closed_loop(call, window, seconds)
    finally:
        read.cancel()
        sock.close(linger=0)
        ctx.term()


async def zskill_rate(z: Zskill, window: int, seconds: float) -> float:
    from orchestrator import AsyncClient

    async with AsyncClient(z.daemon.config) as c:

        async def call() -> None:
            await c.call("echo", "noop")

        return await closed_loop(call, window, seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    base, z = Baseline(), Zskill()
    floors, ours = [], []
    try:
        for _ in range(args.rounds):
            floors.append(asyncio.run(floor_rate(base, args.window, args.seconds)))
            ours.append(asyncio.run(zskill_rate(z, args.window, args.seconds)))
    finally:
        z.close()
        base.close()
    ratios = [o / f for o, f in zip(ours, floors, strict=True)]
    print(f"window {args.window}, {args.rounds} rounds of {args.seconds:g} s each")
    print(f"{'round':>5} {'floor calls/s':>14} {'zskill calls/s':>15} {'ratio':>6}")
    for i, (f, o, r) in enumerate(zip(floors, ours, ratios, strict=True), 1):
        print(f"{i:>5} {f:>14.0f} {o:>15.0f} {r:>6.2f}")
    med = statistics.median(ratios)
    print(f"median ratio {med:.2f}x (target >= 0.8x): {'met' if med >= 0.8 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
