"""The breaking-change gate's comparison of two versions' tools."""

from __future__ import annotations

from typing import Any

from ipc import ToolSpec
from orchestrator._daemon.schema_diff import accepted_types, diff_tools


def tool(name: str, props: dict[str, Any], required: list[str], desc: str = "") -> ToolSpec:
    schema = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    return ToolSpec(name, desc, schema)


ADD = tool("add", {"a": {"type": "integer"}, "b": {"type": "integer"}}, ["a", "b"])


def test_the_issue_s_add_numbers_change_is_breaking() -> None:
    new = tool("add", {"numbers": {"type": "array", "items": {"type": "integer"}}}, ["numbers"])
    d = diff_tools({"add": ADD}, {"add": new})
    assert d.changed == ["add"] and d.added == d.removed == []
    assert d.breaking == [
        "add: argument 'a' was removed",
        "add: argument 'b' was removed",
        "add: new required argument 'numbers'",
    ]


def test_a_rename_is_named_as_one() -> None:
    new = tool("add", {"a": {"type": "integer"}, "c": {"type": "integer"}}, ["a"])
    d = diff_tools({"add": ADD}, {"add": new})
    assert d.breaking == ["add: argument 'b' was removed (renamed to 'c'?)"]


def test_removed_tool_and_now_required_are_breaking() -> None:
    opt = tool("say", {"text": {"type": "string"}, "n": {"type": "integer"}}, ["text"])
    req = tool("say", {"text": {"type": "string"}, "n": {"type": "integer"}}, ["text", "n"])
    d = diff_tools({"add": ADD, "say": opt}, {"say": req})
    assert d.removed == ["add"]
    assert d.breaking == ["tool 'add' was removed", "say: argument 'n' is now required"]


def test_additions_and_widenings_pass() -> None:
    wider = tool(
        "add",
        {
            "a": {"type": "number"},
            "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "c": {"type": "string", "default": ""},
        },
        ["a"],
        desc="now documented",
    )
    new_tool = tool("sub", {}, [])
    d = diff_tools({"add": ADD}, {"add": wider, "sub": new_tool})
    assert d.added == ["sub"] and d.changed == ["add"] and d.breaking == []
    assert d.any


def test_narrowed_types_and_enums_are_breaking() -> None:
    old = tool(
        "f",
        {
            "x": {"type": "number"},
            "y": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "mode": {"enum": ["a", "b", "c"]},
        },
        [],
    )
    new = tool(
        "f",
        {"x": {"type": "integer"}, "y": {"type": "string"}, "mode": {"enum": ["a", "b"]}},
        [],
    )
    assert diff_tools({"f": old}, {"f": new}).breaking == [
        "f: argument 'x': no longer accepts number",
        "f: argument 'y': no longer accepts null",
        "f: argument 'mode': no longer accepts ['c']",
    ]


def test_an_argument_dropped_where_extras_are_accepted_is_not_breaking() -> None:
    old = ToolSpec("f", "", {"type": "object", "properties": {"x": {}}})
    new = ToolSpec("f", "", {"type": "object", "properties": {}})
    assert diff_tools({"f": old}, {"f": new}).breaking == []


def test_unchanged_tools_are_not_listed() -> None:
    d = diff_tools({"add": ADD}, {"add": ADD})
    assert not d.any and d.to_dict() == {"added": [], "removed": [], "changed": [], "breaking": []}


def test_accepted_types() -> None:
    assert accepted_types({"type": ["string", "null"]}) == {"string", "null"}
    assert accepted_types({"type": "number"}) == {"number", "integer"}
    assert accepted_types({"const": 3}) == {"integer"}
    assert "object" in accepted_types({})
