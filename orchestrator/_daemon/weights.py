"""How calls are shared between two live versions of a skill: by weight,
and by session.

While a canary runs, a skill's queue has two lanes: the stable version's
instances (the queue's ``active``) and the canary's. Each call is given a
lane once, when it reaches the head of the queue:

- a call of a session (``call(..., session=...)``) goes where the
  session's first call went, for as long as both versions are live;
- any other call goes to the canary for ``percent`` of calls, exactly:
  an accumulator adds ``percent`` per call and sends the call that
  carries it past 100 to the canary (5% = one call in twenty), so the
  share holds over a few calls, not only on average.

The session map is bounded (least recently used sessions forgotten
first); it lives as long as the split and is dropped with it, when one
version is gone. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .calls import Instance, PendingCall
    from .router import SkillQueue

Start = Callable[[str, "Instance", "PendingCall", float], None]

MAX_SESSIONS = 10_000
"""Sessions remembered per split; the least recently used are forgotten."""


class Split:
    __slots__ = ("_acc", "canary", "max_sessions", "percent", "sessions")

    def __init__(
        self, canary: list[Instance], percent: int, max_sessions: int = MAX_SESSIONS
    ) -> None:
        self.canary = list(canary)
        self.percent = percent
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, bool] = OrderedDict()  # session -> on the canary
        self._acc = 0

    def lane(self, session: str | None) -> bool:
        """True: the call goes to the canary; False: to the stable version."""
        if session is not None:
            pinned = self.sessions.get(session)
            if pinned is not None:
                self.sessions.move_to_end(session)
                return pinned
        self._acc += self.percent
        on_canary = self._acc >= 100
        if on_canary:
            self._acc -= 100
        if session is not None:
            self.sessions[session] = on_canary
            if len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        return on_canary

    def pinned(self) -> tuple[int, int]:
        """Sessions pinned to (stable, canary)."""
        on = sum(self.sessions.values())
        return len(self.sessions) - on, on


def dispatch_split(q: SkillQueue, split: Split, start: Start, now: float) -> None:
    """The router's dispatch while two versions are live: each call to its
    lane (decided once); a lane with no free slot holds the queue's head,
    so neither version takes more than its share."""
    pending = q.pending
    while pending:
        call = pending[0]
        if call.answered:
            pending.popleft()
            continue
        if call.lane is None:
            call.lane = split.lane(call.session)
        lane = split.canary if call.lane else q.active
        if not lane:  # that version is gone: the other one serves
            lane = q.active if call.lane else split.canary
            if not lane:
                return
        inst = lane[0] if len(lane) == 1 else max(lane, key=_credit)
        if inst.concurrency <= len(inst.in_flight):
            return
        pending.popleft()
        q.unqueue(call)
        start(q.name, inst, call, now)


def _credit(inst: Instance) -> int:
    return inst.concurrency - len(inst.in_flight)


__all__ = ["MAX_SESSIONS", "Split", "dispatch_split"]
