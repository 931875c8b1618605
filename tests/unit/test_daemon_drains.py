"""Drain windows: a fixed grace_s, or "auto" from the calls' tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipc import ConfigError
from orchestrator._config import SkillSettings, parse
from orchestrator._daemon.drains import CallTail, DrainLog, drain_window, longest_grace_s


def settings(**kw: object) -> SkillSettings:
    return SkillSettings.model_validate({"path": ".", "command": ["python", "main.py"], **kw})


def test_fixed_grace_is_used_as_is() -> None:
    w = drain_window(settings(grace_s=7), CallTail(), [100.0])
    assert (w.grace_s, w.why) == (7.0, "grace_s")


def test_auto_is_twice_the_longest_recent_or_running_call_within_bounds() -> None:
    s = settings(grace_s="auto", grace_min_s=1, grace_max_s=60)
    tail = CallTail()
    assert drain_window(s, tail, []).grace_s == 1.0  # nothing seen: the floor
    for run_s in (0.1, 4.0, 0.2):
        tail.record(run_s)
    assert drain_window(s, tail, []).grace_s == 8.0
    assert drain_window(s, tail, [5.0]).grace_s == 10.0  # a call running longer still
    assert drain_window(s, tail, [45.0]).grace_s == 60.0  # the ceiling
    assert "the longest of the last 3 calls" in drain_window(s, tail, []).why
    assert longest_grace_s(s) == 60.0 and longest_grace_s(settings(grace_s=3)) == 3.0


def test_the_tail_forgets_old_calls() -> None:
    tail = CallTail()
    tail.record(50.0)
    for _ in range(100):
        tail.record(0.01)
    assert tail.longest_s() == 0.01


def test_grace_s_accepts_seconds_or_auto_only(tmp_path: Path) -> None:
    def load(grace: object) -> object:
        return parse(
            {"skills": {"a": {"path": ".", "command": ["python", "m.py"], "grace_s": grace}}},
            tmp_path / "zskill.toml",
        ).skills["a"]

    assert load("auto").settings.grace_s == "auto"  # type: ignore[attr-defined]
    assert load(3).settings.grace_s == 3.0  # type: ignore[attr-defined]
    for bad in ("fast", -1, True):
        with pytest.raises(ConfigError, match="grace_s"):
            load(bad)


def test_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = parse(
        {
            "skills": {
                "a": {"path": ".", "command": ["python", "m.py"], "data_dir": "state/a"},
                "b": {"path": ".", "command": ["python", "m.py"]},
            }
        },
        tmp_path / "zskill.toml",
    )
    assert cfg.data_dir("a") == tmp_path / "state" / "a"
    assert cfg.data_dir("b") == tmp_path / ".zskill" / "data" / "b"
    assert not (tmp_path / "state").exists()
    assert cfg.data_dir("a", make=True).is_dir()


def test_drain_log_says_how_long_and_for_which_calls() -> None:
    log = DrainLog(10.0, 4.0, "grace_s", {7: "crawl", 9: "fetch"})
    log.ran_s[7] = 12.5
    summary = log.summary(11.5)
    assert summary["waited_s"] == 1.5 and summary["unfinished"] == [9]
    assert summary["calls"][0] == {"call_id": 7, "tool": "crawl", "ran_s": 12.5}
    assert log.describe(11.5) == (
        "waited 1.50 s for 2 call(s) (#7 crawl, #9 fetch); 1 cut off after grace 4 s"
    )
