"""Prometheus metrics of every skill (``zskill up --metrics-port N``).

The daemon's loop is single-threaded and owns all live state; prometheus-client
serves HTTP from a thread of its own. The two share nothing mutable: every
``REFRESH_S`` the loop builds an immutable :class:`Snapshot` (tuples and
frozen dataclasses, a few microseconds per skill) and swaps one reference; a
scrape reads whichever snapshot is current, so a scrape never sees a skill
half-updated and never touches the loop's dicts while the loop mutates them::

    loop thread (every REFRESH_S)        HTTP thread (each scrape)
    refresh() ── builds Snapshot ──>  self.latest  <── Collector.collect()

Served metrics (label ``version`` is the skill version that served or runs):

    zskill_calls_total{skill,version}                counter
    zskill_call_errors_total{skill,version}          counter
    zskill_call_duration_seconds{skill,version}      histogram (accepted -> answered)
    zskill_calls_in_flight{skill,version}            gauge
    zskill_calls_queued{skill}                       gauge
    zskill_restarts_total{skill}                     counter (crash restarts)
    zskill_upgrades_total{skill,op,outcome}          counter (op upgrade|rollback,
                                                     outcome deployed|rolled_back)
    zskill_skill_up{skill}                           gauge (1 while a process serves)
    zskill_skill_info{skill,version}                 gauge (1 per live version)
    zskill_version_weight{skill,version}             gauge (percent of calls; a canary's < 100)
    zskill_skill_cpu_percent{skill}                  gauge (process tree)
    zskill_skill_resident_memory_bytes{skill}        gauge (process tree)

plus the daemon's own ``process_*`` metrics. Counters start at zero with
each daemon, as Prometheus expects of a restarted process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from ipc import ConfigError, Event

from .._status import EventKind, RolloutOp
from .rollout import Phase
from .router import InstanceState
from .stats import BOUNDS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .runtime import SkillRuntime
    from .supervisor import Supervisor

log = logging.getLogger("zskill.metrics")

REFRESH_S = 0.2
"""How stale a scrape may be. Prometheus scrapes every 15 s or so; this is
only short so that a test (or a curious operator) sees a call at once."""

UPGRADE_OPS = (RolloutOp.UPGRADE.value, RolloutOp.ROLLBACK.value)
OUTCOMES = (EventKind.DEPLOYED.value, EventKind.ROLLED_BACK.value)

# The stats keep 12 latency buckets per decade; Prometheus gets every 4th
# bound (about 1, 2.15, 4.64 per decade) from 100 us to 100 s. Each is an
# exact bound of the fine histogram, so a coarse bucket is a sum of fine ones.
_COARSE = tuple(range(12, len(BOUNDS), 4))
BUCKET_LABELS = tuple(f"{BOUNDS[i]:.3g}" for i in _COARSE)


@dataclass(frozen=True, slots=True)
class VersionSnapshot:
    version: str
    calls: int
    errors: int
    latency_sum_s: float
    hist: tuple[int, ...]  # the stats' fine histogram, as counted


@dataclass(frozen=True, slots=True)
class SkillSnapshot:
    name: str
    up: bool
    restarts: int
    queued: int
    cpu_percent: float
    rss_bytes: int
    versions: tuple[VersionSnapshot, ...]
    in_flight: tuple[tuple[str, int], ...]  # (version, calls) of each live version
    upgrades: tuple[tuple[str, str, int], ...]  # (op, outcome, count)
    weights: tuple[tuple[str, int], ...] = ()  # (version, percent of calls) while live


@dataclass(frozen=True, slots=True)
class Snapshot:
    skills: tuple[SkillSnapshot, ...] = ()


def take_snapshot(sup: Supervisor, upgrades: dict[tuple[str, str, str], int]) -> Snapshot:
    """What a scrape will show, copied out of the loop's live state."""
    skills = []
    for rt in sup.skills.values():
        in_flight: dict[str, int] = {}
        for p in rt.procs.values():
            if p.state is not InstanceState.EXITED and p.inst.version:
                v = p.inst.version
                in_flight[v] = in_flight.get(v, 0) + len(p.inst.in_flight)
        skills.append(
            SkillSnapshot(
                name=rt.name,
                up=bool(rt.active()),
                restarts=rt.restarts,
                queued=sup.router.queued(rt.name),
                cpu_percent=rt.stats.cpu_percent,
                rss_bytes=rt.stats.rss_bytes,
                versions=tuple(
                    VersionSnapshot(v, t.calls, t.errors, t.latency_sum_s, tuple(t.hist))
                    for v, t in rt.stats.by_version.items()
                ),
                in_flight=tuple(in_flight.items()),
                upgrades=tuple(
                    (op, outcome, n)
                    for (skill, op, outcome), n in upgrades.items()
                    if skill == rt.name
                ),
                weights=_weights(rt),
            )
        )
    return Snapshot(tuple(skills))


