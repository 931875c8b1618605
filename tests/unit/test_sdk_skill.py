"""The author's API: Skill, its decorators, and argument validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

import ipc
import skills
from ipc import InvalidArguments, PayloadError
from skills import Skill
from skills._env import RuntimeEnv
from skills._tool import Tool

ECHO = Path(__file__).resolve().parents[2] / "skills" / "examples" / "echo"


def test_public_api() -> None:
    assert set(skills.__all__) == {
        "Skill",
        "ZskillError",
        "InvalidArguments",
        "Context",
        "Cancelled",
    }
    assert skills.ZskillError is ipc.ZskillError
    assert skills.InvalidArguments is ipc.InvalidArguments
    assert "skill.run()" in (skills.__doc__ or "")


def test_decorated_functions_stay_directly_callable() -> None:
    skill = Skill("echo", version="1.0.0")

    @skill.tool()
    def say(text: str, times: int = 1) -> str:
        """Repeat text."""
        return " ".join([text] * times)

    @skill.tool
    def bare() -> str:
        return "bare"

    @skill.health
    def healthy() -> bool:
        return True

    assert say("hi", times=2) == "hi hi"
    assert bare() == "bare"
    assert healthy() is True
    assert set(skill._tools) == {"say", "bare"}
    assert "say" in repr(skill)


def test_tool_options() -> None:
    skill = Skill("s")

    @skill.tool(name="other", description="Described.", idempotent=True)
    def f() -> None: ...

    spec = skill._tools["other"].spec()
    assert (spec.name, spec.description, spec.idempotent) == ("other", "Described.", True)


def test_duplicate_tool_and_second_health_hook_are_errors() -> None:
    skill = Skill("s")

    @skill.tool()
    def f() -> None: ...

    with pytest.raises(ValueError, match="already has a tool named 'f'"):
        skill.tool(name="f")(lambda: None)

    skill.health(lambda: True)
    with pytest.raises(ValueError, match="already has a health hook"):
        skill.health(lambda: True)


def test_health_hook_takes_no_arguments() -> None:
    skill = Skill("s")
    with pytest.raises(TypeError, match="without arguments"):
        skill.health(lambda x: True)  # type: ignore[type-var]


def test_skill_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Skill("")
    with pytest.raises(ValueError, match="concurrency"):
        Skill("s", concurrency=0)
    with pytest.raises(TypeError, match="version"):
        Skill("s", version=1)  # type: ignore[arg-type]


def test_varargs_handler_rejected_at_decoration() -> None:
    skill = Skill("s")
    with pytest.raises(TypeError, match=r"\*args is not supported"):

        @skill.tool()
        def f(*args: int) -> None: ...


def test_hello_describes_the_skill() -> None:
    skill = Skill("echo", version="1.2.3", concurrency=3)

    @skill.tool(idempotent=True)
    def ping() -> str:
        return "pong"

    env = RuntimeEnv.from_environ({ipc.ENV_ENDPOINT: "ipc:///tmp/x", ipc.ENV_SECRET: "s"})
    assert env is not None
    hello = skill._hello(env)
    assert (hello.skill, hello.version, hello.secret) == ("echo", "1.2.3", "s")
    assert hello.protocol == ipc.PROTOCOL_VERSION
    assert [t.name for t in hello.tools] == ["ping"] and hello.tools[0].idempotent
    assert hello.has_health is False
    # Hello must survive the codec.
    assert ipc.decode(ipc.encode(hello)) == hello


# --- arguments ---------------------------------------------------------------


class Point(BaseModel):
    x: int
    y: int = 0


def tool_of(fn: Any) -> Tool:
    return Tool(fn)


def args(tool: Tool, value: Any) -> dict[str, Any]:
    return tool.arguments(ipc.encode_payload(value))


def test_valid_arguments_become_keyword_arguments() -> None:
    def f(text: str, times: int = 1, p: Point | None = None) -> None: ...

    tool = tool_of(f)
    assert args(tool, {"text": "a"}) == {"text": "a", "times": 1, "p": None}
    got = args(tool, {"text": "a", "times": 3, "p": {"x": 1}})
    assert got["times"] == 3 and got["p"] == Point(x=1, y=0)


def test_empty_payload_means_no_arguments() -> None:
    def f(times: int = 1) -> None: ...

    assert tool_of(f).arguments(b"") == {"times": 1}


def invalid(tool: Tool, value: Any) -> str:
    with pytest.raises(InvalidArguments) as info:
        args(tool, value)
    return info.value.message


def test_wrong_type_names_argument_and_problem() -> None:
    def say(text: str, times: int = 1) -> None: ...

    message = invalid(tool_of(say), {"text": "a", "times": "many"})
    assert message.startswith("say: argument 'times': ")
    assert "valid integer" in message and "'many'" in message


def test_missing_and_unknown_arguments() -> None:
    def say(text: str) -> None: ...

    assert invalid(tool_of(say), {}) == "say: missing required argument 'text'"
    assert "unknown argument 'loud'" in invalid(tool_of(say), {"text": "a", "loud": True})

    def none() -> None: ...

    assert "unknown argument 'x'" in invalid(tool_of(none), {"x": 1})


def test_nested_errors_show_the_path() -> None:
    def f(p: Point) -> None: ...

    assert "argument 'p.x'" in invalid(tool_of(f), {"p": {"x": "no"}})


def test_literal_violation() -> None:
    def f(mode: Literal["fast", "slow"]) -> None: ...

    assert "argument 'mode'" in invalid(tool_of(f), {"mode": "medium"})


def test_arguments_must_be_a_map() -> None:
    def f(a: int = 0) -> None: ...

    assert "must be a map" in invalid(tool_of(f), [1, 2])


def test_many_errors_are_summarised() -> None:
    def f(a: int, b: int, c: int, d: int, e: int, g: int, h: int) -> None: ...

    message = invalid(tool_of(f), {})
    assert message.count("missing required argument") == 5 and "and 2 more" in message


def test_undecodable_payload_is_a_payload_error() -> None:
    def f() -> None: ...

    with pytest.raises(PayloadError):
        tool_of(f).arguments(b"\xc1")


def test_run_outside_the_daemon_explains_and_exits_2() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ECHO.parents[2])}
    proc = subprocess.run(
        [sys.executable, "main.py"], cwd=ECHO, env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "run it under the daemon" in proc.stderr and "zskill up" in proc.stderr
