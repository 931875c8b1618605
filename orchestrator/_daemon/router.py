"""Call routing: per-skill pending queues, credit-based dispatch, deadlines,
and the exactly-once answer of every accepted call.

No I/O happens here: the router calls two functions the daemon gives it,
``send_call(instance, call)`` and ``answer(call, error, payload, version)``,
so its decisions are unit-tested without sockets.

Life of a call::

    accept ──> pending (skill queue) ──dispatch──> in flight on an instance
      │           │                                   │
      └─ max_queued reached ─> SkillOverloaded (at once)
                  │                                   │
                  └─ deadline ─> CallTimeout          ├─ Result ─> answer
                                                      ├─ deadline ─> CallTimeout
                                                      │   (the slot stays taken
                                                      │    until the skill answers)
                                                      └─ instance lost ─> retry if the
                                                          tool is idempotent, else
                                                          OutcomeUnknown

``Call.answered`` makes the answer happen once: every later event about an
answered call (a late result, its deadline) is dropped, but told to ``keys``
(:mod:`.keyed`) for a call with an idempotency key, as is its every outcome
and its dispatch; ``keys`` has deadlines of its own, expired here too.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipc import (
    CallTimeout,
    OutcomeUnknown,
    SkillOverloaded,
    SkillUnavailable,
    ToolNotFound,
    WireError,
)

from .calls import Instance, InstanceState, PendingCall
from .weights import Split, dispatch_split

if TYPE_CHECKING:
    from .keyed import KeyedCalls


COMPACT_ABOVE = 1024
"""The deadline heap is compacted only above this size."""

SendCall = Callable[[Instance, PendingCall, float], None]
Answer = Callable[[PendingCall, WireError | None, bytes, str], None]


class SkillQueue:
    """A skill's pending calls and the instances that may serve them."""

    __slots__ = (
        "accepting",
        "active",
        "closed_reason",
        "max_queued",
        "name",
        "pending",
        "split",
        "waiting",
    )

    def __init__(self, name: str, max_queued: int | None = None) -> None:
        self.name = name
        # Answered calls stay in ``pending`` until dispatch reaches them;
        # ``waiting`` counts the others (what max_queued bounds).
        self.pending: deque[PendingCall] = deque()
        self.waiting = 0
        self.max_queued = max_queued  # None: no bound
        self.active: list[Instance] = []
        # While a canary runs: its instances and its share (``active`` is stable).
        self.split: Split | None = None
        # False when the skill is stopped or errored: calls fail fast.
        self.accepting = True
        self.closed_reason = ""

    def push(self, call: PendingCall, *, front: bool = False) -> None:
        call.queued = True
        self.waiting += 1
        if front:
            self.pending.appendleft(call)
        else:
            self.pending.append(call)

    def unqueue(self, call: PendingCall) -> None:
        """``call`` no longer waits here: dispatched, or answered while queued."""
        if call.queued:
            call.queued = False
            self.waiting -= 1


