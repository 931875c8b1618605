"""Cancellation and progress in the daemon, on fakes: a cancelled queued call
never reaches a skill, a running one is answered Cancelled and its skill told
(Cancel), a deadline cancels too, a Cancel that overtook its call still
counts, progress goes only to a caller that asked, and a handler that ignores
its cancel is reported, then its process replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_dispatch import Wired
from test_daemon_fakes import Harness, hello_msg

from ipc import CallProgress, CallReply, CallRequest, Cancel, Result, encode
from orchestrator._daemon.cancels import IGNORED_AFTER_S
from orchestrator._daemon.router import PendingCall


@pytest.fixture
def w(tmp_path: Path) -> Iterator[Wired]:
    h = Harness(tmp_path, concurrency=1, cancel_grace_s=5.0)
    wired = Wired(h)
    h.life.start(h.rt)
    proc = h.newest()
    wired.d.on_worker([proc.inst.rid, *encode(hello_msg(h.procs, proc))])
    assert h.rt.active() == [proc]
    yield wired
    h.close()


def call(w: Wired, req_id: int, *, progress: bool = False, timeout_s: float = 60.0) -> None:
    msg = CallRequest(req_id, "echo", "say", timeout_s, payload=b"\x80", progress=progress)
    w.d.on_control([b"client", *encode(msg)])


def cancel(w: Wired, req_id: int, client: bytes = b"client") -> None:
    w.d.on_control([client, *encode(Cancel(req_id, "enough"))])


def answers(w: Wired) -> list[tuple[int, str | None]]:
    return [(c, e.type if e else None) for c, e, _ in w.h.io_answers.answered]


def running(w: Wired) -> PendingCall:
    (proc,) = w.h.rt.active()
    (pending,) = proc.inst.in_flight.values()
    return pending


def test_a_cancelled_queued_call_never_reaches_the_skill(w: Wired) -> None:
    call(w, 1)
    call(w, 2)  # concurrency 1: queued
    cancel(w, 2)
    assert answers(w) == [(2, "Cancelled")]
    assert w.to_workers == []  # nothing to tell: it never ran
    # The first call's result frees the slot; nothing else is dispatched.
    first = running(w)
    proc = w.h.rt.active()[0]
    w.d.on_worker([proc.inst.rid, *encode(Result(first.call_id, None, b"\xa2ok"))])
    assert len(w.h.io_answers.sent) == 1
    assert w.h.router.queued("echo") == 0


def test_a_cancelled_running_call_is_answered_and_its_skill_told(w: Wired) -> None:
    call(w, 1)
    pending = running(w)
    cancel(w, 1)
    assert answers(w) == [(1, "Cancelled")]
    ((rid, msg),) = w.to_workers
    assert isinstance(msg, Cancel) and msg.id == pending.call_id and msg.reason == "enough"
    # The slot stays taken until the handler returns; its late Result is dropped.
    proc = w.h.rt.active()[0]
    assert rid == proc.inst.rid and proc.cancelling == 1
    assert w.h.sup.status(w.h.rt, w.h.clock())["cancelling"] == 1
    w.d.on_worker([proc.inst.rid, *encode(Result(pending.call_id, None, b"\xa2ok"))])
    assert answers(w) == [(1, "Cancelled")] and proc.inst.in_flight == {}
    # Only the caller's own connection can cancel; an unknown id is no error.
    call(w, 2)
    cancel(w, 2, client=b"someone-else")
    cancel(w, 99)
    assert answers(w) == [(1, "Cancelled")]


def test_a_cancel_that_overtook_its_call_cancels_it(w: Wired) -> None:
    cancel(w, 7)
    call(w, 7)
    ((ident, reply),) = [(i, m) for i, m in w.to_clients if isinstance(m, CallReply)]
    assert ident == b"client" and reply.error is not None
    assert reply.error.type == "Cancelled" and "before it ran" in reply.error.message
    assert w.h.io_answers.sent == []


def test_a_deadline_cancels_the_running_call(w: Wired) -> None:
    call(w, 1, timeout_s=1.0)
    pending = running(w)
    w.h.clock.now += 1.5
    w.h.router.expire(w.h.clock())
    assert answers(w) == [(1, "CallTimeout")]
    ((_, msg),) = w.to_workers
    assert isinstance(msg, Cancel) and msg.id == pending.call_id and "deadline" in msg.reason


def test_progress_reaches_only_a_caller_that_asked(w: Wired) -> None:
    proc = w.h.rt.active()[0]
    call(w, 1)
    quiet = running(w)
    w.d.on_worker([proc.inst.rid, *encode(CallProgress(quiet.call_id, 1.0, 2.0, "half"))])
    assert [m for _, m in w.to_clients if isinstance(m, CallProgress)] == []
    w.d.on_worker([proc.inst.rid, *encode(Result(quiet.call_id, None, b"\xa2ok"))])
    call(w, 2, progress=True)
    asked = running(w)
    w.d.on_worker([proc.inst.rid, *encode(CallProgress(asked.call_id, 1.0, 2.0, "half"))])
    assert [m for _, m in w.to_clients if isinstance(m, CallProgress)] == [
        CallProgress(2, 1.0, 2.0, "half")
    ]
    cancel(w, 2)  # answered: later updates are dropped
    w.d.on_worker([proc.inst.rid, *encode(CallProgress(asked.call_id, 2.0, 2.0, None))])
    assert len([m for _, m in w.to_clients if isinstance(m, CallProgress)]) == 1


def test_a_handler_that_ignores_its_cancel_is_reported_then_replaced(w: Wired) -> None:
    h = w.h
    call(w, 1)
    old = h.rt.active()[0]
    cancel(w, 1)
    h.clock.now += IGNORED_AFTER_S
    w.d.cancels.tick(h.clock())
    assert "cancel_ignored" in h.types() and "restart" not in h.types()
    h.clock.now += 5.0  # past cancel_grace_s
    w.d.cancels.tick(h.clock())
    restarts = [e for e in h.events.query(None, 100) if e["type"] == "restart"]
    assert [e["data"]["reason"] for e in restarts] == ["cancel_ignored"]
    assert h.rt.rollout is not None  # a zero-downtime restart: a new process starts
    new = h.newest()
    assert new is not old
    w.d.cancels.tick(h.clock())  # one restart, not one per tick
    assert len([e for e in h.events.query(None, 100) if e["type"] == "restart"]) == 1
