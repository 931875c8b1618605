"""Idempotency keys' decisions on a real Router without sockets: what a call
with a key gets, for each way its first attempt can end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ipc import CallReply, CallRequest, Message, ToolSpec, WireError
from orchestrator._daemon.jobs import InlineJobs
from orchestrator._daemon.keybook import KeyLimits, KeyState
from orchestrator._daemon.keyed import KeyedCalls
from orchestrator._daemon.keystore import KeyStore
from orchestrator._daemon.router import Instance, InstanceState, PendingCall, Router

LIMITS = KeyLimits(max_keys=100, max_bytes=1 << 20, max_age_s=3600.0)


class World:
    """A Router with one instance of skill ``a`` and the keys on top; every
    answer a client gets, from the router or the keys, in ``replies``."""

    def __init__(self, store: KeyStore | None = None, idempotent: bool = False) -> None:
        self.sent: list[PendingCall] = []
        self.replies: list[tuple[int, str, str | None, bytes]] = []  # req, version, error, payload
        self.router = Router(lambda i, c, t: self.sent.append(c), self._answer)
        self.keys = KeyedCalls(self.router, store, self._send_ctl, LIMITS, wall=lambda: 1000.0)
        self.inst = self.instance("a-1", idempotent)
        self.router.set_active("a", [self.inst], 0.0)

    def instance(self, name: str, idempotent: bool = False) -> Instance:
        tools = {"t": ToolSpec("t", "", {}, idempotent), "u": ToolSpec("u", "", {}, False)}
        return Instance(name, "a", "1.0", 4, tools, InstanceState.READY)

    def _answer(self, call: PendingCall, err: WireError | None, payload: bytes, v: str) -> None:
        self.replies.append((call.req_id, v, err.type if err else None, payload))

    def _send_ctl(self, ident: bytes, msg: Message) -> None:
        assert isinstance(msg, CallReply)
        self.replies.append(
            (msg.req_id, msg.version, msg.error.type if msg.error else None, msg.payload)
        )

    def call(
        self, req: int, key: str = "k", args: bytes = b"\x80", now: float = 0.0, **kw: Any
    ) -> None:
        msg = CallRequest(req, "a", kw.get("tool", "t"), 10.0, key, payload=args)
        self.keys.call(b"client", msg, kw.get("timeout", 10.0), now)

    def result(self, call: PendingCall, payload: bytes = b"\xa2ok", now: float = 1.0) -> None:
        self.router.result(self.inst, call.call_id, None, payload, now)

    def state(self, key: str = "k") -> KeyState | None:
        e = self.keys.book.get("a", key)
        return None if e is None else e.state


def test_a_duplicate_waits_for_the_first_and_a_retry_gets_the_record() -> None:
    w = World()
    w.call(1)
    w.call(2)  # while the first runs
    assert len(w.sent) == 1 and w.replies == []
    w.result(w.sent[0])
    assert sorted(w.replies) == [(1, "1.0", None, b"\xa2ok"), (2, "1.0", None, b"\xa2ok")]
    w.call(3)
    assert len(w.sent) == 1  # not run again
    assert w.replies[-1] == (3, "1.0", None, b"\xa2ok")
    assert w.state() is KeyState.DONE


def test_a_remote_error_is_the_recorded_outcome() -> None:
    w = World()
    w.call(1)
    err = WireError("RemoteError", "boom", {"remote_type": "ValueError"})
    w.router.result(w.inst, w.sent[0].call_id, err, b"", 1.0)
    w.call(2)
    assert [r[2] for r in w.replies] == ["RemoteError", "RemoteError"]
    assert len(w.sent) == 1


def test_other_arguments_or_another_tool_under_a_key_are_refused() -> None:
    w = World()
    w.call(1, args=b"\x81\xa1x\x01")
    w.call(2, args=b"\x81\xa1x\x02")
    w.call(3, args=b"\x81\xa1x\x01", tool="u")
    assert [r[2] for r in w.replies] == ["KeyConflict", "KeyConflict"]
    assert len(w.sent) == 1


def test_a_lost_process_makes_the_key_unknown_for_good() -> None:
    w = World()
    w.call(1)
    w.call(2)
    w.router.lost(w.inst, "it was killed", 1.0)
    assert sorted(r[:3] for r in w.replies) == [
        (1, "", "OutcomeUnknown"),
        (2, "", "OutcomeUnknown"),
    ]
    w.router.set_active("a", [w.instance("a-2")], 1.0)
    w.call(3)
    assert w.replies[-1][2] == "OutcomeUnknown" and len(w.sent) == 1
    assert w.state() is KeyState.UNKNOWN


def test_an_idempotent_tool_retried_after_a_loss_is_done_by_its_retry() -> None:
    w = World(idempotent=True)
    w.call(1)
    w.router.lost(w.inst, "it was killed", 1.0)
    second = w.instance("a-2", idempotent=True)
    w.inst = second
    w.router.set_active("a", [second], 1.0)
    assert len(w.sent) == 2  # the router's own retry
    w.result(w.sent[1])
    assert w.replies == [(1, "1.0", None, b"\xa2ok")] and w.state() is KeyState.DONE


def test_a_call_refused_before_it_ran_frees_its_key() -> None:
    w = World()
    w.router.close("a", "skill 'a' is stopped")
    w.call(1)
    assert w.replies[-1][2] == "SkillUnavailable" and w.state() is None
    w.router.reopen("a")
    w.router.set_active("a", [w.inst], 0.0)
    w.call(2)
    w.result(w.sent[0])
    assert w.replies[-1] == (2, "1.0", None, b"\xa2ok")


def test_a_skill_that_refuses_before_running_frees_the_key() -> None:
    w = World()
    w.call(1)
    w.call(2)
    err = WireError("SkillUnavailable", "draining", {})
    w.router.result(w.inst, w.sent[0].call_id, err, b"", 1.0)
    assert [r[2] for r in w.replies] == ["SkillUnavailable", "SkillUnavailable"]
    assert w.state() is None


def test_a_timeout_while_running_keeps_the_key_and_the_late_result_settles_it() -> None:
    w = World()
    w.call(1, timeout=1.0)
    w.router.expire(1.0)
    assert w.replies == [(1, "", "CallTimeout", b"")]
    assert w.state() is KeyState.RUNNING  # the tool may still finish
    w.call(2, now=1.5)
    w.result(w.sent[0], now=2.0)  # late for call 1, in time for call 2
    assert w.replies[-1] == (2, "1.0", None, b"\xa2ok")
    w.call(3, now=3.0)
    assert w.replies[-1] == (3, "1.0", None, b"\xa2ok") and len(w.sent) == 1


def test_a_timed_out_call_whose_process_then_dies_is_unknown() -> None:
    w = World()
    w.call(1, timeout=1.0)
    w.router.expire(1.0)
    w.router.lost(w.inst, "it was killed", 2.0)
    assert w.state() is KeyState.UNKNOWN


def test_a_waiter_gives_up_at_its_own_deadline() -> None:
    w = World()
    w.call(1, timeout=100.0)
    w.call(2, timeout=2.0, now=1.0)
    assert w.router.next_deadline() == 3.0  # the waiter's, before the call's own
    w.router.expire(3.0)
    assert w.replies == [(2, "", "CallTimeout", b"")]
    w.result(w.sent[0], now=4.0)
    assert w.replies[-1] == (1, "1.0", None, b"\xa2ok")


def test_keys_outlive_the_daemon_through_the_store(tmp_path: Path) -> None:
    path = tmp_path / "idempotency.log"
    store = KeyStore(path, InlineJobs())
    store.load()
    w = World(store)
    w.call(1, key="done")
    w.call(2, key="running")
    w.result(w.sent[0])
    store.close()  # the daemon ends while "running" still runs
    again = KeyStore(path, InlineJobs())
    w2 = World(again)
    assert w2.keys.restore(again.load()) == 2
    w2.call(3, key="done")
    w2.call(4, key="running")
    assert w2.replies == [(3, "1.0", None, b"\xa2ok"), (4, "", "OutcomeUnknown", b"")]
    assert w2.sent == []
    again.close()


def test_a_key_that_cannot_be_recorded_is_not_run(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "idempotency.log", InlineJobs())
    store.load()

    def full(record: bytes) -> None:
        raise OSError(28, "No space left on device")

    store.append = full  # type: ignore[method-assign]
    w = World(store)
    w.call(1)
    assert w.sent == [] and w.replies == [(1, "", "CallError", b"")]
    assert w.state() is None


@pytest.mark.parametrize("key", ["", "x" * 513])
def test_a_key_too_short_or_too_long_is_refused(key: str) -> None:
    w = World()
    w.call(1, key=key)
    assert w.replies == [(1, "", "InvalidArguments", b"")] and w.sent == []


def test_duplicates_waiting_are_bounded_by_max_queued() -> None:
    w = World()
    w.router.limit("a", 2)
    for req in range(1, 5):
        w.call(req)
    assert w.replies == [(4, "", "SkillOverloaded", b"")]
    w.result(w.sent[0])
    assert sorted(r[0] for r in w.replies if r[2] is None) == [1, 2, 3]
