"""Size limits that must agree end to end: the frame count a receiver keeps,
the Call a daemon forwards, the answers it sends a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

import ipc
from ipc import Call, CallReply, MessageTooLarge, Progress, Reply, WireError
from orchestrator._daemon.sockets import ClientKeys, TcpPeer, _over_limit, _too_large


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://limits")
    b.connect("inproc://limits")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_frames_past_the_most_a_message_has_are_dropped_uncopied(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    a, b = pair
    header = msgpack.packb([21, 9, "echo", "say", 1.0])
    a.send_multipart([b"peer", header, b"p" * 10, *[b"x" * 1000] * 45])
    assert b.poll(5000)
    frames = ipc.recv_frames(b)
    assert frames[:3] == [b"peer", header, b"p" * 10]
    assert len(frames) == ipc.MAX_FRAMES + 1
    dropped = frames[-1]
    assert isinstance(dropped, ipc.Dropped) and dropped == b""
    assert (dropped.frames, dropped.nbytes) == (45, 45_000)
    with pytest.raises(MessageTooLarge, match="message of 47 frames") as info:
        ipc.decode(frames[1:])
    assert info.value.details == {"frames": 47, "limit": 2}
    # What it was can still be read, to answer it.
    head = ipc.decode_header(frames[1:])
    assert isinstance(head, ipc.CallRequest) and head.req_id == 9 and head.payload == b""
    # A message of the most frames allowed comes whole.
    a.send_multipart([b"peer", header, b"p"])
    assert b.poll(5000)
    assert ipc.recv_frames(b) == [b"peer", header, b"p"]


@pytest.mark.parametrize("tool", ["say", "t" * 40, "é" * 70, "x" * 70_000])
@pytest.mark.parametrize("payload_size", [0, 200, 300, 70_000, ipc.INLINE_PAYLOAD_MAX, 40_000])
@pytest.mark.parametrize(
    ("key", "trace"),
    [
        (None, None),
        ("k-1", None),
        (None, "00-" + "a" * 32 + "-" + "b" * 16 + "-01"),
        ("é" * 512, "t"),
    ],
)
def test_call_bytes_bounds_every_call_the_daemon_can_send(
    tool: str, payload_size: int, key: str | None, trace: str | None
) -> None:
    bound = ipc.call_bytes(tool, payload_size, key, trace)
    payload = b"a" * payload_size
    for call_id in (0, 1, 200, 70_000, 2**33, 2**64 - 1):
        for timeout_s in (0.0, 1.5, 7 * 24 * 3600.0):
            frames = ipc.encode(Call(call_id, tool, timeout_s, key, trace, payload=payload))
            assert sum(map(len, frames)) <= bound
    widest = ipc.encode(Call(2**64 - 1, tool, 1.5, key, trace, payload=payload))
    assert sum(map(len, widest)) == bound


def test_an_answer_over_the_limit_goes_out_as_its_error() -> None:
    reply = _too_large(Reply(7, {"tools": "x" * 100}), 5000, 4096)
    assert isinstance(reply, Reply) and reply.req_id == 7 and reply.body is None
    assert reply.error is not None and reply.error.type == "MessageTooLarge"
    assert "5000 bytes, over the limit of 4096" in reply.error.message
    assert reply.error.details == {"size": 5000, "limit": 4096}
    call = _too_large(CallReply(8, "1.0", None, b"x" * 5000), 5010, 4096)
    assert isinstance(call, CallReply) and call.req_id == 8 and call.payload == b""
    assert call.error is not None and call.error.type == "MessageTooLarge"
    assert _too_large(Progress(9, "x" * 5000), 5010, 4096) is None
    assert _too_large(Reply(1, None, WireError("X", "y" * 5000)), 5010, 4096) is not None


def test_a_call_reply_is_held_to_what_the_client_can_receive() -> None:
    limit = 40_000
    # A Result of the limit, forwarded under a header of its own: it goes out.
    reply = CallReply(1, "1.0.0-with-a-long-version", None, b"x" * (limit - 10))
    assert not _over_limit(reply, ipc.encode(reply), limit)
    huge = CallReply(1, "1.0", None, b"x" * (limit + ipc.HEADER_ROOM_BYTES + 1))
    assert _over_limit(huge, ipc.encode(huge), limit)
    control = Reply(1, "x" * limit)
    assert _over_limit(control, ipc.encode(control), limit)


def test_a_tcp_peer_is_never_an_ipc_peer_with_the_same_bytes() -> None:
    tcp, plain = TcpPeer(b"Tabc"), b"Tabc"
    assert tcp != plain and plain != tcp and tcp != TcpPeer(b"abc")
    assert tcp == TcpPeer(b"Tabc")
    assert len({tcp, b"Tabc", TcpPeer(b"Tabc")}) == 2
    assert bytes(tcp) == b"Tabc"


def test_client_keys_are_read_again_when_the_directory_changes(tmp_path: Path) -> None:
    keys_dir = tmp_path / "clients"
    keys_dir.mkdir()
    zmq.auth.create_certificates(str(keys_dir), "a")
    zmq.auth.create_certificates(str(keys_dir), "b")
    a_public, _ = zmq.auth.load_certificate(str(keys_dir / "a.key"))
    b_public, _ = zmq.auth.load_certificate(str(keys_dir / "b.key"))
    keys = ClientKeys(keys_dir)
    assert keys.callback("*", a_public) and keys.callback("*", b_public)
    (keys_dir / "a.key").unlink()
    assert not keys.callback("*", a_public)  # revoked: no restart needed
    assert keys.callback("*", b_public)
    zmq.auth.create_certificates(str(keys_dir), "a")
    a_new, _ = zmq.auth.load_certificate(str(keys_dir / "a.key"))
    assert keys.callback("*", a_new)
