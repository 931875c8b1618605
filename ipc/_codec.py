"""msgpack codec: typed messages <-> ZeroMQ frames.

The only module that sees raw lists. Decoding checks every field's type, so
a malformed or hostile frame becomes a :class:`ProtocolError` with a message
that says what was wrong, never an exception from deep inside the daemon.

A payload (a call's arguments, a result) up to ``INLINE_PAYLOAD_MAX`` bytes
travels as the header array's last element, so the whole message is one
frame; a larger one travels as a second frame, which nobody copies. Each
frame costs a send and a receive at every hop, a few microseconds of a call
that takes a few hundred; a copy of a few kilobytes costs far less.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from ._errors import MessageTooLarge, PayloadError, ProtocolError, ZskillError
from ._messages import MESSAGE_TYPES, Kind, Message, ToolSpec, WireError

_Check = Callable[[Any], Any]

INLINE_PAYLOAD_MAX = 32 * 1024
"""Payloads up to this many bytes ride in the header frame."""


def _int(v: Any) -> int:
    if type(v) is not int:
        raise TypeError("an integer")
    return v


def _float(v: Any) -> float:
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    raise TypeError("a number")


def _str(v: Any) -> str:
    if type(v) is not str:
        raise TypeError("a string")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise TypeError("a boolean")
    return v


def _dict(v: Any) -> dict[str, Any]:
    if type(v) is not dict:
        raise TypeError("a map")
    return v


def _opt_float(v: Any) -> float | None:
    return None if v is None else _float(v)


def _opt_str(v: Any) -> str | None:
    if v is None or type(v) is str:
        return v
    raise TypeError("nil or a string")


def _any(v: Any) -> Any:
    return v


def _wire_error(v: Any) -> WireError | None:
    if v is None:
        return None
    if type(v) is not list or len(v) != 3:
        raise TypeError("nil or an error [type, message, details]")
    return WireError(_str(v[0]), _str(v[1]), _dict(v[2]))


def _tools(v: Any) -> list[ToolSpec]:
    if type(v) is not list:
        raise TypeError("a list of tools")
    out = []
    for item in v:
        if type(item) is not list or len(item) not in (4, 5):
            raise TypeError(
                "a list of tools [name, description, schema, idempotent, output schema?]"
            )
        output = _dict(item[4]) if len(item) == 5 else None
        out.append(ToolSpec(_str(item[0]), _str(item[1]), _dict(item[2]), _bool(item[3]), output))
    return out


_CHECKS: dict[str, _Check] = {
    "int": _int,
    "float": _float,
    "str": _str,
    "str | None": _opt_str,
    "float | None": _opt_float,
    "bool": _bool,
    "dict[str, Any]": _dict,
    "Any": _any,
    "WireError | None": _wire_error,
    "list[ToolSpec]": _tools,
}


class _Spec:
    """What the codec knows of one message class, computed once."""

    __slots__ = (
        "checks",
        "cls",
        "defaults",
        "fast_required",
        "fast_types",
        "get",
        "has_payload",
        "kind",
        "names",
        "required",
        "wire_idx",
    )

    def __init__(self, cls: type[Message]) -> None:
        fields = [f for f in dataclasses.fields(cls) if f.name != "payload"]
        self.cls = cls
        self.names = tuple(f.name for f in fields)
        self.checks = tuple(_CHECKS[str(f.type)] for f in fields)
        self.required = sum(
            1
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        self.has_payload = cls.HAS_PAYLOAD
        # What an optional field is when absent: left off the end on encode.
        self.defaults = tuple(f.default for f in fields[self.required :])
        self.kind = int(cls.KIND)
        self.get = operator.attrgetter(*self.names) if self.names else (lambda m: ())
        # The hot path (Call, Result, CallRequest, CallReply): a message whose
        # fields are plain scalars or maps -- or an absent error, key... --
        # decodes with one exact-type comparison per field, and encodes
        # converting only the error, when there is one. Optional fields left
        # off the end (see encode) compare with ``fast_required``.
        simple = {
            "int": int,
            "float": float,
            "str": str,
            "bool": bool,
            "dict[str, Any]": dict,
            "WireError | None": type(None),
            "str | None": type(None),
        }
        types = [simple.get(str(f.type)) for f in fields]
        self.fast_types: tuple[type, ...] | None = (
            tuple(t for t in types if t is not None) if all(types) else None
        )
        self.fast_required = (
            self.fast_types[: self.required] if self.fast_types is not None else None
        )
        self.wire_idx = tuple(
            i for i, f in enumerate(fields) if str(f.type) in ("WireError | None", "list[ToolSpec]")
        )


_SPECS: dict[int, _Spec] = {int(cls.KIND): _Spec(cls) for cls in MESSAGE_TYPES}
_SPECS_BY_CLASS: dict[type[Message], _Spec] = {s.cls: s for s in _SPECS.values()}


_local = threading.local()


def _packb(value: Any) -> bytes:
    # A Packer is not thread-safe, and making one per call (msgpack.packb)
    # costs as much as the packing: keep one per thread.
    try:
        pack = _local.pack
    except AttributeError:
        pack = _local.pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
    return pack(value)  # type: ignore[no-any-return]


def _to_wire(value: Any) -> Any:
    if isinstance(value, (WireError, ToolSpec)):
        return value.to_wire()
    if type(value) is list and value and isinstance(value[0], ToolSpec):
        return [t.to_wire() for t in value]
    return value


def encode(msg: Message) -> list[bytes]:
    """Frames for ``msg``: the header, then the payload if the kind has one."""
    spec = _SPECS_BY_CLASS[type(msg)]
    got = spec.get(msg)
    values: list[Any] = [spec.kind, got] if len(spec.names) == 1 else [spec.kind, *got]
    for i in spec.wire_idx:
        values[i + 1] = _to_wire(values[i + 1])
    # Optional fields at their default (absent) at the end are left off, so
    # a call without a key, a trace context or progress is the bytes it
    # always was.
    required = spec.required + 1
    while len(values) > required and values[-1] == spec.defaults[len(values) - required - 1]:
        values.pop()
    if spec.has_payload:
        payload: bytes = msg.payload  # type: ignore[attr-defined]
        if len(payload) > INLINE_PAYLOAD_MAX:
            return [_packb(values), payload]
        values.append(payload)
    return [_packb(values)]


class Dropped(bytes):
    """Stands, empty, for the frames of a message past the most a zskill
    message has (see ``ipc.recv_frames``): they were freed uncopied, and
    only their number and size are left."""

    frames: int
    nbytes: int

    def __new__(cls, frames: int, nbytes: int) -> Dropped:
        self = super().__new__(cls)
        self.frames, self.nbytes = frames, nbytes
        return self


def call_bytes(tool: str, payload_size: int, *tail: str | bool | None) -> int:
    """The most bytes a Call of ``tool`` with a payload of ``payload_size``
    bytes takes on the wire, whatever its call id and timeout: what a daemon
    compares with the skill's limit before it forwards a call, so that a
    call it accepts is one the skill can read. ``tail``: the Call's optional
    fields after ``timeout_s`` (key, traceparent), as they will be sent."""
    fields = list(tail)
    while fields and fields[-1] is None:  # left off, as encode does
        fields.pop()
    header = len(_packb([int(Kind.CALL), 2**64 - 1, tool, 0.0, *fields]))
    if payload_size > INLINE_PAYLOAD_MAX:
        return header + payload_size
    bin_header = 2 if payload_size < 2**8 else 3 if payload_size < 2**16 else 5
    return header + bin_header + payload_size


def decode(frames: Sequence[bytes], *, max_bytes: int | None = None) -> Message:
    """Parse frames into a message, or raise ProtocolError / MessageTooLarge."""
    if frames and type(frames[-1]) is Dropped:
        kept = frames[:-1]
        dropped = frames[-1]
        total = len(kept) + dropped.frames
        raise MessageTooLarge(
            f"message of {total} frames ({sum(map(len, kept)) + dropped.nbytes} bytes) "
            "exceeds the limit of 2 frames",
            frames=total,
            limit=2,
        )
    if not frames or len(frames) > 2:
        raise ProtocolError(f"expected 1 or 2 frames, got {len(frames)}")
    if max_bytes is not None:
        size = sum(map(len, frames))
        if size > max_bytes:
            raise MessageTooLarge(f"message of {size} bytes exceeds the limit of {max_bytes}")
    try:
        raw = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"header is not valid msgpack: {exc}") from None
    if type(raw) is not list or not raw or type(raw[0]) is not int:
        raise ProtocolError("header must be a list starting with an integer kind")
    spec = _SPECS.get(raw[0])
    if spec is None:
        raise ProtocolError(f"unknown message kind {raw[0]}")
    values = raw[1:]
    payload = b""
    if spec.has_payload:
        if len(frames) == 2:
            payload = frames[1]
        elif not values or type(values[-1]) is not bytes:
            raise ProtocolError(
                f"{spec.cls.__name__} in one frame ends with its payload (binary) "
                f"after its {spec.required}..{len(spec.names)} fields"
            )
        else:
            payload = values.pop()
    elif len(frames) == 2:
        raise ProtocolError(f"{spec.cls.__name__} takes no payload frame")
    if not spec.required <= len(values) <= len(spec.names):
        raise ProtocolError(
            f"{spec.cls.__name__} takes {spec.required}..{len(spec.names)} fields, "
            f"got {len(values)}"
        )
    types = tuple(map(type, values))
    fast = types == spec.fast_types or types == spec.fast_required
    args = values if fast else _checked(spec, values)
    if spec.has_payload:
        return spec.cls(*args, payload=payload)  # type: ignore[call-arg]
    return spec.cls(*args)


def decode_header(frames: Sequence[bytes]) -> Message | None:
    """What a message that cannot be read whole (too large, too many frames)
    was, from its header frame alone, to answer it: the payload frame left
    out, so a payload-carrying message comes back with an empty payload
    (one inside the header frame is bounded by MAXMSGSIZE). None when even
    the header does not decode."""
    if not frames:
        return None
    try:
        return decode([frames[0], b""] if len(frames) >= 2 else [frames[0]])
    except ZskillError:
        return None


def _checked(spec: _Spec, values: list[Any]) -> list[Any]:
    args = []
    for name, check, value in zip(spec.names, spec.checks, values, strict=False):
        try:
            args.append(check(value))
        except TypeError as exc:
            raise ProtocolError(f"{spec.cls.__name__}.{name} must be {exc}") from None
    return args


# --- payloads: arguments and results ------------------------------------------


def encode_payload(value: Any) -> bytes:
    """msgpack bytes of a call's arguments or result, or PayloadError naming
    the type that msgpack cannot carry."""
    try:
        return _packb(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"value cannot be encoded as msgpack: {exc}") from None


def decode_payload(data: bytes) -> Any:
    if not data:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise PayloadError(f"payload is not valid msgpack: {exc}") from None
