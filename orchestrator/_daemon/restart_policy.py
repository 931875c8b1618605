"""What to do when a skill's serving process dies: the decision alone, with
no I/O, so it is unit-tested with a fake clock.

    restart = "never"                      -> stop
    restart = "on-failure" and exit code 0 -> stop
    more than max_restarts failures
         within restart_window_s           -> errored (until `zskill start`)
    otherwise                              -> restart after backoff_s * 2**(n-1),
                                              at most backoff_max_s

Failures older than the window no longer count: a skill that stayed up that
long starts again from the short backoff.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .._config import SkillSettings


@dataclass(frozen=True, slots=True)
class Stop:
    pass


@dataclass(frozen=True, slots=True)
class Errored:
    failures: int


@dataclass(frozen=True, slots=True)
class Restart:
    delay_s: float
    failures: int


Decision = Stop | Errored | Restart


def decide(
    settings: SkillSettings, failures: deque[float], now: float, exit_code: int | None
) -> Decision:
    """Record a failure at ``now`` in ``failures`` (pruned to the window) and
    decide. ``exit_code`` None: the process never served (a failed start)."""
    if settings.restart == "never" or (settings.restart == "on-failure" and exit_code == 0):
        return Stop()
    failures.append(now)
    while failures and failures[0] < now - settings.restart_window_s:
        failures.popleft()
    n = len(failures)
    if n > settings.max_restarts:
        return Errored(n)
    return Restart(min(settings.backoff_max_s, settings.backoff_s * 2 ** (n - 1)), n)
