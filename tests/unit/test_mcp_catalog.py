"""The MCP bridge's pure parts: tool names, the catalog, result and error mapping."""

from __future__ import annotations

import re

import pytest

from ipc import (
    CallTimeout,
    DaemonUnavailable,
    InvalidArguments,
    OutcomeUnknown,
    RemoteError,
    SkillUnavailable,
)
from orchestrator._mcp.catalog import (
    NAME_MAX,
    Catalog,
    object_schema,
    tool_name,
)
from orchestrator._mcp.meta import CALL_TOOL, LIST_TOOLS, META_TOOLS
from orchestrator._mcp.results import describe, value_result

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_plain_names() -> None:
    assert tool_name("echo", "say") == "echo__say"
    assert tool_name("my-skill", "do_it") == "my-skill__do_it"


@pytest.mark.parametrize(
    ("skill", "tool"),
    [
        ("a_", "_b"),  # would read as a____b, like ("a", "__b")
        ("a", "__b"),
        ("a__b", "c"),  # would read as a__b__c, like ("a", "b__c")
        ("a", "b__c"),
        ("echo", "say hi"),
        ("echo", "naïve"),
        ("echo", "x" * 80),
        ("s" * 40, "t" * 40),
        ("echo", "a.b"),
    ],
)
def test_odd_names_are_valid_and_unique(skill: str, tool: str) -> None:
    name = tool_name(skill, tool)
    assert VALID.match(name), name
    assert len(name) <= NAME_MAX
    assert "__" in name  # never a meta tool's name
    assert tool_name(skill, tool) == name  # stable


def test_no_two_pairs_share_a_name() -> None:
    pairs = [
        ("a_", "_b"),
        ("a", "__b"),
        ("a__b", "c"),
        ("a", "b__c"),
        ("a", "b"),
        ("echo", "say hi"),
        ("echo", "say_hi"),
        ("echo", "say-hi"),
        ("s" * 40, "t" * 40),
        ("s" * 40, "t" * 41),
    ]
    names = [tool_name(s, t) for s, t in pairs]
    assert len(set(names)) == len(names), names


def test_meta_tools_have_names_no_skill_tool_can_take() -> None:
    assert [t.name for t in META_TOOLS] == [LIST_TOOLS, CALL_TOOL]
    assert all("__" not in t.name for t in META_TOOLS)


def _wire(**tools: dict[str, object]) -> dict[str, object]:
    return {
        skill: [
            {"name": n, "description": f"{n}.", "input_schema": s, "idempotent": False}
            for n, s in spec.items()
        ]
        for skill, spec in tools.items()
    }


def test_catalog_from_wire_sorted_and_typed() -> None:
    body = _wire(
        slow={"sleep": {"type": "object", "properties": {"seconds": {"type": "number"}}}},
        echo={"say": {"properties": {"text": {"type": "string"}}}},
    )
    cat = Catalog.from_wire(body)
    assert [e.name for e in cat.entries] == ["echo__say", "slow__sleep"]
    say = cat.get("echo__say")
    assert say is not None and say.skill == "echo" and say.tool == "say"
    assert say.input_schema["type"] == "object"  # filled in when a schema lacks it
    assert cat.skills == ["echo", "slow"]
    mcp_tool = say.to_mcp()
    assert mcp_tool.name == "echo__say" and mcp_tool.description == "say."


def test_catalog_skips_what_is_malformed() -> None:
    body = {"echo": [{"name": "say"}, "junk", {"description": "no name"}], "bad": "junk"}
    assert [e.name for e in Catalog.from_wire(body).entries] == ["echo__say"]


def test_catalog_equality_sees_schema_changes() -> None:
    v1 = Catalog.from_wire(_wire(echo={"say": {"type": "object", "properties": {}}}))
    same = Catalog.from_wire(_wire(echo={"say": {"type": "object", "properties": {}}}))
    v2 = Catalog.from_wire(
        _wire(echo={"say": {"type": "object", "properties": {"sep": {"type": "string"}}}})
    )
    assert v1 == same
    assert v1 != v2
    assert v1 != Catalog()


def test_object_schema() -> None:
    assert object_schema(None) == {"type": "object"}
    assert object_schema({"properties": {}}) == {"properties": {}, "type": "object"}


def test_value_results() -> None:
    r = value_result("hi", version="1.0.0")
    assert not r.is_error and r.structured_content is None
    assert r.content[0].model_dump()["text"] == "hi"
    assert r.meta == {"zskill/version": "1.0.0"}

    r = value_result({"a": 1})
    assert r.structured_content == {"a": 1}
    assert r.content[0].model_dump()["text"] == '{"a": 1}'

    assert value_result([1, 2]).structured_content == {"result": [1, 2]}
    assert value_result(None).structured_content == {"result": None}
    assert value_result({1: b"raw"}).structured_content == {"1": "raw"}
    assert value_result(b"\xff").structured_content == {"result": "/w=="}


def test_errors_say_what_happened() -> None:
    remote = RemoteError("boom", remote_type="ValueError")
    assert describe("echo", "fail", remote) == "echo.fail raised ValueError: boom"
    assert "invalid arguments" in describe("echo", "say", InvalidArguments("times: not an int"))
    assert "timed out" in describe("slow", "sleep", CallTimeout("no result within 1 s"))
    assert "may or may not" in describe("slow", "sleep", OutcomeUnknown("call 4 lost"))
    assert "not available" in describe("echo", "say", SkillUnavailable("echo is stopped"))
    assert "reconnects" in describe("echo", "say", DaemonUnavailable("no daemon"))
