"""The Dispatcher on fakes: frames from clients and skill processes reach
the right handler, and what a peer may not send is answered or logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_fakes import Harness, hello_msg

from ipc import CallReply, CallRequest, Message, Reject, Reply, Request, Result, encode
from orchestrator._daemon.control import ControlServer
from orchestrator._daemon.dispatch import Dispatcher


class Wired:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.to_clients: list[tuple[bytes, Message]] = []
        self.to_workers: list[tuple[bytes, Message]] = []
        control = ControlServer(h.life, h.events, h.releases, {}, lambda: None, h.clock)
        self.d = Dispatcher(
            h.router,
            h.life,
            control,
            send_ctl=lambda ident, msg: self.to_clients.append((ident, msg)),
            send_worker=lambda ident, msg: self.to_workers.append((ident, msg)) is None,
            clock=h.clock,
            max_bytes=1 << 20,
            call_timeout_s=60.0,
        )


@pytest.fixture
def w(tmp_path: Path) -> Iterator[Wired]:
    h = Harness(tmp_path)
    yield Wired(h)
    h.close()


def test_a_call_reaches_the_router_and_its_result_the_client(w: Wired) -> None:
    h = w.h
    h.life.start(h.rt)
    proc = h.newest()
    w.d.on_worker([proc.inst.rid, *encode(hello_msg(h.procs, proc))])
    assert h.rt.active() == [proc]  # the hello went through the Lifecycle
    w.d.on_control([b"client", *encode(CallRequest(9, "echo", "say", 0.0, payload=b"\x80"))])
    ((inst_id, call_id),) = h.io_answers.sent
    assert inst_id == proc.id
    w.d.on_worker([proc.inst.rid, *encode(Result(call_id, None, b"\xa2ok"))])
    ((req_id, error, version),) = h.io_answers.answered
    assert (req_id, error, version) == (9, None, "1.0.0")


def test_unknown_skill_and_shutdown_are_answered_at_once(w: Wired) -> None:
    w.d.on_control([b"c", *encode(CallRequest(1, "mail", "x", 1.0, payload=b""))])
    w.d.begin_shutdown()
    w.d.on_control([b"c", *encode(CallRequest(2, "echo", "say", 1.0, payload=b""))])
    replies = [m for _, m in w.to_clients]
    assert all(isinstance(m, CallReply) for m in replies)
    assert [(m.req_id, m.error.type) for m in replies] == [  # type: ignore[attr-defined]
        (1, "SkillNotFound"),
        (2, "SkillUnavailable"),
    ]
    assert w.h.io_answers.sent == []


def test_a_request_gets_one_reply(w: Wired) -> None:
    w.d.on_control([b"c", *encode(Request(4, "list", {}))])
    ((ident, reply),) = w.to_clients
    assert ident == b"c" and isinstance(reply, Reply) and reply.req_id == 4
    assert reply.error is None and reply.body[0]["name"] == "echo"


def test_what_a_peer_may_not_send(w: Wired) -> None:
    w.d.on_control([b"c", *encode(Result(1, None, b""))])
    ((_, reply),) = w.to_clients
    assert isinstance(reply, Reply) and reply.error is not None
    assert reply.error.type == "ProtocolError" and "Result is not a message" in reply.error.message
    w.d.on_control([b"c", b"\xc1garbage"])
    assert w.to_clients[-1][1].error.type == "ProtocolError"  # type: ignore[attr-defined]
    # A hello from a process the daemon did not start is refused.
    w.h.life.start(w.h.rt)
    proc = w.h.newest()
    w.d.on_worker([b"echo-99", *encode(hello_msg(w.h.procs, proc))])
    ((ident, msg),) = w.to_workers
    assert ident == b"echo-99" and isinstance(msg, Reject)
    assert w.h.rt.active() == []