class Router:
    def __init__(self, send_call: SendCall, answer: Answer) -> None:
        self._send_call = send_call
        self._answer = answer
        self.queues: dict[str, SkillQueue] = {}
        self._ids = itertools.count(1)
        # Every accepted call, by deadline. An answered call leaves it lazily,
        # at the top; so that calls answered behind a slow one (a hung skill)
        # do not pile up, the heap is rebuilt when mostly answered ones.
        self._deadlines: list[tuple[float, int, PendingCall]] = []
        self._open = 0  # calls in _deadlines not answered yet
        self.keys: KeyedCalls | None = None  # idempotency keys (it sets itself)
        self.on_abandon: Callable[[PendingCall, str, float], None] | None = None  # .cancels

    # --- skills ----------------------------------------------------------------

    def queue(self, skill: str) -> SkillQueue:
        q = self.queues.get(skill)
        if q is None:
            q = self.queues[skill] = SkillQueue(skill)
        return q

    def limit(self, skill: str, max_queued: int | None) -> None:
        """At most ``max_queued`` calls of ``skill`` wait for a slot; more are refused."""
        self.queue(skill).max_queued = max_queued

    def set_active(self, skill: str, instances: list[Instance], now: float) -> None:
        """Route the skill's queued and future calls to ``instances`` from now on.
        Calls already in flight elsewhere finish where they run."""
        self.queue(skill).active = list(instances)
        self.dispatch(skill, now)

    def remove_active(self, inst: Instance) -> None:
        q = self.queues.get(inst.skill)
        if q is not None and inst in q.active:
            q.active.remove(inst)
        if q is not None and q.split is not None and inst in q.split.canary:
            q.split.canary.remove(inst)

    def set_split(self, skill: str, canary: list[Instance], percent: int, now: float) -> None:
        """``percent`` of the calls go to ``canary``, the rest to ``active``
        (see weights); with no canary, one version again."""
        q = self.queue(skill)
        if not canary:
            q.split = None
            for call in q.pending:
                call.lane = None
        elif q.split is None:
            q.split = Split(canary, percent)
        else:
            q.split.canary, q.split.percent = list(canary), percent
        self.dispatch(skill, now)

    def close(self, skill: str, reason: str) -> None:
        """Fail every queued call and refuse new ones until ``reopen``."""
        q = self.queue(skill)
        q.accepting = False
        q.closed_reason = reason
        while q.pending:
            call = q.pending.popleft()
            self.fail(call, SkillUnavailable(reason, skill=skill))

    def reopen(self, skill: str) -> None:
        q = self.queue(skill)
        q.accepting = True
        q.closed_reason = ""

    # --- calls -----------------------------------------------------------------

    def accept(
        self,
        client: bytes,
        req_id: int,
        skill: str,
        tool: str,
        payload: bytes,
        timeout_s: float,
        now: float,
        *,
        key: str | None = None,
        traceparent: str | None = None,
        progress: bool = False,
        session: str | None = None,
    ) -> PendingCall:
        """Take a call in; the caller already checked that the skill exists."""
        call = PendingCall(
            next(self._ids), client, req_id, skill, tool, payload, now + timeout_s, now
        )
        call.key, call.traceparent, call.progress = key, traceparent, progress
        call.session = session
        q = self.queue(skill)
        if q.max_queued is not None and q.waiting >= q.max_queued and q.accepting:
            # Refused before it is tracked: a flood costs no memory here.
            call.answered = True
            err = SkillOverloaded(
                f"skill {skill!r} is overloaded: {q.waiting} "
                f"{'call already waits' if q.waiting == 1 else 'calls already wait'} for a "
                f"free slot (max_queued = {q.max_queued}); call {call.call_id} to "
                f"{skill}.{tool} was refused, try again later",
                skill=skill,
                tool=tool,
                max_queued=q.max_queued,
            )
            self._reply(call, err.to_wire(), b"", "")
            return call
        heapq.heappush(self._deadlines, (call.deadline, call.call_id, call))
        self._open += 1
        if not q.accepting:
            self.fail(call, SkillUnavailable(q.closed_reason, skill=skill))
            return call
        q.push(call)
        self.dispatch(skill, now)
        return call

    def dispatch(self, skill: str, now: float) -> None:
        """Send queued calls to active instances that have credit."""
        q = self.queues.get(skill)
        if q is not None and q.split is not None:
            dispatch_split(q, q.split, self._start, now)
            return
        if q is None or not q.pending or not q.active:
            return
        pending, active = q.pending, q.active
        while pending:
            inst = active[0] if len(active) == 1 else max(active, key=_credit)
            if inst.concurrency <= len(inst.in_flight):
                return
            call = pending.popleft()
            if call.answered:
                continue
            q.unqueue(call)
            self._start(skill, inst, call, now)

    def _start(self, skill: str, inst: Instance, call: PendingCall, now: float) -> None:
        spec = inst.tools.get(call.tool)
        if spec is None:
            self.fail(
                call,
                ToolNotFound(
                    f"skill {skill!r} (version {inst.version}) has no tool {call.tool!r}; "
                    f"its tools: {', '.join(sorted(inst.tools)) or 'none'}",
                    skill=skill,
                    tool=call.tool,
                    tools=sorted(inst.tools),
                ),
            )
            return
        call.instance, call.sent_at = inst, now
        inst.in_flight[call.call_id] = call
        if call.key is not None and self.keys is not None:
            self.keys.sent(call)
        self._send_call(inst, call, call.deadline - now)

    def result(
        self, inst: Instance, call_id: int, error: WireError | None, payload: bytes, now: float
    ) -> PendingCall | None:
        """A skill answered; frees the slot and answers the caller if still waiting."""
        call = inst.in_flight.pop(call_id, None)
        if call is None:
            return None  # unknown or already settled when the instance was lost
        call.instance = None
        call.by_skill = True
        if not call.answered:
            call.answered = True
            self._open -= 1
            self._reply(call, error, payload, inst.version)
        elif call.key is not None and self.keys is not None:
            self.keys.settled(call, error, payload, inst.version)  # late: after a timeout
        self.dispatch(inst.skill, now)
        return call

    def expire(self, now: float) -> int:
        """Answer CallTimeout for every call whose deadline passed."""
        heap, n = self._deadlines, 0
        while heap and heap[0][0] <= now:
            _, _, call = heapq.heappop(heap)
            if call.answered:
                continue
            where = (
                f"running on {call.instance.id} (version {call.instance.version})"
                if call.instance is not None
                else "still queued"
            )
            budget = call.deadline - call.accepted_at
            self.fail(
                call,
                CallTimeout(
                    f"call {call.call_id} to {call.skill}.{call.tool} got no result "
                    f"within {budget:.3g} s ({where})",
                    call_id=call.call_id,
                    skill=call.skill,
                    tool=call.tool,
                ),
            )
            if call.instance is not None and self.on_abandon is not None:
                self.on_abandon(call, f"its deadline passed ({budget:.3g} s)", now)
            n += 1
        if self.keys is not None:
            self.keys.expire(now)
        return n

    def next_deadline(self) -> float | None:
        heap = self._deadlines
        while heap and heap[0][2].answered:
            heapq.heappop(heap)
        if len(heap) > COMPACT_ABOVE and len(heap) > 4 * self._open:
            # Linear, once per (3/4 of the heap) answers: constant per call.
            heap = self._deadlines = [e for e in heap if not e[2].answered]
            heapq.heapify(heap)
        first = heap[0][0] if heap else None
        keyed = self.keys.next_deadline() if self.keys is not None else None
        return first if keyed is None else keyed if first is None else min(first, keyed)

    @property
    def tracked(self) -> int:
        """Calls the deadline heap holds, answered or not (for tests)."""
        return len(self._deadlines)

    def lost(self, inst: Instance, reason: str, now: float) -> tuple[int, int]:
        """The instance's process is gone: retry its idempotent calls, fail the
        others with OutcomeUnknown. Returns (retried, failed)."""
        self.remove_active(inst)
        retried = failed = 0
        q = self.queue(inst.skill)
        calls = sorted(inst.in_flight.values(), key=lambda c: c.call_id, reverse=True)
        inst.in_flight.clear()
        for call in calls:
            call.instance = None
            unknown = OutcomeUnknown(
                f"call {call.call_id} to {call.skill}.{call.tool} was running on "
                f"{inst.id} (version {inst.version}) when {reason}; it may or may not "
                "have taken effect, and it was not retried because the tool is not "
                "declared idempotent",
                call_id=call.call_id,
                skill=call.skill,
                tool=call.tool,
                instance=inst.id,
            )
            if call.answered:
                if call.key is not None and self.keys is not None:
                    self.keys.settled(call, unknown.to_wire(), b"", inst.version)
                continue
            spec = inst.tools.get(call.tool)
            if spec is not None and spec.idempotent and call.deadline > now and q.accepting:
                call.lane = None
                q.push(call, front=True)  # oldest first once all are pushed
                retried += 1
                continue
            self.fail(call, unknown)
            failed += 1
        self.dispatch(inst.skill, now)
        return retried, failed

    def fail(self, call: PendingCall, exc: Any) -> None:
        if call.answered:
            return
        if call.queued:
            self.queues[call.skill].unqueue(call)
        call.answered = True
        self._open -= 1
        self._reply(call, exc.to_wire(), b"", "")

    def _reply(self, call: PendingCall, error: WireError | None, payload: bytes, v: str) -> None:
        if call.key is not None and self.keys is not None:
            # Recorded before the caller hears: what it heard is what a retry gets.
            self.keys.settled(call, error, payload, v)
        self._answer(call, error, payload, v)

    # --- views -----------------------------------------------------------------

    def queued(self, skill: str) -> int:
        q = self.queues.get(skill)
        return 0 if q is None else q.waiting


def _credit(inst: Instance) -> int:
    return inst.concurrency - len(inst.in_flight)


__all__ = ["COMPACT_ABOVE", "Instance", "InstanceState", "PendingCall", "Router", "SkillQueue"]
