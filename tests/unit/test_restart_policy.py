"""Restart decisions with a fake clock."""

from __future__ import annotations

from collections import deque
from typing import Any

from orchestrator._config import SkillSettings
from orchestrator._daemon.restart_policy import Errored, Restart, Stop, decide


def settings(**kw: Any) -> SkillSettings:
    base: dict[str, Any] = {"path": ".", "command": ["python", "main.py"]}
    return SkillSettings(**{**base, "backoff_s": 0.5, "backoff_max_s": 4.0, **kw})


def test_backoff_doubles_up_to_the_cap_then_errored() -> None:
    s = settings(max_restarts=5, restart_window_s=60)
    failures: deque[float] = deque()
    delays = [decide(s, failures, float(t), 1) for t in range(5)]
    assert delays == [
        Restart(0.5, 1),
        Restart(1.0, 2),
        Restart(2.0, 3),
        Restart(4.0, 4),
        Restart(4.0, 5),
    ]
    assert decide(s, failures, 5.0, 1) == Errored(6)


def test_old_failures_leave_the_window() -> None:
    s = settings(max_restarts=2, restart_window_s=10)
    failures: deque[float] = deque()
    assert decide(s, failures, 0.0, -9) == Restart(0.5, 1)
    assert decide(s, failures, 1.0, -9) == Restart(1.0, 2)
    # stable for longer than the window: back to the short backoff
    assert decide(s, failures, 100.0, -9) == Restart(0.5, 1)


def test_policies_that_stop() -> None:
    failures: deque[float] = deque()
    assert decide(settings(restart="never"), failures, 0.0, 1) == Stop()
    assert decide(settings(restart="on-failure"), failures, 0.0, 0) == Stop()
    assert decide(settings(restart="always"), failures, 0.0, 0) == Restart(0.5, 1)
    assert decide(settings(), failures, 0.0, None) == Restart(1.0, 2)  # a failed start counts
