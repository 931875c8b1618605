"""`zskill mcp` as third-party hosts use it: pydantic-ai's MCPToolset (a
FastMCP client underneath, tool list cached by default) and the OpenAI Agents
SDK (strict schemas), plus what every host relies on: the tool list through a
daemon restart, strict argument types, output schemas, and ``--start``.

pydantic-ai and the Agents SDK are test dependencies (the ``hosts`` extra,
installed by scripts/test); without them those tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jsonschema
import mcp.types as types
import psutil
import pytest
from helpers import Daemon, example, running_daemon, short_dir, variant, write_config
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from test_mcp import NAP, SLEEP_V2, bridge_pids, mcp_host, stop_pids, text, tool_map

LIST_TOOLS = "zskill_list_tools"
CALL_TOOL = "zskill_call"


def bridge_argv(d: Daemon, *extra: str) -> list[str]:
    return ["-m", "orchestrator", "mcp", "--config", str(d.config), *extra]


# --- pydantic-ai -------------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("protocol", "cache_tools"),
    [("legacy", True), ("auto", False)],
    ids=["protocol-legacy-cached", "auto-uncached"],
)
def test_pydantic_ai_sees_a_tool_added_by_an_upgrade(protocol: str, cache_tools: bool) -> None:
    """The two settings README gives for pydantic-ai: `--protocol legacy` (its
    default tool cache is cleared by the change notice) or cache_tools=False.
    One session, kept open across the upgrade: no host restart."""
    pytest.importorskip("pydantic_ai", reason="pydantic-ai-slim[mcp] (the hosts extra)")
    with running_daemon({"slow": example("slow")}) as d:
        d.wait_running("slow")
        v2 = variant(d.root, "slow-v2", base="slow", extra=NAP, replace=SLEEP_V2)
        anyio.run(_pydantic_ai_upgrade, d, v2, protocol, cache_tools)


async def _pydantic_ai_upgrade(d: Daemon, v2: Path, protocol: str, cache_tools: bool) -> None:
    from fastmcp.client.transports import StdioTransport
    from pydantic_ai import Agent
    from pydantic_ai.mcp import MCPToolset
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart, ToolReturnPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    seen: list[set[str]] = []

    def model(messages: list[Any], info: AgentInfo) -> ModelResponse:
        # Calls slow__nap once it is among the tools it was given, and says
        # what the tool returned.
        names = {t.name for t in info.function_tools}
        seen.append(names)
        returned = [p for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if returned:
            return ModelResponse(parts=[TextPart(f"napped: {returned[0].content}")])
        if "slow__nap" in names:
            return ModelResponse(parts=[ToolCallPart("slow__nap", {"ms": 1})])
        return ModelResponse(parts=[TextPart("no nap")])

    transport = StdioTransport(
        command=sys.executable,
        args=bridge_argv(d, "--protocol", protocol),
        env=dict(os.environ),
        cwd=str(d.root),
    )
    # A loaded machine can take more than the default 5 s to start the bridge.
    toolset = MCPToolset(transport, cache_tools=cache_tools, init_timeout=30)
    agent = Agent(FunctionModel(model), toolsets=[toolset])
    pids: set[int] = set()
    try:
        async with toolset:  # one session for every run below
            pids = bridge_pids(d)
            assert len(pids) == 1
            first = await agent.run("nap")
            assert first.output == "no nap"
            assert {"slow__sleep", LIST_TOOLS, CALL_TOOL} <= seen[-1]

            zs = d.client()
            report = await anyio.to_thread.run_sync(zs.upgrade, "slow", v2)
            assert report["new_version"] == "2.0.0"

            with anyio.fail_after(20):
                while (result := await agent.run("nap")).output == "no nap":
                    await anyio.sleep(0.1)
            assert result.output == "napped: {'slept_ms': 1}"
            assert bridge_pids(d) == pids  # the same bridge, the same session
    finally:
        stop_pids(pids | bridge_pids(d))


# --- the OpenAI Agents SDK: strict schemas -------------------------------------------


@pytest.mark.timeout(60)
def test_every_schema_passes_strict_conversion() -> None:
    """The Agents SDK's own MCP conversion with convert_schemas_to_strict:
    every tool, meta tools included, comes out strict; the strict form of
    zskill_list_tools still lists every skill (skill: null)."""
    pytest.importorskip("agents", reason="openai-agents (the hosts extra)")
    skills = {"echo": example("echo"), "slow": example("slow"), "clock": example("clock")}
    with running_daemon(skills) as d:
        d.wait_running(*skills)
        anyio.run(_strict_schemas, d)


async def _strict_schemas(d: Daemon) -> None:
    from agents.mcp import MCPServerStdio, MCPUtil

    server = MCPServerStdio(
        params={
            "command": sys.executable,
            "args": bridge_argv(d),
            "env": dict(os.environ),
            "cwd": str(d.root),
        },
        cache_tools_list=False,
    )
    pids: set[int] = set()
    try:
        async with server:
            pids = bridge_pids(d)
            tools = await server.list_tools()
            names = {t.name for t in tools}
            assert {LIST_TOOLS, CALL_TOOL, "echo__say", "slow__sleep", "clock__now"} <= names
            strict: dict[str, dict[str, Any]] = {}
            for tool in tools:
                converted = MCPUtil.to_function_tool(tool, server, convert_schemas_to_strict=True)
                assert converted.strict_json_schema, f"{tool.name} is not strict"
                strict[tool.name] = converted.params_json_schema

            # Strict mode makes `skill` required; null still lists every skill.
            skill = strict[LIST_TOOLS]["properties"]["skill"]
            assert strict[LIST_TOOLS]["required"] == ["skill"]
            jsonschema.validate({"skill": None}, strict[LIST_TOOLS])
            listed = await server.call_tool(LIST_TOOLS, {"skill": None})
            assert not listed.is_error, skill
            assert isinstance(listed.structured_content, dict)
            every = {t["skill"] for t in listed.structured_content["tools"]}
            assert every == {"echo", "slow", "clock"}

            # zskill_call in its strict form: every property required, arguments as text.
            assert set(strict[CALL_TOOL]["required"]) == {"skill", "tool", "arguments"}
            said = await server.call_tool(
                CALL_TOOL, {"skill": "echo", "tool": "say", "arguments": '{"text": "hi"}'}
            )
            assert not said.is_error and said.content[0].text == "hi"  # type: ignore[union-attr]
    finally:
        stop_pids(pids | bridge_pids(d))


@pytest.mark.timeout(60)
def test_agents_sdk_with_a_tools_cache_hears_the_change() -> None:
    """README's setting for the Agents SDK with cache_tools_list=True: the
    bridge with --protocol legacy (the SDK's client would otherwise open a
    2026-07-28 session and never listen) and a message_handler that
    invalidates the cache on the change notice."""
    pytest.importorskip("agents", reason="openai-agents (the hosts extra)")
    with running_daemon({"slow": example("slow")}) as d:
        d.wait_running("slow")
        v2 = variant(d.root, "slow-v2", base="slow", extra=NAP, replace=SLEEP_V2)
        anyio.run(_agents_cache, d, v2)


async def _agents_cache(d: Daemon, v2: Path) -> None:
    from agents.mcp import MCPServerStdio

    server: Any = None

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            server.invalidate_tools_cache()

    server = MCPServerStdio(
        params={
            "command": sys.executable,
            "args": bridge_argv(d, "--protocol", "legacy"),
            "env": dict(os.environ),
        },
        cache_tools_list=True,
        message_handler=on_message,
    )
    pids: set[int] = set()
    try:
        async with server:
            pids = bridge_pids(d)
            assert "slow__nap" not in {t.name for t in await server.list_tools()}
            zs = d.client()
            await anyio.to_thread.run_sync(zs.upgrade, "slow", v2)
            with anyio.fail_after(20):
                while "slow__nap" not in {t.name for t in await server.list_tools()}:
                    await anyio.sleep(0.05)
    finally:
        stop_pids(pids | bridge_pids(d))


# --- the meta tools, arguments and results, through the official client ----------------


@pytest.mark.timeout(60)
def test_schemas_are_enforced_and_results_typed() -> None:
    with running_daemon({"echo": example("echo"), "slow": example("slow")}) as d:
        d.wait_running("echo", "slow")
        anyio.run(_enforced, d)


async def _enforced(d: Daemon) -> None:
    async with mcp_host(d, "modern") as (host, _):
        # "3" and true for an integer: refused naming the argument, by the
        # bridge (a listed tool) and by the skill (the Python client).
        for bad in ("3", True):
            r = await host.call_tool("echo__say", {"text": "hi", "times": bad})
            assert r.is_error and "invalid arguments" in text(r), text(r)
            assert "argument 'times'" in text(r) and "integer" in text(r)
        r = await host.call_tool(
            CALL_TOOL, {"skill": "echo", "tool": "say", "arguments": '{"text": "a", "times": "3"}'}
        )
        assert r.is_error and "argument 'times'" in text(r)
        from orchestrator import InvalidArguments

        zs = d.client()
        with pytest.raises(InvalidArguments, match="argument 'times'"):
            await anyio.to_thread.run_sync(zs.call, "echo", "say", {"text": "a", "times": "3"})

        # The meta tools' schemas hold: no extra property, an unknown skill is an error.
        extra = await host.call_tool(LIST_TOOLS, {"skill": "echo", "verbose": True})
        assert extra.is_error and "unknown argument 'verbose'" in text(extra)
        ghost = await host.call_tool(LIST_TOOLS, {"skill": "ghost"})
        assert ghost.is_error and "'ghost'" in text(ghost) and "echo" in text(ghost)
        obj = await host.call_tool(CALL_TOOL, {"skill": "echo", "tool": "say", "arguments": {}})
        assert obj.is_error and "'arguments'" in text(obj)

        # outputSchema from the return type; structuredContent that matches it.
        tools = await tool_map(host)
        sleep = tools["slow__sleep"]
        assert sleep.output_schema is not None
        slept = await host.call_tool("slow__sleep", {"seconds": 0.01})
        assert not slept.is_error and slept.structured_content == {"result": 0.01}
        jsonschema.validate(slept.structured_content, sleep.output_schema)
        assert tools["echo__say"].output_schema is None  # a str result is text
        listed = (await anyio.to_thread.run_sync(zs.tools, "slow"))["slow"]
        assert {t["name"]: t["output_schema"] for t in listed}["sleep"] == sleep.output_schema


# --- a daemon restart --------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_daemon_restart_keeps_the_tools_listed() -> None:
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        anyio.run(_restart_keeps_the_list, d)


async def _restart_keeps_the_list(d: Daemon) -> None:
    async with mcp_host(d, "legacy") as (host, changes):
        before = set(await tool_map(host))
        assert "echo__say" in before
        seen = changes.count

        async def listed_and_answers() -> None:
            r = await host.call_tool("echo__say", {"text": "back"})
            if not r.is_error:
                assert text(r) == "back"
                return
            assert "daemon is restarting" in text(r) or "not available" in text(r), text(r)
            raise AssertionError("not yet")

        for how in ("graceful", "crash"):
            if how == "graceful":
                await anyio.to_thread.run_sync(d.stop)  # SIGTERM: the daemon's own shutdown
            else:
                assert d.proc is not None
                d.known_pids |= d.skill_pids()
                os.kill(d.proc.pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(d.proc.wait)
                d.stop()  # what the daemon left: its skills, by pid
            # Gone: the list stays, a call says the daemon is restarting.
            assert set(await tool_map(host)) == before
            down = await host.call_tool("echo__say", {"text": "hi"})
            assert down.is_error and "daemon is restarting" in text(down), text(down)

            await anyio.to_thread.run_sync(d.start)
            with anyio.fail_after(30):
                while True:
                    assert set(await tool_map(host)) == before  # never shrinks meanwhile
                    try:
                        await listed_and_answers()
                        break
                    except AssertionError:
                        await anyio.sleep(0.05)
        assert changes.count == seen  # the host was never told the list changed


# --- zskill mcp --start --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_start_launches_the_daemon() -> None:
    root = short_dir()
    config = root / "zskill.toml"
    write_config(config, {"echo": example("echo")})
    try:
        anyio.run(_start, root, config)
    finally:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "down", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=40,
        )
        assert done.returncode == 0, done.stderr
        shutil.rmtree(root, ignore_errors=True)


async def _start(root: Path, config: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator", "mcp", "--start", "--config", str(config)],
        cwd=str(root),
        env=dict(os.environ),
    )
    with open(root / "mcp.err", "w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=30) as host:
            names = {t.name for t in (await host.list_tools()).tools}
            if "echo__say" not in names:  # listed once echo serves

                async def has_echo() -> bool:
                    return "echo__say" in {t.name for t in (await host.list_tools()).tools}

                with anyio.fail_after(20):
                    while not await has_echo():
                        await anyio.sleep(0.1)
            said = await host.call_tool("echo__say", {"text": "up"})
            assert not said.is_error and text(said) == "up"
            pids = _bridges(config)
        errlog.seek(0)
        assert "started the zskill daemon" in errlog.read()
    stop_pids(pids | _bridges(config))


def _bridges(config: Path) -> set[int]:
    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if "mcp" in child.cmdline() and str(config) in child.cmdline():
                found.add(child.pid)
    return found
