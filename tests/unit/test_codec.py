"""The wire codec: every kind round-trips; bad frames become clear errors."""

from __future__ import annotations

import msgpack
import pytest

import ipc
from ipc import MessageTooLarge, PayloadError, ProtocolError, ToolSpec, WireError

EXAMPLES: list[ipc.Message] = [
    ipc.Hello(
        1, "echo", "1.0", "echo-1", 42, 8, [ToolSpec("say", "Say.", {"type": "object"})], True, "s"
    ),
    ipc.Welcome(1, 1.0, 5.0),
    ipc.Reject("no"),
    ipc.Call(7, "say", 2.5, payload=b"\x80"),
    ipc.Result(7, None, payload=b"\xa2hi"),
    ipc.Result(8, WireError("RemoteError", "boom", {"remote_type": "ValueError"})),
    ipc.Heartbeat(3),
    ipc.HealthCheck(1, 5.0),
    ipc.HealthReply(1, False, "db down"),
    ipc.Drain(),
    ipc.Drained(),
    ipc.Bye("drained"),
    ipc.Request(1, "list", {}),
    ipc.CallRequest(2, "echo", "say", 1.0, payload=b"\x80"),
    ipc.CallRequest(
        2, "echo", "say", 1.0, "key-1", "00-" + "a" * 32 + "-" + "b" * 16 + "-01", payload=b"x"
    ),
    ipc.CallRequest(2, "echo", "say", 1.0, None, "00-trace", payload=b"\x80"),
    ipc.CallRequest(2, "echo", "say", 1.0, session="session-1", payload=b"\x80"),
    ipc.Call(7, "say", 2.5, session="session-1", payload=b"\x80"),
    ipc.Call(7, "say", 2.5, "key-1", None, payload=b"\x80"),
    ipc.Reply(1, [{"name": "echo"}]),
    ipc.Reply(1, None, WireError("BadRequest", "x", {})),
    ipc.CallReply(2, "1.0", None, payload=b"\xc0"),
    ipc.Progress(1, {"step": "spawn"}),
    ipc.Call(7, "say", 2.5, payload=b"\x80", progress=True),
    ipc.CallRequest(2, "echo", "say", 1.0, payload=b"\x80" * 40_000, progress=True),
    ipc.CallProgress(7, 3.0, 10.0, "three"),
    ipc.CallProgress(7, 0.5),
    ipc.Cancel(7, "cancelled by the caller"),
    ipc.Event(1, 2.0, "echo", "ready", {"pid": 3}),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_kind_round_trips(msg: ipc.Message) -> None:
    assert ipc.decode(ipc.encode(msg)) == msg


def test_absent_optional_fields_are_left_off_and_old_headers_still_decode() -> None:
    # A call without a key or a trace context is the bytes it was before them.
    (frame,) = ipc.encode(ipc.CallRequest(2, "echo", "say", 1.0, payload=b"\x80"))
    assert msgpack.unpackb(frame) == [21, 2, "echo", "say", 1.0, b"\x80"]
    (frame,) = ipc.encode(ipc.CallRequest(2, "echo", "say", 1.0, "k", payload=b"\x80"))
    assert msgpack.unpackb(frame) == [21, 2, "echo", "say", 1.0, "k", b"\x80"]
    two = ipc.decode([msgpack.packb([21, 2, "echo", "say", 1.0]), b"\x80"])
    assert isinstance(two, ipc.CallRequest) and two.key is None and two.payload == b"\x80"
    with pytest.raises(ProtocolError, match=r"CallRequest\.key must be nil or a string"):
        ipc.decode([msgpack.packb([21, 2, "echo", "say", 1.0, 5, None, b"\x80"])])


def test_progress_is_left_off_when_false_and_sent_when_asked() -> None:
    """``progress`` false is its default: absent, as a peer that predates it
    sends nothing; true goes after the key and trace context (nil if none)."""
    (frame,) = ipc.encode(ipc.CallRequest(2, "echo", "say", 1.0, progress=False, payload=b"\x80"))
    assert msgpack.unpackb(frame) == [21, 2, "echo", "say", 1.0, b"\x80"]
    (frame,) = ipc.encode(ipc.CallRequest(2, "echo", "say", 1.0, progress=True, payload=b"\x80"))
    assert msgpack.unpackb(frame) == [21, 2, "echo", "say", 1.0, None, None, True, b"\x80"]
    with pytest.raises(ProtocolError, match=r"CallProgress\.total"):
        ipc.decode([msgpack.packb([12, 1, 1.0, "ten"])])


def test_ints_are_accepted_where_floats_are_expected() -> None:
    frames = [msgpack.packb([4, 7, "say", 3]), b"\x80"]
    call = ipc.decode(frames)
    assert isinstance(call, ipc.Call) and call.timeout_s == 3.0


@pytest.mark.parametrize(
    ("frames", "words"),
    [
        ([], "frames"),
        ([b"a", b"b", b"c"], "frames"),
        ([b"\xc1"], "msgpack"),
        ([msgpack.packb({"kind": 4})], "list"),
        ([msgpack.packb([99])], "unknown message kind 99"),
        ([msgpack.packb([4, 7]), b"\x80"], "takes"),
        ([msgpack.packb([4, 7, "say", 1.0])], "ends with its payload"),
        ([msgpack.packb([4, 7, "say", 1.0, "text"])], "ends with its payload"),
        ([msgpack.packb([4, "7", "say", 1.0, b""])], "Call.call_id must be an integer"),
        ([msgpack.packb([4, True, "say", 1.0]), b""], "Call.call_id must be an integer"),
        ([msgpack.packb([5, 1, ["x"], b""])], "Result.error"),
        ([msgpack.packb([1, 1, "e", "1", "e-1", 1, 1, [["t"]], True])], "Hello.tools"),
        ([msgpack.packb([9]), b"extra"], "no payload"),
    ],
)
def test_bad_frames_are_protocol_errors(frames: list[bytes], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        ipc.decode(frames)


def test_small_payloads_ride_in_the_header_frame_and_large_ones_alone() -> None:
    small = ipc.Call(1, "t", 1.0, payload=b"x" * ipc.INLINE_PAYLOAD_MAX)
    large = ipc.Call(1, "t", 1.0, payload=b"x" * (ipc.INLINE_PAYLOAD_MAX + 1))
    assert len(ipc.encode(small)) == 1
    assert ipc.encode(large)[1] is large.payload  # not copied
    for msg in (small, large):
        assert ipc.decode(ipc.encode(msg)) == msg


def test_size_limit() -> None:
    frames = ipc.encode(ipc.Call(1, "t", 1.0, payload=b"x" * 2000))
    with pytest.raises(MessageTooLarge, match="limit of 1000"):
        ipc.decode(frames, max_bytes=1000)


def test_payloads() -> None:
    assert ipc.decode_payload(ipc.encode_payload({"a": [1, 2.5, None, b"b"]})) == {
        "a": [1, 2.5, None, b"b"]
    }
    assert ipc.decode_payload(b"") is None
    with pytest.raises(PayloadError, match="set"):
        ipc.encode_payload({1, 2})
    with pytest.raises(PayloadError):
        ipc.decode_payload(b"\xc1")
    # the per-thread packer recovers from a failed pack
    assert ipc.encode_payload("ok") == msgpack.packb("ok")


def test_errors_round_trip_through_the_wire() -> None:
    err = ipc.RemoteError("boom", remote_type="ValueError", traceback="Traceback...")
    back = ipc.error_from_wire(err.to_wire())
    assert isinstance(back, ipc.RemoteError) and back.remote_type == "ValueError"
    assert isinstance(back, ipc.ZskillError)
    odd = ipc.error_from_wire(WireError("SomethingNew", "m", {}))
    assert type(odd) is ipc.ZskillError and odd.details["type"] == "SomethingNew"
