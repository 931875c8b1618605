#!/usr/bin/env python3
"""Soak: many calls while skills are killed, hung and upgraded at random.

Callers speak the wire protocol on raw DEALER sockets, so every reply frame
is seen and counted: a call with no reply is *lost*, a second reply for one
request a *duplicate*, a result other than the echo of the call's own text
*wrong*. Failures the delivery semantics allow (``OutcomeUnknown`` for a
call running on a killed process, ``CallTimeout``) are counted by type.

Meanwhile a chaos thread picks, every ``--chaos-s`` seconds, one of: SIGKILL
a skill process, SIGSTOP one (the daemon's liveness check must kill and
replace it), upgrade ``echo`` to the other of two releases, restart it.

Reports lost (must be 0), wrong (0) and duplicate (0) answers, and the
daemon's RSS after warm-up against the end (growth within 10%).

    .venv/bin/python scripts/soak.py [--calls 1000000] [--callers 8] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import zmq
from _harness import LocalDaemon, release, skill_table

import ipc
from orchestrator._rundir import RunDir


class Caller(threading.Thread):
    """Keeps ``window`` calls in flight on one DEALER until its share is done."""

    def __init__(self, n: int, endpoint: str, calls: int, window: int, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.n, self.endpoint, self.calls = n, endpoint, calls
        self.window, self.timeout_s = window, timeout_s
        self.expected: dict[int, str] = {}
        self.answered: Counter[int] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.wrong = 0
        self.duplicates = 0

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        sent = 0
        pending: set[int] = set()
        last_reply = time.monotonic()
        while sent < self.calls or pending:
            while sent < self.calls and len(pending) < self.window:
                req = sent
                text = f"{self.n}-{req}"
                self.expected[req] = text
                payload = ipc.encode_payload({"text": text})
                msg = ipc.CallRequest(req, "echo", "say", self.timeout_s, payload)
                sock.send_multipart(ipc.encode(msg))
                pending.add(req)
                sent += 1
            if not sock.poll(1000):
                if time.monotonic() - last_reply > self.timeout_s + 30:
                    break  # the rest are lost: the report says how many
                continue
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                last_reply = time.monotonic()
                reply = ipc.decode(frames)
                assert isinstance(reply, ipc.CallReply)
                self.answered[reply.req_id] += 1
                if self.answered[reply.req_id] > 1:
                    self.duplicates += 1
                    continue
                pending.discard(reply.req_id)
                if reply.error is None:
                    if ipc.decode_payload(reply.payload) != self.expected[reply.req_id]:
                        self.wrong += 1
                    self.outcomes["ok"] += 1
                else:
                    self.outcomes[reply.error.type] += 1
        # Late duplicates would arrive now, if the daemon ever sent any.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if sock.poll(100):
                reply = ipc.decode(sock.recv_multipart())
                if isinstance(reply, ipc.CallReply):
                    self.answered[reply.req_id] += 1
                    if self.answered[reply.req_id] > 1:
                        self.duplicates += 1
        sock.close()

    @property
    def lost(self) -> int:
        return sum(1 for r in self.expected if self.answered[r] == 0)


def chaos(
    client: Any,
    stop: threading.Event,
    rng: random.Random,
    every_s: float,
    releases: list[Path],
    log: Counter[str],
) -> None:
    i = 0
    while not stop.wait(every_s * (0.5 + rng.random())):
        try:
            skills = {s["name"]: s for s in client.list()}
        except Exception:
            continue
        action = rng.choice(["kill", "kill", "hang", "upgrade", "upgrade", "restart"])
        try:
            if action in ("kill", "hang"):
                name = rng.choice(["echo", "clock"])
                pid = skills[name]["pid"]
                if pid:
                    os.kill(pid, signal.SIGKILL if action == "kill" else signal.SIGSTOP)
            elif action == "upgrade":
                client.upgrade("echo", releases[i % len(releases)])
                i += 1
            else:
                client.restart("echo")
            log[action] += 1
        except Exception as exc:
            log[f"{action} failed: {type(exc).__name__}"] += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--callers", type=int, default=8)
    ap.add_argument("--window", type=int, default=4, help="calls in flight per caller")
    ap.add_argument("--chaos-s", type=float, default=1.0)
    ap.add_argument("--timeout-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    keys = {
        "concurrency": 8,
        "grace_s": 2,
        "kill_timeout_s": 1,
        "backoff_s": 0.05,
        "max_restarts": 1000,
    }
    config = "[daemon]\nheartbeat_s = 0.2\nliveness_s = 1.5\n\n" + "".join(
        skill_table(name, **keys) for name in ("echo", "clock")
    )
    stop = threading.Event()
    actions: Counter[str] = Counter()
    with LocalDaemon(config, prefix="zk") as d:
        client, root = d.client, d.root
        proc = psutil.Process(client.ping()["pid"])
        endpoint = RunDir(root / ".zskill").endpoints.control
        per = args.calls // args.callers
        callers = [
            Caller(i, endpoint, per, args.window, args.timeout_s) for i in range(args.callers)
        ]
        releases = [release(root, "echo", "2.0.0"), release(root, "echo", "3.0.0")]
        t0 = time.monotonic()
        for c in callers:
            c.start()
        warm_target = args.calls // 20
        while sum(len(c.expected) for c in callers) < warm_target and any(
            c.is_alive() for c in callers
        ):
            time.sleep(0.2)
        rss_warm = proc.memory_info().rss
        agitator = threading.Thread(
            target=chaos, args=(client, stop, rng, args.chaos_s, releases, actions), daemon=True
        )
        agitator.start()
        last_report = time.monotonic()
        while any(c.is_alive() for c in callers):
            time.sleep(0.5)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                done = sum(sum(c.outcomes.values()) for c in callers)
                print(f"  {done} calls answered, {time.monotonic() - t0:.0f} s", flush=True)
        stop.set()
        agitator.join(60)
        elapsed = time.monotonic() - t0
        rss_end = proc.memory_info().rss

    outcomes: Counter[str] = Counter()
    for c in callers:
        outcomes.update(c.outcomes)
    total = sum(len(c.expected) for c in callers)
    lost = sum(c.lost for c in callers)
    wrong = sum(c.wrong for c in callers)
    dups = sum(c.duplicates for c in callers)
    growth = (rss_end - rss_warm) / rss_warm
    print(f"calls {total} in {elapsed:.0f} s ({total / elapsed:.0f}/s), callers {args.callers}")
    print("answers: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print("chaos:   " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())))
    print(f"lost {lost}, wrong {wrong}, duplicate {dups}")
    print(
        f"daemon RSS after warm-up {rss_warm / 2**20:.1f} MiB, at end {rss_end / 2**20:.1f} MiB "
        f"({growth * 100:+.1f}%)"
    )
    ok = lost == 0 and wrong == 0 and dups == 0 and growth <= 0.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
