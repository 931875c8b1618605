"""Drains: how long a draining process may take to finish its calls, and
what it did meanwhile (for the ``drain`` and ``drained`` events).

A fixed ``grace_s`` is a guess, and the tail of call durations is what
breaks deployments: a grace shorter than the slowest calls kills them at
every upgrade, a long one makes every stop slow. ``grace_s = "auto"`` sizes
the window from what the skill's calls really take:

    window = clamp(AUTO_FACTOR x longest, grace_min_s, grace_max_s)

where ``longest`` is the longest run time (dispatch to result) among the
skill's last ``TAIL_CALLS`` calls and the calls running on the process
when its drain begins. The maximum rather than a percentile: one call in a
hundred killed at each upgrade is exactly the failure this is for. The
factor leaves room for a call a little slower than any seen; the floor
covers a skill with no history yet; the ceiling bounds a stop.

Everything here is pure and cheap: recording a call is one deque append.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._config import SkillSettings
from .router import PendingCall

TAIL_CALLS = 100
"""How many recent calls' run times the window is sized from."""
AUTO_FACTOR = 2.0


class CallTail:
    """The run times of a skill's most recent calls, any version."""

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=TAIL_CALLS)

    def record(self, run_s: float) -> None:
        self._recent.append(run_s)

    def longest_s(self) -> float | None:
        return max(self._recent) if self._recent else None

    def __len__(self) -> int:
        return len(self._recent)


@dataclass(frozen=True, slots=True)
class DrainWindow:
    grace_s: float
    why: str  # how it was sized, for the drain's event


def drain_window(s: SkillSettings, tail: CallTail, running_s: list[float]) -> DrainWindow:
    """The grace a process of a skill with settings ``s`` gets now, its
    calls in flight having run ``running_s`` so far."""
    if s.grace_s != "auto":
        return DrainWindow(float(s.grace_s), "grace_s")
    seen = tail.longest_s()
    longest = max([*running_s, *([seen] if seen is not None else [])], default=0.0)
    window = min(max(AUTO_FACTOR * longest, s.grace_min_s), s.grace_max_s)
    if longest == 0.0:
        why = f"auto: no calls seen yet, the floor grace_min_s={s.grace_min_s:g}"
    else:
        why = (
            f"auto: {AUTO_FACTOR:g} x {longest:.3g} s, the longest of the last "
            f"{len(tail)} calls and the {len(running_s)} running, "
            f"within [{s.grace_min_s:g}, {s.grace_max_s:g}]"
        )
    return DrainWindow(round(window, 3), why)


@dataclass(eq=False, slots=True)
class DrainLog:
    """A process's drain: when it began, its window, and the calls it had
    to finish (call id -> tool), with each one's run time once it ended."""

    started_at: float
    grace_s: float
    why: str  # how the window was sized
    calls: dict[int, str]
    ran_s: dict[int, float] = field(default_factory=dict)

    def started(self) -> dict[str, Any]:
        """For the ``drain`` event."""
        return {
            "grace_s": self.grace_s,
            "grace": self.why,
            "calls": [{"call_id": cid, "tool": tool} for cid, tool in self.calls.items()],
        }

    def summary(self, now: float, instance: str = "", how: str = "") -> dict[str, Any]:
        """For the ``drained`` event of process ``instance``, which ``how`` ended."""
        unfinished = [cid for cid in self.calls if cid not in self.ran_s]
        return {
            "instance": instance,
            "how": how,
            "waited_s": round(now - self.started_at, 3),
            "grace_s": self.grace_s,
            "calls": [
                {"call_id": cid, "tool": tool, "ran_s": _rounded(self.ran_s.get(cid))}
                for cid, tool in self.calls.items()
            ],
            "unfinished": unfinished,
            # The window passed with calls still running: SIGTERM, SIGKILL.
            "sigterm": bool(unfinished) and now - self.started_at >= self.grace_s,
        }

    def describe(self, now: float) -> str:
        waited = f"waited {now - self.started_at:.2f} s"
        if not self.calls:
            return f"{waited}: no call in flight"
        done = len(self.ran_s)
        parts = [f"#{cid} {tool}" for cid, tool in self.calls.items()]
        text = f"{waited} for {len(self.calls)} call(s) ({', '.join(parts[:5])}"
        text += ", ...)" if len(parts) > 5 else ")"
        if done < len(self.calls):
            text += f"; {len(self.calls) - done} cut off after grace {self.grace_s:g} s"
        return text


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def begin_drain(
    s: SkillSettings,
    tail: CallTail,
    in_flight: Mapping[int, PendingCall],
    now: float,
    grace_s: float | None = None,
) -> DrainLog:
    """A process with the calls ``in_flight`` begins to drain: its window
    (``grace_s`` if given, else sized by ``drain_window``) and its log."""
    if grace_s is None:
        running = [now - c.sent_at for c in in_flight.values() if c.sent_at]
        window = drain_window(s, tail, running)
    else:
        window = DrainWindow(grace_s, "asked")
    calls = {c.call_id: c.tool for c in in_flight.values()}
    return DrainLog(now, window.grace_s, window.why, calls)


def longest_grace_s(s: SkillSettings) -> float:
    """The most a drain of this skill can take (bounds the daemon's shutdown)."""
    return s.grace_max_s if s.grace_s == "auto" else float(s.grace_s)


__all__ = [
    "AUTO_FACTOR",
    "TAIL_CALLS",
    "CallTail",
    "DrainLog",
    "DrainWindow",
    "begin_drain",
    "drain_window",
    "longest_grace_s",
]
