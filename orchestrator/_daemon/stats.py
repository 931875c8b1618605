"""Per-skill call statistics over a rolling window, gathered cheaply.

Recording a call costs a few list operations: its latency lands in a
fixed log-scale histogram of the current one-second bucket. Rates and
percentiles are computed only when asked (``zskill list``, the dashboard,
metrics), from the buckets of the last ``WINDOW_S`` seconds. Totals are kept
per (skill, version) for metrics with version labels.

Process CPU and memory come from psutil, sampled on the daemon's tick (never
per call), summed over each skill's process tree.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

WINDOW_S = 30
"""Rolling window for calls/s, error rate and latency percentiles."""

# Latency histogram bounds in seconds: 10 us .. ~160 s, 12 per decade.
BOUNDS: list[float] = [1e-5 * 10 ** (i / 12) for i in range(12 * 7 + 1)]


@dataclass(slots=True)
class _Bucket:
    second: int
    calls: int = 0
    errors: int = 0
    hist: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))


@dataclass(slots=True)
class VersionTotals:
    calls: int = 0
    errors: int = 0
    latency_sum_s: float = 0.0
    hist: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))


class SkillStats:
    __slots__ = (
        "_buckets",
        "_procs",
        "_version_buckets",
        "by_version",
        "cpu_percent",
        "rss_by_pid",
        "rss_bytes",
    )

    def __init__(self) -> None:
        self._buckets: deque[_Bucket] = deque()
        # The same window per version, so two live versions compare side by side.
        self._version_buckets: dict[str, deque[_Bucket]] = {}
        self.by_version: dict[str, VersionTotals] = {}
        self.cpu_percent = 0.0
        self.rss_bytes = 0
        # Each sampled process's tree on its own (memory_limit is per process).
        self.rss_by_pid: dict[int, int] = {}
        self._procs: dict[int, psutil.Process] = {}

    def record(self, now: float, version: str, latency_s: float, error: bool) -> None:
        """One answered call. ``error``: the skill failed it (see
        :func:`skill_failed`), not the caller's mistake."""
        second = int(now)
        idx = bisect.bisect_left(BOUNDS, latency_s)
        vb = self._version_buckets.get(version)
        if vb is None:
            vb = self._version_buckets[version] = deque()
        for buckets in (self._buckets, vb):
            if not buckets or buckets[-1].second != second:
                buckets.append(_Bucket(second))
                while buckets[0].second <= second - WINDOW_S:
                    buckets.popleft()
            b = buckets[-1]
            b.calls += 1
            b.hist[idx] += 1
            if error:
                b.errors += 1
        tot = self.by_version.get(version)
        if tot is None:
            tot = self.by_version[version] = VersionTotals()
        tot.calls += 1
        tot.latency_sum_s += latency_s
        tot.hist[idx] += 1
        if error:
            tot.errors += 1

    def window(self, now: float, version: str | None = None) -> dict[str, Any]:
        """calls/s, error rate and latency percentiles over the window, of
        every call or of those ``version`` served."""
        start = int(now) - WINDOW_S + 1
        buckets = self._buckets if version is None else self._version_buckets.get(version, ())
        live = [b for b in buckets if b.second >= start]
        calls = sum(b.calls for b in live)
        errors = sum(b.errors for b in live)
        # Rate over the time we have data for, so a fresh skill is not diluted.
        span = min(WINDOW_S, max(1.0, now - live[0].second)) if live else WINDOW_S
        hist = [0] * (len(BOUNDS) + 1)
        for b in live:
            for i, n in enumerate(b.hist):
                if n:
                    hist[i] += n
        return {
            "calls_per_s": round(calls / span, 2),
            "errors": errors,
            "error_rate": round(errors / calls, 4) if calls else 0.0,
            "p50_ms": percentile(hist, calls, 0.50),
            "p99_ms": percentile(hist, calls, 0.99),
        }

    def sample(self, pids: list[int], kids: Mapping[int, list[int]] | None = None) -> None:
        """CPU % and RSS of the given processes and their descendants.

        ``kids`` (from :func:`children_map`) lets one scan of the process
        table serve every skill: finding descendants means reading every
        process's parent, and doing that per skill made an idle daemon with
        20 skills spend most of its CPU in /proc."""
        if kids is None:
            kids = children_map()
        seen: dict[int, psutil.Process] = {}
        cpu, rss = 0.0, 0
        by_root: dict[int, int] = dict.fromkeys(pids, 0)
        tree, listed = [(pid, pid) for pid in pids], set(pids)
        for pid, root in tree:  # grows as it goes: breadth first over the trees
            for kid in kids.get(pid, ()):
                if kid not in listed:
                    listed.add(kid)
                    tree.append((kid, root))
        for pid, root in tree:
            try:
                proc = self._procs.get(pid) or psutil.Process(pid)
                cpu += proc.cpu_percent(None)  # since this process's last sample
                used = proc.memory_info().rss
            except psutil.Error:
                continue
            rss += used
            by_root[root] += used
            seen[pid] = proc
        self._procs = seen
        self.cpu_percent = round(cpu, 1)
        self.rss_bytes = rss
        self.rss_by_pid = by_root


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, from one pass over the process table."""
    kids: dict[int, list[int]] = {}
    for p in psutil.process_iter(["ppid"]):
        ppid = p.info.get("ppid")
        if ppid:
            kids.setdefault(ppid, []).append(p.pid)
    return kids


def percentile(hist: list[int], total: int, q: float) -> float | None:
    if total == 0:
        return None
    rank = math.ceil(total * q)
    acc = 0
    for i, n in enumerate(hist):
        acc += n
        if acc >= rank:
            bound = BOUNDS[min(i, len(BOUNDS) - 1)]
            return round(bound * 1000, 3)
    return None


CALLER_ERRORS = frozenset({"InvalidArguments", "ToolNotFound"})
"""Answers that blame the call, not the skill: a caller sending bad
arguments or naming a tool that is not there says nothing about the skill's
health, so they count as calls but not as errors (error_rate, metrics)."""


def skill_failed(error_type: str | None) -> bool:
    """Whether an answer of this error type (None: a result) is the skill's failure."""
    return error_type is not None and error_type not in CALLER_ERRORS
