"""Routing decisions without sockets: credit, queueing, deadlines, loss."""

from __future__ import annotations

from typing import Any

import pytest

from ipc import ToolSpec, WireError
from orchestrator._daemon.router import COMPACT_ABOVE, Instance, InstanceState, PendingCall, Router


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.answers: list[tuple[int, str | None, str]] = []

    def send(self, inst: Instance, call: PendingCall, timeout_s: float) -> None:
        self.sent.append((inst.id, call.req_id))

    def answer(
        self, call: PendingCall, err: WireError | None, payload: bytes, version: str
    ) -> None:
        self.answers.append((call.req_id, err.type if err else None, version))


def inst(name: str = "a-1", concurrency: int = 2, idempotent: bool = False) -> Instance:
    tools = {
        "t": ToolSpec("t", "", {}, idempotent),
    }
    return Instance(name, "a", "1.0", concurrency, tools, InstanceState.READY)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def accept(r: Router, req: int, tool: str = "t", timeout: float = 10.0, now: float = 0.0) -> Any:
    return r.accept(b"c", req, "a", tool, b"", timeout, now)


def test_credit_limits_in_flight_and_queues_the_rest(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    i = inst(concurrency=2)
    r.set_active("a", [i], 0.0)
    calls = [accept(r, n) for n in range(5)]
    assert [s[1] for s in rec.sent] == [0, 1]
    assert r.queued("a") == 3
    r.result(i, calls[0].call_id, None, b"x", 0.1)
    assert [s[1] for s in rec.sent] == [0, 1, 2]
    assert rec.answers == [(0, None, "1.0")]


def test_exactly_once_late_result_after_timeout(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    i = inst()
    r.set_active("a", [i], 0.0)
    c = accept(r, 1, timeout=1.0)
    assert r.expire(1.0) == 1
    assert rec.answers == [(1, "CallTimeout", "")]
    # The slot stays taken until the skill answers; the late answer is dropped.
    assert i.credit == 1
    r.result(i, c.call_id, None, b"late", 2.0)
    assert rec.answers == [(1, "CallTimeout", "")]
    assert i.credit == 2


def test_queued_call_times_out_and_is_skipped(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    accept(r, 1, timeout=1.0)  # no instance yet
    r.expire(2.0)
    i = inst()
    r.set_active("a", [i], 2.0)
    assert rec.sent == []
    assert rec.answers == [(1, "CallTimeout", "")]


def test_lost_instance_retries_idempotent_only(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    i = inst(idempotent=True)
    r.set_active("a", [i], 0.0)
    accept(r, 1)
    r.lost(i, "it was killed", 0.5)
    assert rec.answers == []
    assert r.queued("a") == 1
    j = inst("a-2")
    r.set_active("a", [j], 0.6)
    assert rec.sent[-1] == ("a-2", 1)

    k = inst("a-3", idempotent=False)
    r.set_active("a", [k], 1.0)
    accept(r, 2)
    r.lost(k, "it was killed", 1.1)
    assert rec.answers[-1] == (2, "OutcomeUnknown", "")


def test_unknown_tool_and_closed_skill(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    r.set_active("a", [inst()], 0.0)
    accept(r, 1, tool="nope")
    assert rec.answers == [(1, "ToolNotFound", "")]
    r.close("a", "stopped")
    accept(r, 2)
    assert rec.answers[-1] == (2, "SkillUnavailable", "")


def test_switch_routes_queue_to_new_instance(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    old = inst("a-1", concurrency=1)
    r.set_active("a", [old], 0.0)
    accept(r, 1)
    accept(r, 2)
    accept(r, 3)
    new = inst("a-2", concurrency=8)
    r.set_active("a", [new], 0.1)
    assert rec.sent == [("a-1", 1), ("a-2", 2), ("a-2", 3)]


def test_answered_calls_behind_a_hung_one_do_not_pile_up(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    hung, busy = inst("a-1", concurrency=1), inst("a-2", concurrency=1)
    r.set_active("a", [hung], 0.0)
    stuck = accept(r, 0, timeout=60.0)  # its deadline heads the heap for a minute
    r.set_active("a", [busy], 0.0)
    for n in range(1, 20_000):  # answered at once, each behind the stuck call
        call = accept(r, n, timeout=60.0, now=n * 1e-4)
        r.result(busy, call.call_id, None, b"", n * 1e-4)
        r.next_deadline()  # as the daemon's loop does every turn
        assert r.tracked <= 4 * 2 + COMPACT_ABOVE
    assert r.next_deadline() == 60.0
    assert r.expire(60.0) == 1 and rec.answers[-1] == (0, "CallTimeout", "")
    assert stuck.answered


def test_over_max_queued_a_call_is_refused_at_once(rec: Recorder) -> None:
    """Hardening 12: a flood waits in the daemon only up to max_queued; one
    more call is answered SkillOverloaded at once, and nothing of it is kept."""
    r = Router(rec.send, rec.answer)
    r.limit("a", 3)
    i = inst(concurrency=2)
    r.set_active("a", [i], 0.0)
    calls = [accept(r, n) for n in range(5)]  # 2 in flight, 3 queued
    assert r.queued("a") == 3 and rec.answers == []
    tracked = r.tracked
    refused = accept(r, 99)
    assert rec.answers == [(99, "SkillOverloaded", "")]
    assert refused.answered and r.tracked == tracked  # not even in the deadline heap
    # A slot frees: a queued call goes out, and one more fits again.
    r.result(i, calls[0].call_id, None, b"x", 0.1)
    assert r.queued("a") == 2
    accept(r, 100)
    assert r.queued("a") == 3
    accept(r, 101)
    assert rec.answers == [
        (99, "SkillOverloaded", ""),
        (0, None, "1.0"),
        (101, "SkillOverloaded", ""),
    ]


def test_the_refusal_names_the_skill_and_the_limit() -> None:
    errors: list[WireError] = []
    r = Router(lambda *_: None, lambda c, err, p, v: errors.append(err) if err else None)
    r.limit("a", 1)
    accept(r, 1)  # no instance: it waits
    accept(r, 2)
    (err,) = errors
    assert err.type == "SkillOverloaded"
    assert "skill 'a' is overloaded" in err.message and "max_queued = 1" in err.message
    assert err.details == {"skill": "a", "tool": "t", "max_queued": 1}


def test_calls_answered_while_queued_free_their_place(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    r.limit("a", 2)
    accept(r, 1, timeout=1.0)
    accept(r, 2, timeout=1.0)
    assert r.expire(1.0) == 2  # timed out in the queue: no longer waiting
    assert r.queued("a") == 0
    accept(r, 3, now=1.0)
    accept(r, 4, now=1.0)
    assert [a[1] for a in rec.answers] == ["CallTimeout", "CallTimeout"]
    accept(r, 5, now=1.0)
    assert rec.answers[-1] == (5, "SkillOverloaded", "")
    # Closing the skill fails what waits; a stopped skill says so, not "overloaded".
    r.close("a", "stopped")
    assert r.queued("a") == 0
    accept(r, 6, now=1.0)
    assert rec.answers[-1] == (6, "SkillUnavailable", "")
    r.reopen("a")
    i = inst(concurrency=1, idempotent=True)
    r.set_active("a", [i], 1.0)
    accept(r, 7, now=1.0)
    accept(r, 8, now=1.0)
    accept(r, 9, now=1.0)
    assert r.queued("a") == 2
    r.lost(i, "it died", 1.0)  # the idempotent call in flight goes back to the queue
    assert r.queued("a") == 3


def test_without_a_limit_nothing_is_refused(rec: Recorder) -> None:
    r = Router(rec.send, rec.answer)
    for n in range(50):
        accept(r, n)
    assert r.queued("a") == 50 and rec.answers == []
