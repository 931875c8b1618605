"""JSON Schema of a tool's arguments, built from type hints and docstrings."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel, Field

from skills._docstring import parse_docstring
from skills._tool import Tool


def schema_of(fn: Any) -> dict[str, Any]:
    schema = Tool(fn).input_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def prop(fn: Any, name: str) -> dict[str, Any]:
    schema = schema_of(fn)
    assert schema["type"] == "object"
    return schema["properties"][name]  # type: ignore[no-any-return]


class Point(BaseModel):
    x: int
    y: int = 0


def test_scalars_map_to_json_types() -> None:
    def f(s: str, i: int, x: float, b: bool) -> None: ...

    schema = schema_of(f)
    assert {n: p["type"] for n, p in schema["properties"].items()} == {
        "s": "string",
        "i": "integer",
        "x": "number",
        "b": "boolean",
    }
    assert schema["required"] == ["s", "i", "x", "b"]
    assert schema["additionalProperties"] is False
    assert schema["title"] == "f"


def test_containers() -> None:
    def f(tags: list[str], counts: dict[str, int]) -> None: ...

    assert prop(f, "tags") == {"type": "array", "items": {"type": "string"}, "title": "Tags"}
    counts = prop(f, "counts")
    assert counts["type"] == "object"
    assert counts["additionalProperties"] == {"type": "integer"}


def test_optional_literal_and_defaults() -> None:
    def f(
        mode: Literal["fast", "slow"],
        limit: Optional[int] = None,  # noqa: UP045 - the old spelling must work too
        label: str | None = "x",
        times: int = 1,
    ) -> None: ...

    schema = schema_of(f)
    assert schema["required"] == ["mode"]
    assert prop(f, "mode")["enum"] == ["fast", "slow"]
    limit = prop(f, "limit")
    assert {"type": "integer"} in limit["anyOf"] and {"type": "null"} in limit["anyOf"]
    assert limit["default"] is None
    assert prop(f, "label")["default"] == "x"
    assert prop(f, "times") == {"default": 1, "title": "Times", "type": "integer"}


def test_pydantic_model_argument() -> None:
    def f(p: Point) -> None: ...

    schema = schema_of(f)
    assert schema["properties"]["p"] == {"$ref": "#/$defs/Point"}
    assert schema["$defs"]["Point"]["required"] == ["x"]
    jsonschema.validate({"p": {"x": 1}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"p": {"y": 1}}, schema)


def test_missing_hint_means_any() -> None:
    def f(thing, n: int = 2):  # type: ignore[no-untyped-def]
        return thing

    assert "type" not in prop(f, "thing")
    assert schema_of(f)["required"] == ["thing"]


def test_no_arguments() -> None:
    def f() -> None: ...

    schema = schema_of(f)
    assert schema["properties"] == {}
    assert "required" not in schema


def test_awkward_parameter_names_keep_their_names() -> None:
    # Names that are BaseModel attributes or pydantic-private must still work.
    def f(json: str, model_config: int, _id: int = 0) -> None: ...

    schema = schema_of(f)
    assert list(schema["properties"]) == ["json", "model_config", "_id"]
    tool = Tool(f)
    import ipc

    args = tool.arguments(ipc.encode_payload({"json": "j", "model_config": 3, "_id": 4}))
    assert args == {"json": "j", "model_config": 3, "_id": 4}


def test_string_annotations_are_resolved() -> None:
    # This module uses ``from __future__ import annotations``: every hint is a string.
    def f(p: Point, n: int) -> None: ...

    assert prop(f, "n")["type"] == "integer"


def test_annotated_field_constraints_reach_the_schema() -> None:
    def f(n: Annotated[int, Field(ge=1, le=10)]) -> None: ...

    assert prop(f, "n")["minimum"] == 1
    assert prop(f, "n")["maximum"] == 10


def test_description_is_the_first_paragraph() -> None:
    def f(text: str) -> str:
        """Repeat text,
        many times.

        More detail that is not part of the summary.
        """
        return text

    assert Tool(f).description == "Repeat text, many times."
    assert Tool(f, description="Explicit.").description == "Explicit."


def test_no_docstring_no_description() -> None:
    def f() -> None:
        pass

    assert Tool(f).description == ""


def test_google_args_section_describes_arguments() -> None:
    def f(text: str, times: int = 1, *, sep: str = " ") -> str:
        """Repeat text.

        Args:
            text: what to repeat.
            times (int): how many times; the description
                goes on here.
            sep: the separator.

        Returns:
            The text, repeated.
        """
        return sep.join([text] * times)

    assert Tool(f).description == "Repeat text."
    assert prop(f, "text")["description"] == "what to repeat."
    assert prop(f, "times")["description"] == "how many times; the description goes on here."
    assert prop(f, "sep")["description"] == "the separator."


def test_docstring_parser_edge_cases() -> None:
    def only_args() -> None:
        """Args:
        a: first.
        """

    assert parse_docstring(only_args).summary == ""

    def summary_only() -> None:
        """Just this."""

    doc = parse_docstring(summary_only)
    assert doc.summary == "Just this." and doc.arguments == {}


def test_tool_spec_carries_name_description_schema_idempotent() -> None:
    def ping() -> str:
        """Answer pong."""
        return "pong"

    spec = Tool(ping, idempotent=True, name="ping2").spec()
    assert (spec.name, spec.description, spec.idempotent) == ("ping2", "Answer pong.", True)
    assert spec.input_schema["title"] == "ping2"


def test_async_handlers_are_detected() -> None:
    async def a() -> None: ...

    def s() -> None: ...

    assert Tool(a).is_async and not Tool(s).is_async


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda *args: None, r"\*args is not supported"),
        (lambda **kw: None, r"\*\*kw is not supported"),
        (lambda a, /: None, "positional-only parameter 'a'"),
    ],
)
def test_variadic_and_positional_only_handlers_are_rejected(fn: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        Tool(fn, name="t")


def test_unresolvable_hint_is_rejected_at_decoration() -> None:
    def f(x: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(TypeError, match="cannot resolve the type hints"):
        Tool(f)


class Opaque:
    """No pydantic schema for this."""


def test_type_without_a_json_schema_is_rejected() -> None:
    def f(x: Opaque) -> None: ...

    with pytest.raises(TypeError, match="cannot build a JSON Schema"):
        Tool(f)


def test_bad_tool_names_and_generators_are_rejected() -> None:
    def f() -> None: ...

    with pytest.raises(ValueError, match="tool name"):
        Tool(f, name="has space")

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generators"):
        Tool(gen)


def test_partial_handler() -> None:
    def f(a: int, b: str) -> str:
        return b * a

    tool = Tool(functools.partial(f, 2), name="twice")
    assert list(tool.input_schema["properties"]) == ["b"]