def _weights(rt: SkillRuntime) -> tuple[tuple[str, int], ...]:
    """Each live version's share of the calls: a canary's and stable's, or 100."""
    ar = rt.rollout
    if ar is not None and ar.machine.phase is Phase.CANARY:
        w = ar.machine.weight
        return ((ar.old_version, 100 - w), (ar.new_version, w))
    return tuple((v, 100) for v in {p.inst.version for p in rt.active()})


def cumulative_buckets(hist: tuple[int, ...]) -> list[tuple[str, float]]:
    """Prometheus ``le`` buckets (cumulative, ending with +Inf) of a fine histogram."""
    out: list[tuple[str, float]] = []
    acc, i = 0, 0
    for label, upto in zip(BUCKET_LABELS, _COARSE, strict=True):
        while i <= upto:
            acc += hist[i]
            i += 1
        out.append((label, float(acc)))
    out.append(("+Inf", float(sum(hist))))
    return out


class SnapshotCollector(Collector):
    """Turns the latest snapshot into metric families, on the HTTP thread."""

    def __init__(self, latest: Callable[[], Snapshot]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self._latest()  # one read of one reference: a consistent view
        calls = CounterMetricFamily(
            "zskill_calls", "Calls answered, by the version that served them.",
            labels=["skill", "version"],
        )  # fmt: skip
        errors = CounterMetricFamily(
            "zskill_call_errors", "Calls answered with an error.", labels=["skill", "version"]
        )
        latency = HistogramMetricFamily(
            "zskill_call_duration_seconds",
            "Time from the daemon accepting a call to answering it.",
            labels=["skill", "version"],
        )
        in_flight = GaugeMetricFamily(
            "zskill_calls_in_flight", "Calls running in a skill process.",
            labels=["skill", "version"],
        )  # fmt: skip
        queued = GaugeMetricFamily(
            "zskill_calls_queued", "Calls waiting in the daemon's queue.", labels=["skill"]
        )
        restarts = CounterMetricFamily(
            "zskill_restarts", "Restarts after a crash.", labels=["skill"]
        )
        upgrades = CounterMetricFamily(
            "zskill_upgrades", "Upgrades and rollbacks finished, by outcome.",
            labels=["skill", "op", "outcome"],
        )  # fmt: skip
        up = GaugeMetricFamily("zskill_skill_up", "1 while a process serves.", labels=["skill"])
        info = GaugeMetricFamily(
            "zskill_skill_info", "1 for each live version.", labels=["skill", "version"]
        )
        weight = GaugeMetricFamily(
            "zskill_version_weight",
            "Percent of the calls (without a session) each live version takes.",
            labels=["skill", "version"],
        )
        cpu = GaugeMetricFamily(
            "zskill_skill_cpu_percent", "CPU of the process tree.", labels=["skill"]
        )
        rss = GaugeMetricFamily(
            "zskill_skill_resident_memory_bytes", "RSS of the process tree.", labels=["skill"]
        )
        for s in snap.skills:
            for v in s.versions:
                calls.add_metric([s.name, v.version], v.calls)
                errors.add_metric([s.name, v.version], v.errors)
                latency.add_metric([s.name, v.version], cumulative_buckets(v.hist), v.latency_sum_s)
            for version, n in s.in_flight:
                in_flight.add_metric([s.name, version], n)
                info.add_metric([s.name, version], 1)
            for version, pct in s.weights:
                weight.add_metric([s.name, version], pct)
            queued.add_metric([s.name], s.queued)
            restarts.add_metric([s.name], s.restarts)
            for op in UPGRADE_OPS:
                for outcome in OUTCOMES:
                    n = next((c for o, r, c in s.upgrades if o == op and r == outcome), 0)
                    upgrades.add_metric([s.name, op, outcome], n)
            up.add_metric([s.name], 1 if s.up else 0)
            cpu.add_metric([s.name], s.cpu_percent)
            rss.add_metric([s.name], s.rss_bytes)
        yield from (calls, errors, latency, in_flight, queued, restarts, upgrades, up, info)
        yield from (cpu, rss, weight)


class Metrics:
    """Owned by the daemon's loop: counts upgrade events, refreshes the
    snapshot, and runs the HTTP server that reads it."""

    def __init__(self, sup: Supervisor, host: str, port: int) -> None:
        self._sup = sup
        self.host = host
        self.port = port
        self.latest = Snapshot()
        self._upgrades: dict[tuple[str, str, str], int] = {}
        self._next_refresh = 0.0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen; a port that cannot be had is a config error (exit 2)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(lambda: self.latest))
        registry.register(ProcessCollector(registry=None))
        try:
            self._server, self._thread = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            raise ConfigError(
                f"metrics: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from exc
        self.port = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def on_event(self, ev: Event) -> None:
        if ev.type in OUTCOMES and ev.data.get("op") in UPGRADE_OPS:
            key = (ev.skill, str(ev.data["op"]), ev.type)
            self._upgrades[key] = self._upgrades.get(key, 0) + 1

    def refresh(self, now: float, *, force: bool = False) -> None:
        if now < self._next_refresh and not force:
            return
        self._next_refresh = now + REFRESH_S
        self.latest = take_snapshot(self._sup, self._upgrades)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
