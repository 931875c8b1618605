"""Rolling call statistics."""

from __future__ import annotations

from orchestrator._stats import WINDOW_S, SkillStats


def test_rate_percentiles_and_errors() -> None:
    s = SkillStats()
    for i in range(100):
        s.record(1000.0 + i / 100, "1.0", 0.001 if i < 98 else 0.5, error=i % 10 == 0)
    w = s.window(1001.0)
    assert w["errors"] == 10 and w["error_rate"] == 0.1
    assert 0.9 <= w["p50_ms"] <= 1.3  # log buckets: within one bucket width
    assert w["p99_ms"] >= 400
    assert w["calls_per_s"] == 100.0
    assert s.by_version["1.0"].calls == 100 and s.by_version["1.0"].errors == 10


def test_window_forgets_old_calls() -> None:
    s = SkillStats()
    s.record(0.0, "1.0", 0.01, error=True)
    assert s.window(0.5)["errors"] == 1
    w = s.window(WINDOW_S + 1.0)
    assert w["errors"] == 0 and w["p50_ms"] is None and w["calls_per_s"] == 0.0
    assert s.by_version["1.0"].errors == 1  # totals stay
