"""The SDK holds a call's arguments to the input schema's types (strict), or
converts them leniently when the tool opts in (``coerce=True``, said in its
schema); a tool's return type gives its output schema."""

from __future__ import annotations

import datetime
import enum
from typing import Any

import pytest
from pydantic import BaseModel

import ipc
from ipc import COERCE_KEY, RESULT_WRAPPED, InvalidArguments
from skills._tool import Tool


class Color(enum.Enum):
    RED = "red"


def f(n: int, x: float = 0.0, when: datetime.date | None = None, c: Color = Color.RED) -> float:
    return x


def args(tool: Tool, raw: Any) -> dict[str, Any]:
    return tool.arguments(ipc.encode_payload(raw))


@pytest.mark.parametrize("bad", ["3", True, 3.5, None, [3]])
def test_an_integer_is_an_integer(bad: Any) -> None:
    with pytest.raises(InvalidArguments) as caught:
        args(Tool(f), {"n": bad})
    assert "argument 'n'" in caught.value.message
    assert caught.value.details["arguments"] == ["n"]


def test_what_json_spells_as_a_string_is_still_read() -> None:
    got = args(Tool(f), {"n": 3, "x": 2, "when": "2026-01-02", "c": "red"})
    assert got == {"n": 3, "x": 2.0, "when": datetime.date(2026, 1, 2), "c": Color.RED}


def test_bytes_cross_as_base64_and_as_bytes() -> None:
    def blob(data: bytes) -> int:
        return len(data)

    tool = Tool(blob)
    assert args(tool, {"data": b"\xff\x00"}) == {"data": b"\xff\x00"}
    assert args(tool, {"data": "/wA="}) == {"data": b"\xff\x00"}


def test_coerce_is_an_opt_in_said_in_the_schema() -> None:
    strict, lenient = Tool(f), Tool(f, coerce=True)
    assert COERCE_KEY not in strict.input_schema
    assert lenient.input_schema[COERCE_KEY] is True
    assert args(lenient, {"n": "3"})["n"] == 3


class Point(BaseModel):
    x: int


def test_output_schema_from_the_return_type() -> None:
    def obj() -> Point:
        return Point(x=1)

    def num() -> float:
        return 1.0

    def many() -> list[Point]:
        return []

    def text() -> str:
        return ""

    def nothing() -> None:
        return None

    def untyped():  # type: ignore[no-untyped-def]
        return 1

    assert Tool(obj).output_schema == Point.model_json_schema(mode="serialization")
    assert Tool(num).output_schema == {
        "type": "object",
        "properties": {"result": {"type": "number"}},
        "required": ["result"],
        "additionalProperties": False,
        RESULT_WRAPPED: True,
    }
    wrapped = Tool(many).output_schema
    assert wrapped is not None and "$defs" in wrapped  # hoisted: refs still resolve
    assert wrapped["properties"]["result"]["items"] == {"$ref": "#/$defs/Point"}
    assert Tool(text).output_schema is None
    assert Tool(nothing).output_schema is None
    assert Tool(untyped).output_schema is None
    assert Tool(num).spec().output_schema == Tool(num).output_schema


def test_a_tool_spec_with_an_output_schema_crosses_the_wire() -> None:
    def num() -> float:
        return 1.0

    hello = ipc.Hello(1, "s", "1", "i", 1, 1, [Tool(num).spec(), Tool(f).spec()], False, "")
    back = ipc.decode(ipc.encode(hello))
    assert isinstance(back, ipc.Hello)
    assert back.tools[0].output_schema == Tool(num).output_schema
    assert back.tools[1].output_schema == Tool(f).output_schema
    assert len(Tool(f).spec().to_wire()) == 5


def test_zskill_tools_shows_the_result_type() -> None:
    from orchestrator.cli.tools import tools_text

    def num(n: int) -> float:
        return 1.0

    def obj() -> Point:
        return Point(x=1)

    def text() -> str:
        return ""

    specs = [
        {"name": t.name, "input_schema": t.input_schema, "output_schema": t.output_schema}
        for t in (Tool(num), Tool(obj), Tool(text))
    ]
    lines = tools_text({"s": specs}, {})
    assert lines[1].split() == ["num", "(no", "description)"]
    assert lines[2].split()[:3] == ["n", "integer", "required"]
    assert lines[3].strip() == "-> number"
    assert lines[5].strip() == "-> Point"
    assert lines[-1].split()[0] == "text"  # a str result: no type line
