"""`zskill mcp` driven as a subprocess by the MCP SDK's own client over stdio,
once per protocol generation: "legacy" negotiates with `initialize` and hears
`notifications/tools/list_changed`; "modern" discovers 2026-07-28 and opens a
`subscriptions/listen` stream for tools-changed events."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp.types as types
import psutil
import pytest
from helpers import Daemon, example, running_daemon, short_dir, variant, write_config
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.subscriptions import ToolsListChanged
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS

MODES = {"legacy": "legacy", "modern": "auto"}

LIST_TOOLS = "zskill_list_tools"
CALL_TOOL = "zskill_call"

# slow 2.0.0: a new tool, and `sleep` takes one more argument.
NAP = '''
@skill.tool()
def nap(ms: int = 10) -> dict[str, int]:
    """Sleep ms milliseconds, then say so."""
    time.sleep(ms / 1000)
    return {"slept_ms": ms}
'''
SLEEP_V2 = {
    "def sleep(seconds: float) -> float:": 'def sleep(seconds: float, label: str = "") -> float:'
}


class Changes:
    """Tool-list change notifications a host has received."""

    def __init__(self) -> None:
        self.count = 0

    def seen(self) -> None:
        self.count += 1

    async def wait_beyond(self, count: int, timeout: float = 15.0) -> None:
        with anyio.fail_after(timeout):
            while self.count <= count:
                await anyio.sleep(0.01)


async def wait_async(cond: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll ``cond`` (sync) until truthy, without blocking the event loop for long."""
    with anyio.fail_after(timeout):
        while True:
            value = cond()
            if value:
                return value
            await anyio.sleep(0.02)


def serving_pid(d: Daemon, skill: str) -> int | None:
    """The pid of the skill's process that has a call in flight, if one has."""
    busy = [i["pid"] for i in d.status(skill)["instances"] if i["in_flight"] >= 1]
    return busy[0] if busy else None


def bridge_pids(d: Daemon) -> set[int]:
    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            if "mcp" in cmd and str(d.config) in cmd:
                found.add(child.pid)
    return found


def stop_pids(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            p.kill()
            p.wait(5)


@contextlib.asynccontextmanager
async def mcp_host(d: Daemon, mode: str) -> AsyncIterator[tuple[Client, Changes]]:
    """The SDK's client on `zskill mcp --config <d.config>`, in ``mode``; the
    bridge process is killed by pid on the way out if it is still there."""
    changes = Changes()

    async def on_message(message: Any) -> None:
        if mode == "legacy" and isinstance(message, types.ToolListChangedNotification):
            changes.seen()

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator", "mcp", "--config", str(d.config)],
        cwd=str(d.root),
        # The SDK passes only a few variables by default: keep PYTHONPATH, so
        # the bridge runs the code under test.
        env=dict(os.environ),
    )
    pids: set[int] = set()
    with open(d.root / "mcp.err", "a") as errlog:
        try:
            async with Client(
                stdio_client(params, errlog=errlog),
                mode=MODES[mode],
                read_timeout_seconds=30,
                message_handler=on_message,
            ) as host:
                pids |= bridge_pids(d)
                if mode == "legacy":
                    yield host, changes
                    return
                listen = host.listen(tools_list_changed=True)
                async with anyio.create_task_group() as tg, listen as sub:

                    async def consume() -> None:
                        async for event in sub:
                            if isinstance(event, ToolsListChanged):
                                changes.seen()

                    tg.start_soon(consume)
                    yield host, changes
                    tg.cancel_scope.cancel()
        finally:
            pids |= bridge_pids(d)
            stop_pids(pids)


async def tool_map(host: Client) -> dict[str, types.Tool]:
    return {t.name: t for t in (await host.list_tools()).tools}


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", list(MODES))
def test_tools_follow_upgrades_and_stops(mode: str) -> None:
    with running_daemon({"echo": example("echo"), "slow": example("slow")}) as d:
        d.wait_running("echo", "slow")
        v2 = variant(d.root, "slow-v2", base="slow", extra=NAP, replace=SLEEP_V2)
        anyio.run(_follow_upgrades_and_stops, d, v2, mode)


