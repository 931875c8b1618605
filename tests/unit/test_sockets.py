"""ipc's hot-path socket helpers on a real pair of ZeroMQ sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

import ipc


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://pair")
    b.connect("inproc://pair")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_multipart_messages_come_whole_and_in_order(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    a, b = pair
    ipc.send_frames(a, [b"one"])
    ipc.send_frames(a, [b"two", b"", b"x" * 100_000])
    assert b.poll(5000)
    assert ipc.recv_frames(b) == [b"one"]
    assert ipc.more_waiting(b)
    assert ipc.recv_frames(b) == [b"two", b"", b"x" * 100_000]
    assert not ipc.more_waiting(b)
    with pytest.raises(zmq.Again):
        ipc.recv_frames(b)


def test_a_waiting_receive_gives_up_after_the_sockets_rcvtimeo(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    a, b = pair
    b.setsockopt(zmq.RCVTIMEO, 50)
    started = time.monotonic()
    with pytest.raises(zmq.Again):
        ipc.recv_frames(b, wait=True)
    assert time.monotonic() - started >= 0.04
    ipc.send_frames(a, [b"late", b"part"])
    assert ipc.recv_frames(b, wait=True) == [b"late", b"part"]
