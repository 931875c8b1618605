"""Prometheus metrics: the snapshot the daemon's loop builds, and what a
scrape makes of it (the HTTP endpoint of a real daemon is in
tests/integration/test_operator.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ipc import Event
from orchestrator._daemon.metrics import (
    BUCKET_LABELS,
    Metrics,
    SkillSnapshot,
    Snapshot,
    SnapshotCollector,
    VersionSnapshot,
    cumulative_buckets,
)
from orchestrator._daemon.stats import BOUNDS, SkillStats


def samples(snap: Snapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def version_snapshot(stats: SkillStats, version: str) -> VersionSnapshot:
    t = stats.by_version[version]
    return VersionSnapshot(version, t.calls, t.errors, t.latency_sum_s, tuple(t.hist))


def test_buckets_are_cumulative_and_end_with_inf() -> None:
    stats = SkillStats()
    for latency in (0.00005, 0.0009, 0.003, 0.003, 2.0, 500.0):
        stats.record(0.0, "1.0", latency, error=False)
    buckets = dict(cumulative_buckets(tuple(stats.by_version["1.0"].hist)))
    assert list(buckets) == [*BUCKET_LABELS, "+Inf"]
    assert BUCKET_LABELS[:4] == ("0.0001", "0.000215", "0.000464", "0.001")
    assert BUCKET_LABELS[-1] == "100"
    assert buckets["0.0001"] == 1
    assert buckets["0.001"] == 2
    assert buckets["0.00464"] == 4
    assert buckets["2.15"] == 5
    assert buckets["100"] == 5
    assert buckets["+Inf"] == 6
    # Every coarse bound is one of the fine ones: no bucket is split.
    assert all(any(abs(float(b) / x - 1) < 0.005 for x in BOUNDS) for b in BUCKET_LABELS)


def test_a_scrape_shows_every_skill_with_version_labels() -> None:
    stats = SkillStats()
    for i in range(10):
        stats.record(0.0, "1.0.0", 0.002, error=i < 3)
    stats.record(0.0, "2.0.0", 0.004, error=False)
    snap = Snapshot((
        SkillSnapshot(
            name="echo", up=True, restarts=2, queued=5, cpu_percent=12.5, rss_bytes=1000,
            versions=(version_snapshot(stats, "1.0.0"), version_snapshot(stats, "2.0.0")),
            in_flight=(("1.0.0", 1), ("2.0.0", 3)),
            upgrades=(("upgrade", "deployed", 1), ("upgrade", "rolled_back", 2)),
        ),
        SkillSnapshot("mail", False, 0, 0, 0.0, 0, (), (), ()),
    ))  # fmt: skip
    got = samples(snap)
    echo1 = (("skill", "echo"), ("version", "1.0.0"))
    echo2 = (("skill", "echo"), ("version", "2.0.0"))
    assert got[("zskill_calls_total", echo1)] == 10
    assert got[("zskill_calls_total", echo2)] == 1
    assert got[("zskill_call_errors_total", echo1)] == 3
    assert got[("zskill_call_duration_seconds_count", echo1)] == 10
    assert abs(got[("zskill_call_duration_seconds_sum", echo1)] - 0.02) < 1e-9
    assert got[("zskill_call_duration_seconds_bucket", (("le", "0.001"), *echo1))] == 0
    assert got[("zskill_call_duration_seconds_bucket", (("le", "0.00215"), *echo1))] == 10
    assert got[("zskill_calls_in_flight", echo2)] == 3
    assert got[("zskill_calls_queued", (("skill", "echo"),))] == 5
    assert got[("zskill_restarts_total", (("skill", "echo"),))] == 2
    upgrades = (("op", "upgrade"), ("outcome", "rolled_back"), ("skill", "echo"))
    assert got[("zskill_upgrades_total", upgrades)] == 2
    rollbacks = (("op", "rollback"), ("outcome", "deployed"), ("skill", "mail"))
    assert got[("zskill_upgrades_total", rollbacks)] == 0  # known series start at zero
    assert got[("zskill_skill_up", (("skill", "echo"),))] == 1
    assert got[("zskill_skill_up", (("skill", "mail"),))] == 0
    assert got[("zskill_skill_info", echo2)] == 1
    assert got[("zskill_skill_cpu_percent", (("skill", "echo"),))] == 12.5
    assert got[("zskill_skill_resident_memory_bytes", (("skill", "echo"),))] == 1000


def test_upgrade_events_are_counted_by_op_and_outcome() -> None:
    m = Metrics(None, "127.0.0.1", 0)  # type: ignore[arg-type]  # no supervisor needed here
    seen = [("deployed", "upgrade"), ("deployed", "upgrade"), ("rolled_back", "upgrade"),
            ("deployed", "rollback"), ("deployed", "start"), ("ready", "upgrade")]  # fmt: skip
    for type_, op in seen:
        m.on_event(Event(1, 0.0, "echo", type_, {"op": op}))
    assert m._upgrades == {
        ("echo", "upgrade", "deployed"): 2,
        ("echo", "upgrade", "rolled_back"): 1,
        ("echo", "rollback", "deployed"): 1,
    }