async def _follow_upgrades_and_stops(d: Daemon, v2: Path, mode: str) -> None:
    zs = d.client()
    async with mcp_host(d, mode) as (host, changes):
        # The generation the host speaks, and the change notices it was promised.
        if mode == "legacy":
            assert host.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        else:
            assert host.protocol_version == "2026-07-28"
        assert host.server_capabilities.tools is not None
        assert host.server_capabilities.tools.list_changed

        # List: every skill's tools, descriptions and schemas, plus the meta tools.
        tools = await tool_map(host)
        assert {"echo__say", "echo__ping", "slow__sleep", LIST_TOOLS, CALL_TOOL} <= set(tools)
        assert "slow__nap" not in tools
        assert tools["echo__say"].description and "Repeat text" in tools["echo__say"].description
        assert set(tools["echo__say"].input_schema["properties"]) == {"text", "times"}
        assert set(tools["slow__sleep"].input_schema["properties"]) == {"seconds"}

        # Call: a str result is text; anything else JSON text and structured content.
        said = await host.call_tool("echo__say", {"text": "hi", "times": 2})
        assert not said.is_error and text(said) == "hi hi"
        slept = await host.call_tool("slow__sleep", {"seconds": 0.01})
        assert not slept.is_error and slept.structured_content == {"result": 0.01}

        # Upgrade slow while a call to it is in flight through the bridge.
        seen = changes.count
        inflight: dict[str, types.CallToolResult] = {}
        async with anyio.create_task_group() as tg:

            async def long_call() -> None:
                inflight["r"] = await host.call_tool("slow__sleep", {"seconds": 1.5})

            tg.start_soon(long_call)
            await wait_async(lambda: d.status("slow")["in_flight"] >= 1, what="sleep in flight")
            report = await anyio.to_thread.run_sync(zs.upgrade, "slow", v2)
            assert report["new_version"] == "2.0.0"
            await changes.wait_beyond(seen)
        r = inflight["r"]
        assert not r.is_error, text(r)
        assert r.structured_content == {"result": 1.5}
        assert r.meta is not None and r.meta["zskill/version"] == "1.0.0"

        # A host that never re-lists: the meta tools show and reach the new tool,
        # and so does its stable name.
        listed = await host.call_tool(LIST_TOOLS, {"skill": "slow"})
        assert not listed.is_error
        assert isinstance(listed.structured_content, dict)
        by_name = {t["name"]: t for t in listed.structured_content["tools"]}
        assert by_name["slow__nap"]["tool"] == "nap"
        assert "label" in by_name["slow__sleep"]["input_schema"]["properties"]
        napped = await host.call_tool(
            CALL_TOOL, {"skill": "slow", "tool": "nap", "arguments": '{"ms": 5}'}
        )
        assert not napped.is_error and napped.structured_content == {"slept_ms": 5}
        assert napped.meta is not None and napped.meta["zskill/version"] == "2.0.0"
        direct = await host.call_tool("slow__nap", {"ms": 1})
        assert not direct.is_error and direct.structured_content == {"slept_ms": 1}

        # A host that re-lists sees the new tool and the changed schema.
        tools = await tool_map(host)
        assert "slow__nap" in tools
        assert set(tools["slow__sleep"].input_schema["properties"]) == {"seconds", "label"}
        relabeled = await host.call_tool("slow__sleep", {"seconds": 0.01, "label": "x"})
        assert not relabeled.is_error, text(relabeled)

        # Stop a skill: its tools leave the list; its names answer a clear error.
        seen = changes.count
        await anyio.to_thread.run_sync(zs.stop, "echo")
        await changes.wait_beyond(seen)
        tools = await tool_map(host)
        assert not [n for n in tools if n.startswith("echo__")]
        assert "slow__nap" in tools
        gone = await host.call_tool("echo__say", {"text": "hi"})
        assert gone.is_error and "not available" in text(gone)


@pytest.mark.timeout(60)
def test_failures_are_tool_errors() -> None:
    daemon = {"call_timeout_s": 2.5}
    with running_daemon({"echo": example("echo"), "slow": example("slow")}, daemon) as d:
        d.wait_running("echo", "slow")
        anyio.run(_failures_are_tool_errors, d)


async def _failures_are_tool_errors(d: Daemon) -> None:
    async with mcp_host(d, "legacy") as (host, _):
        raised = await host.call_tool("echo__fail", {"message": "boom"})
        assert raised.is_error and text(raised) == "echo.fail raised ValueError: boom"

        bad = await host.call_tool("echo__say", {"times": "x"})
        assert bad.is_error and "invalid arguments" in text(bad) and "text" in text(bad)

        unknown = await host.call_tool("nope__nothing", {})
        assert unknown.is_error and LIST_TOOLS in text(unknown)

        no_skill = await host.call_tool(CALL_TOOL, {"skill": "ghost", "tool": "x"})
        assert no_skill.is_error and "ghost" in text(no_skill)

        # The skill's process dies mid-call: outcome unknown, never silence.
        async with anyio.create_task_group() as tg:
            died: dict[str, types.CallToolResult] = {}

            async def doomed() -> None:
                died["r"] = await host.call_tool("slow__sleep", {"seconds": 2})

            tg.start_soon(doomed)
            busy = await wait_async(lambda: serving_pid(d, "slow"), what="sleep in flight")
            os.kill(busy, signal.SIGKILL)
        assert died["r"].is_error and "outcome unknown" in text(died["r"])

        d.wait_running("slow")
        timed_out = await host.call_tool("slow__sleep", {"seconds": 5})
        assert timed_out.is_error and "timed out" in text(timed_out)


@pytest.mark.timeout(90)
def test_survives_a_daemon_restart() -> None:
    with running_daemon({"echo": example("echo")}) as d:
        d.wait_running("echo")
        anyio.run(_survives_a_daemon_restart, d)


async def _survives_a_daemon_restart(d: Daemon) -> None:
    async with mcp_host(d, "legacy") as (host, changes):
        assert "echo__say" in await tool_map(host)
        await anyio.to_thread.run_sync(d.stop)

        down = await host.call_tool("echo__say", {"text": "hi"})
        assert down.is_error and "daemon is restarting" in text(down)

        # The daemon comes back with one more skill: the bridge must notice.
        seen = changes.count
        write_config(d.config, {"echo": example("echo"), "slow": example("slow")})
        await anyio.to_thread.run_sync(d.start)
        await anyio.to_thread.run_sync(d.wait_running, "echo", "slow")

        async def answers() -> bool:
            r = await host.call_tool("echo__say", {"text": "back"})
            return not r.is_error and text(r) == "back"

        with anyio.fail_after(20):
            while not await answers():
                await anyio.sleep(0.1)
        # The list was refreshed on its own, and the host was told.
        await changes.wait_beyond(seen)
        assert {"echo__say", "slow__sleep"} <= set(await tool_map(host))


def test_fails_fast_without_a_daemon() -> None:
    root = short_dir()
    try:
        write_config(root / "zskill.toml", {"echo": example("echo")})
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", "mcp", "--config", str(root / "zskill.toml")],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 3, done.stderr
    # One line a desktop host can show, saying how to fix it.
    assert "no zskill daemon is running" in done.stderr
    assert "--start" in done.stderr and "zskill up" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""
