"""A call's outcome as the frames of its Result.

Everything here runs in the worker that ran the handler, never in the I/O
loop: encoding a big result or formatting a traceback must not delay the
heartbeats or the other calls.

How a handler's outcome crosses the wire:

    returned value        -> Result(call_id, None) + msgpack payload
    value msgpack refuses -> PayloadError naming the type it could not encode
    value over the limit  -> MessageTooLarge (the daemon would drop the link)
    raised ZskillError    -> that error (InvalidArguments stays InvalidArguments)
    raised anything else  -> RemoteError(message, remote_type, traceback)
"""

from __future__ import annotations

import builtins
import os
import traceback
from types import TracebackType
from typing import Any

from pydantic import BaseModel

import ipc
from ipc import MessageTooLarge, PayloadError, Result, WireError, ZskillError

_MAX_MESSAGE_CHARS = 4_000
_MAX_TRACEBACK_CHARS = 10_000
# The daemon allows 64 KiB over the payload limit for the header; an error
# header must stay well inside it (4 bytes a character at worst).
_MAX_ERROR_HEADER_BYTES = 60_000
_SDK_DIR = os.path.dirname(os.path.abspath(__file__))


def success_frames(call_id: int, tool: str, value: Any, max_bytes: int) -> list[bytes]:
    """Frames of a Result carrying ``value``, or of the error it turns into."""
    if isinstance(value, BaseModel):
        # Models are accepted as arguments; returning one is just as natural.
        value = value.model_dump(mode="json")
    try:
        payload = ipc.encode_payload(value)
    except PayloadError as exc:
        return error_frames(
            call_id,
            PayloadError(
                f"the result of {tool!r} ({type(value).__name__}) cannot cross the wire: "
                f"{exc.message}",
                tool=tool,
            ).to_wire(),
        )
    frames = ipc.encode(Result(call_id, None, payload))
    # The whole message is what the daemon measures, header and all.
    size = sum(map(len, frames))
    if size > max_bytes:
        return error_frames(
            call_id,
            MessageTooLarge(
                f"the result of {tool!r} is {size} bytes, over the limit of {max_bytes} bytes",
                tool=tool,
                size=size,
                limit=max_bytes,
            ).to_wire(),
        )
    return frames


def error_frames(call_id: int, error: WireError) -> list[bytes]:
    frames = ipc.encode(Result(call_id, error))
    if len(frames[0]) > _MAX_ERROR_HEADER_BYTES:
        # Oversized details from the author's own ZskillError: keep the type
        # and the start of the message, drop what would break the link.
        short = WireError(error.type, error.message[:_MAX_MESSAGE_CHARS], {"truncated": True})
        frames = ipc.encode(Result(call_id, short))
    return frames


def failure_frames(call_id: int, exc: BaseException) -> list[bytes]:
    """Frames of a Result for what a handler raised; never raises itself."""
    try:
        return error_frames(call_id, wire_error(exc))
    except Exception:  # an author's __str__ or details that blow up
        fallback = WireError("RemoteError", type(exc).__name__, {"remote_type": remote_type(exc)})
        return ipc.encode(Result(call_id, fallback))


def wire_error(exc: BaseException) -> WireError:
    """The wire form of what a handler raised."""
    if isinstance(exc, ZskillError):
        error = exc.to_wire()
        # A subclass the author defined is unknown to the caller's
        # error_from_wire: name the nearest class of ipc's tree instead.
        error.type = _nearest_ipc_class(type(exc)).__name__
        return error
    message = str(exc) or type(exc).__name__
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3] + "..."
    return WireError(
        "RemoteError",
        message,
        {"remote_type": remote_type(exc), "traceback": _traceback_text(exc)},
    )


def remote_type(exc: BaseException) -> str:
    """``ValueError`` for builtins, ``module.Qual.Name`` for the rest."""
    cls = type(exc)
    if cls.__module__ == builtins.__name__:
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _nearest_ipc_class(cls: type[ZskillError]) -> type[ZskillError]:
    for base in cls.__mro__:
        if base.__module__ == ZskillError.__module__ and issubclass(base, ZskillError):
            return base
    return ZskillError


def _traceback_text(exc: BaseException) -> str:
    tb: TracebackType | None = exc.__traceback__
    # The SDK's own frames (the worker that called the handler) only add noise.
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _SDK_DIR:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if len(text) > _MAX_TRACEBACK_CHARS:
        # The end of a traceback (the raising frame) is the part worth keeping.
        text = "...\n" + text[-(_MAX_TRACEBACK_CHARS - 4) :]
    return text
