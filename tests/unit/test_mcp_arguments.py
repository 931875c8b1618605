"""The bridge's checks: a skill tool's arguments against its advertised
schema (as strict as the SDK), the meta tools' own arguments, and results
shaped by an output schema."""

from __future__ import annotations

from typing import Any

import pytest

from ipc import RESULT_WRAPPED
from orchestrator._mcp.arguments import ArgumentCheck
from orchestrator._mcp.catalog import Catalog
from orchestrator._mcp.meta import CALL_SCHEMA, LIST_SCHEMA, MetaError, list_skill, parse_call
from orchestrator._mcp.results import value_result
from skills._tool import Tool


def say(text: str, times: int = 1) -> str:
    return " ".join([text] * times)


SAY = ArgumentCheck(Tool(say).input_schema)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"text": "a", "times": "3"}, "argument 'times': must be of type integer (got '3')"),
        ({"text": "a", "times": True}, "argument 'times': must be of type integer (got True)"),
        ({"text": "a", "times": 3.0}, "argument 'times': must be of type integer (got 3.0)"),
        ({"times": 2}, "missing required argument 'text'"),
        ({"text": "a", "loud": True}, "unknown argument 'loud'"),
    ],
)
def test_the_bridge_refuses_what_the_schema_refuses(args: dict[str, Any], expected: str) -> None:
    assert SAY.problems(args) == [expected]


def test_the_bridge_and_the_sdk_agree() -> None:
    tool = Tool(say)
    import ipc

    for args in ({"text": "a", "times": "3"}, {"text": "a", "times": True}, {"text": "a"}):
        bridge_ok = not SAY.problems(args)
        try:
            tool.arguments(ipc.encode_payload(args))
            sdk_ok = True
        except ipc.InvalidArguments as exc:
            sdk_ok = False
            assert "times" in exc.message
        assert bridge_ok == sdk_ok, args


def test_meta_list_schema_is_enforced() -> None:
    assert list_skill({}) is None
    assert list_skill({"skill": None}) is None
    assert list_skill({"skill": "echo"}) == "echo"
    with pytest.raises(MetaError, match="unknown argument 'verbose'"):
        list_skill({"verbose": True})
    with pytest.raises(MetaError, match="'skill': must be of type string or null"):
        list_skill({"skill": 3})


def test_meta_call_takes_arguments_as_json_text() -> None:
    call = parse_call({"skill": "echo", "tool": "say", "arguments": '{"text": "hi"}'})
    assert (call.skill, call.tool, call.arguments) == ("echo", "say", {"text": "hi"})
    assert parse_call({"skill": "echo", "tool": "ping"}).arguments == {}
    assert parse_call({"skill": "echo", "tool": "ping", "arguments": " "}).arguments == {}
    with pytest.raises(MetaError, match="JSON text of an object"):
        parse_call({"skill": "echo", "tool": "say", "arguments": "[1]"})
    with pytest.raises(MetaError, match="JSON text of an object"):
        parse_call({"skill": "echo", "tool": "say", "arguments": "{nope"})
    with pytest.raises(MetaError, match="must be of type string"):
        parse_call({"skill": "echo", "tool": "say", "arguments": {"text": "hi"}})
    with pytest.raises(MetaError, match="unknown argument 'extra'"):
        parse_call({"skill": "echo", "tool": "say", "extra": 1})
    with pytest.raises(MetaError, match="missing required argument 'tool'"):
        parse_call({"skill": "echo"})


def test_meta_schemas_are_closed() -> None:
    for schema in (LIST_SCHEMA, CALL_SCHEMA):
        assert schema["additionalProperties"] is False
        assert all(p.get("type") != "object" for p in schema["properties"].values())


def test_results_follow_the_output_schema() -> None:
    wrapped = {"type": "object", "properties": {"result": {"type": "number"}}, RESULT_WRAPPED: True}
    r = value_result(0.5, output_schema=wrapped)
    assert r.structured_content == {"result": 0.5}
    assert r.content[0].model_dump()["text"] == "0.5"
    r = value_result("hi", output_schema={**wrapped, "properties": {"result": {}}})
    assert r.structured_content == {"result": "hi"}
    assert r.content[0].model_dump()["text"] == "hi"
    obj = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert value_result({"a": 1}, output_schema=obj).structured_content == {"a": 1}
    # A value that cannot match an object schema goes as text only.
    assert value_result([1], output_schema=obj).structured_content is None


def test_catalog_carries_the_output_schema() -> None:
    out = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"s": [{"name": "t", "input_schema": {"type": "object"}, "output_schema": out}]}
    entry = Catalog.from_wire(body).entries[0]
    assert entry.output_schema == out
    assert entry.to_mcp().output_schema == out
    assert not entry.coerces
