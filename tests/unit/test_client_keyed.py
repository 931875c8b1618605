"""What a client sends with a call besides its arguments: the idempotency
key (and the canonical bytes of a keyed call's arguments) and the trace
context, given or taken from the current OpenTelemetry span."""

from __future__ import annotations

import asyncio

import pytest

import ipc
from orchestrator import AsyncClient, Client, InvalidArguments
from orchestrator._client.common import call_frames
from orchestrator._client.keyed import canonical, check_key, current_traceparent
from orchestrator.testing import FakeDaemon

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_canonical_sorts_every_map_and_keeps_the_rest() -> None:
    value = {"b": [{"y": 1, "x": 2}], "a": (1, {"d": None, "c": b"z"})}
    out = canonical(value)
    assert list(out) == ["a", "b"]
    assert list(out["b"][0]) == ["x", "y"] and list(out["a"][1]) == ["c", "d"]
    assert list(canonical({2: "n", "s": 1})) == [2, "s"]  # keys that do not sort: as they were


def test_a_keyed_call_s_arguments_encode_the_same_in_any_order() -> None:
    def payload(args: dict[str, object], key: str | None) -> bytes:
        msg = ipc.decode(call_frames(1, "s", "t", args, 1.0, 1 << 20, key))
        assert isinstance(msg, ipc.CallRequest) and msg.key == key
        return msg.payload

    one, two = {"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"d": 2, "c": 1}, "a": 1}
    assert payload(one, "k") == payload(two, "k")
    assert payload(one, None) != payload(two, None)  # unkeyed: encoded as given


@pytest.mark.parametrize("key", ["", "x" * 513, 5])
def test_a_bad_key_is_refused_before_anything_is_sent(key: object) -> None:
    with pytest.raises(InvalidArguments, match="idempotency key"):
        check_key(key)  # type: ignore[arg-type]


def test_key_and_traceparent_reach_the_daemon() -> None:
    with FakeDaemon() as daemon:
        daemon.tool("s", "t", lambda args: "ok")
        with Client(daemon.run_dir) as zs:
            zs.call("s", "t", key="k-1", traceparent=TRACEPARENT)
            zs.call("s", "t")

        async def go() -> None:
            async with AsyncClient(daemon.run_dir) as az:
                await az.call_detailed("s", "t", key="k-2")

        asyncio.run(go())
        got = [(m.key, m.traceparent) for m in daemon.received if isinstance(m, ipc.CallRequest)]
    assert got == [("k-1", TRACEPARENT), (None, None), ("k-2", None)]


def test_the_current_span_is_the_trace_context() -> None:
    pytest.importorskip("opentelemetry.sdk.trace", reason="needs the otel extra")
    from opentelemetry.sdk.trace import TracerProvider

    assert current_traceparent() is None  # no span
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("caller") as span:
        ctx = span.get_span_context()
        expected = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        assert current_traceparent() == expected
        with FakeDaemon() as daemon:
            daemon.tool("s", "t", lambda args: "ok")
            with Client(daemon.run_dir) as zs:
                zs.call("s", "t")
                zs.call("s", "t", traceparent=TRACEPARENT)  # given wins
            sent = [m for m in daemon.received if isinstance(m, ipc.CallRequest)]
    assert [m.traceparent for m in sent] == [expected, TRACEPARENT]
