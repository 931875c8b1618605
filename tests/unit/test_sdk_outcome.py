"""A call's outcome on the wire: results, remote errors, unencodable values."""

from __future__ import annotations

from pydantic import BaseModel

import ipc
from ipc import InvalidArguments, Result, ZskillError
from skills._outcome import error_frames, failure_frames, remote_type, success_frames, wire_error

LIMIT = 1 << 20


def decoded(frames: list[bytes]) -> Result:
    msg = ipc.decode(frames)
    assert isinstance(msg, Result)
    return msg


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a real traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_success_carries_the_encoded_value() -> None:
    result = decoded(success_frames(7, "t", {"a": [1, 2]}, LIMIT))
    assert result.call_id == 7 and result.error is None
    assert ipc.decode_payload(result.payload) == {"a": [1, 2]}


def test_none_result_is_nil() -> None:
    result = decoded(success_frames(1, "noop", None, LIMIT))
    assert result.error is None and ipc.decode_payload(result.payload) is None


def test_pydantic_model_result_is_dumped() -> None:
    class P(BaseModel):
        x: int

    result = decoded(success_frames(1, "t", P(x=3), LIMIT))
    assert ipc.decode_payload(result.payload) == {"x": 3}


def test_unencodable_result_is_a_payload_error_naming_the_type() -> None:
    result = decoded(success_frames(3, "unencodable", {1, 2}, LIMIT))
    assert result.error is not None and result.error.type == "PayloadError"
    assert "'unencodable'" in result.error.message and "set" in result.error.message
    assert result.payload == b""
    nested = decoded(success_frames(3, "t", {"k": object()}, LIMIT))
    assert nested.error is not None and "object" in nested.error.message


def test_result_over_the_limit_is_message_too_large() -> None:
    result = decoded(success_frames(4, "big", "x" * 2000, 1000))
    assert result.error is not None and result.error.type == "MessageTooLarge"
    assert "1000" in result.error.message


def test_plain_exception_becomes_remote_error() -> None:
    def handler() -> None:
        raise ValueError("boom")

    try:
        handler()
    except ValueError as exc:
        error = wire_error(exc)
    assert error.type == "RemoteError" and error.message == "boom"
    assert error.details["remote_type"] == "ValueError"
    assert "handler" in error.details["traceback"]
    assert "ValueError: boom" in error.details["traceback"]
    rebuilt = ipc.error_from_wire(error)
    assert isinstance(rebuilt, ipc.RemoteError) and rebuilt.remote_type == "ValueError"


def test_empty_message_falls_back_to_the_type_name() -> None:
    assert wire_error(raised(KeyError())).message == "KeyError"


def test_non_builtin_types_are_module_qualified() -> None:
    class Custom(Exception):
        pass

    name = remote_type(Custom())
    assert name.endswith("test_non_builtin_types_are_module_qualified.<locals>.Custom")
    assert name.startswith(__name__)


def test_zskill_errors_cross_as_their_own_type() -> None:
    error = wire_error(raised(InvalidArguments("bad 'x'", tool="t")))
    assert error == ipc.WireError("InvalidArguments", "bad 'x'", {"tool": "t"})


def test_author_subclass_crosses_as_nearest_known_type() -> None:
    class MyInvalid(InvalidArguments):
        pass

    assert wire_error(raised(MyInvalid("nope"))).type == "InvalidArguments"

    class MyRoot(ZskillError):
        pass

    assert wire_error(raised(MyRoot("r"))).type == "ZskillError"


def test_huge_messages_and_details_are_truncated() -> None:
    error = wire_error(raised(ValueError("m" * 100_000)))
    assert len(error.message) <= 4_000
    frames = error_frames(1, ipc.WireError("InvalidArguments", "x", {"blob": "y" * 200_000}))
    assert len(frames[0]) < 65_536
    assert decoded(frames).error == ipc.WireError("InvalidArguments", "x", {"truncated": True})


def test_failure_frames_survive_a_broken_str() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    result = decoded(failure_frames(9, raised(Nasty())))
    assert result.error is not None and result.error.type == "RemoteError"
    assert result.error.message == "Nasty"


def test_system_exit_in_a_handler_is_just_an_error() -> None:
    result = decoded(failure_frames(2, raised(SystemExit(3))))
    assert result.error is not None and result.error.details["remote_type"] == "SystemExit"
