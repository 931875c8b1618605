"""The Bridge's decisions against a scripted client (no daemon, no stdio):
arguments checked against a list that may predate an upgrade, and the last
catalog held through a daemon restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from ipc import DaemonUnavailable
from orchestrator._client.common import CallResult
from orchestrator._mcp.bridge import Bridge


def _sleep(*names: str) -> dict[str, Any]:
    props = {n: {"type": "number" if n == "seconds" else "string"} for n in names}
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    return {"name": "sleep", "description": "", "input_schema": schema, "idempotent": False}


class Scripted:
    """What the bridge asks of an AsyncClient, answered from attributes."""

    def __init__(self) -> None:
        self.tools_body: dict[str, Any] = {"slow": [_sleep("seconds")]}
        self.states: dict[str, str] = {"slow": "running"}
        self.pid = 100
        self.down = False
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def _up(self) -> None:
        if self.down:
            raise DaemonUnavailable("no zskill daemon is running")

    async def tools(self, skill: str | None = None) -> dict[str, Any]:
        self._up()
        return self.tools_body

    async def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        self._up()
        return {"pid": self.pid}

    async def list(self) -> list[dict[str, Any]]:
        self._up()
        return [{"name": n, "state": s} for n, s in self.states.items()]

    async def call_detailed(
        self, skill: str, tool: str, args: Mapping[str, Any], **kw: Any
    ) -> CallResult:
        self._up()
        self.calls.append((skill, tool, dict(args)))
        return CallResult(value=1.0, version="2.0.0", elapsed_s=0.0)


def _bridge(client: Scripted) -> Bridge:
    return Bridge(client, call_timeout_s=5.0, daemon_pid=client.pid)  # type: ignore[arg-type]


def test_a_new_argument_is_not_refused_by_a_list_from_before_the_upgrade() -> None:
    async def run() -> None:
        client = Scripted()
        bridge = _bridge(client)
        await bridge.refresh()
        client.tools_body = {"slow": [_sleep("seconds", "label")]}  # upgraded, not refreshed
        r = await bridge.forward("slow", "sleep", {"seconds": 1, "label": "x"})
        assert not r.is_error, r.content
        assert client.calls == [("slow", "sleep", {"seconds": 1, "label": "x"})]
        bad = await bridge.forward("slow", "sleep", {"seconds": "1"})
        assert bad.is_error and "argument 'seconds'" in bad.content[0].text  # type: ignore[union-attr]
        assert len(client.calls) == 1  # refused before anything was sent

    anyio.run(run)


def test_the_catalog_is_held_through_a_restart() -> None:
    async def run() -> None:
        client = Scripted()
        bridge = _bridge(client)
        await bridge.refresh()
        listed = bridge.catalog
        assert [e.name for e in listed.entries] == ["slow__sleep"]

        # daemon.stop: the old daemon, still answering, reports its skill gone.
        bridge._stopping = True
        client.tools_body = {}
        assert await bridge.refresh() is False
        assert bridge.catalog == listed
        r = await bridge.forward("slow", "sleep", {"seconds": 1})
        assert r.is_error and "daemon is restarting" in r.content[0].text  # type: ignore[union-attr]

        # Gone, then a new daemon whose skill is still starting: still held.
        client.down = True
        await bridge.refresh_quietly()
        assert bridge.catalog == listed
        client.down, client.pid, client.states = False, 200, {"slow": "starting"}
        assert await bridge.refresh() is False
        assert bridge.catalog == listed

        # It serves again: the same list, no change to tell the host of.
        client.tools_body, client.states = {"slow": [_sleep("seconds")]}, {"slow": "running"}
        assert await bridge.refresh() is False
        # Held no longer: a skill that stops now leaves the list.
        client.tools_body, client.states = {}, {"slow": "stopped"}
        assert await bridge.refresh() is True
        assert bridge.catalog.entries == ()

    anyio.run(run)
