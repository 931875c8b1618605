"""Rolling call statistics."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import psutil
from helpers import wait_for

from orchestrator._daemon.stats import WINDOW_S, SkillStats, children_map


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


def test_sample_sums_the_whole_process_tree_from_one_scan() -> None:
    # A parent whose child sleeps: a tree of two processes.
    child = "import time; time.sleep(30)"
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(30)"  # noqa: E501
    parent = subprocess.Popen([sys.executable, "-c", code])
    tree = [psutil.Process(parent.pid)]
    try:
        tree += wait_for(lambda: tree[0].children(), 10, what="the child")
        kids = children_map()
        assert kids[parent.pid] == [tree[1].pid]
        s = SkillStats()
        s.sample([parent.pid], kids)
        assert s.rss_bytes > tree[0].memory_info().rss  # the child counted too
        assert sorted(s._procs) == sorted(p.pid for p in tree)
        assert s.rss_by_pid == {parent.pid: s.rss_bytes}
        s.sample([parent.pid])  # without a map it scans by itself
        assert sorted(s._procs) == sorted(p.pid for p in tree)
    finally:
        for p in reversed(tree):
            with contextlib.suppress(psutil.Error):
                p.kill()
        parent.wait(5)


def test_event_history_file_stays_bounded(tmp_path: Path) -> None:
    from orchestrator._daemon.events import EventLog

    path = tmp_path / "events.jsonl"
    log = EventLog(path, lambda ev: None, keep_in_memory=10)
    for i in range(25):
        log.emit("echo", "spawn", n=i)
    log.close()
    assert len(path.read_text().splitlines()) == 25
    again = EventLog(path, lambda ev: None, keep_in_memory=10)
    assert len(path.read_text().splitlines()) == 10  # compacted at start
    assert [e["data"]["n"] for e in again.query("echo", 100)] == list(range(15, 25))
    assert again.emit("echo", "exit").seq == 26  # numbering goes on
    again.close()


def test_sample_keeps_each_process_tree_apart() -> None:
    """memory_limit applies per process: during a restart the old and the
    new process of a skill are sampled together, each tree on its own."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in "ab"]
    try:
        s = SkillStats()
        s.sample([p.pid for p in procs] + [999_999_999])  # one gone already
        a, b = procs
        assert set(s.rss_by_pid) == {a.pid, b.pid, 999_999_999}
        assert s.rss_by_pid[999_999_999] == 0
        assert s.rss_by_pid[a.pid] > 1_000_000 and s.rss_by_pid[b.pid] > 1_000_000
        assert s.rss_bytes == s.rss_by_pid[a.pid] + s.rss_by_pid[b.pid]
    finally:
        for p in procs:
            p.kill()
            p.wait(5)
