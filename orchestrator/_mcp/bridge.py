"""``zskill mcp``: every running skill's tools served to MCP hosts over stdio.

    MCP host ──stdio── Bridge ──AsyncClient── zskilld ── skills
                        │  tools/list   -> the daemon's ``tools`` op (Catalog)
                        │  tools/call   -> ``call`` (results: _mcp_results)
                        └─ watch: the daemon's events -> refresh -> "tools changed"

One process serves one host connection, in the protocol generation the host
opens with (the SDK's dual-era loop decides on the first request):

- 2026-07-28 hosts open ``subscriptions/listen`` streams; a change is
  published on the SDK's subscription bus, which delivers it on every stream
  that asked for tool-list changes.
- older hosts negotiate with ``initialize``; ``listChanged`` is advertised and
  a change is sent as ``notifications/tools/list_changed`` on the connection.

When the list changes. The watcher refreshes the catalog on each event that
can change it (a deploy, a tools change, a skill ready, stopped, exited or
errored) and every few seconds besides, because a ZeroMQ subscription misses
what is published while it (re)connects, e.g. across a daemon restart. A
refresh that finds a different catalog notifies the host. ``tools/list``
refreshes too, so a listing is never staler than the daemon.

While the daemon is down the last catalog stays listed and calls answer a tool
error saying so; the client reconnects by itself, and the next refresh (within
``DOWN_POLL_S``) brings the list up to date.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import anyio
import mcp.types as types
from mcp.server import CacheHint, NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from ipc import ZskillError

from .._client.aio import AsyncClient
from .._config import Config
from .._status import EventKind
from .catalog import CALL_TOOL, LIST_TOOLS, META_TOOLS, Catalog, tool_name
from .results import error_result, failure, value_result

__all__ = ["Bridge", "serve"]

log = logging.getLogger("zskill.mcp")

Ctx = ServerRequestContext[Any, Any]

REFRESH_ON = frozenset(
    kind.value
    for kind in (
        EventKind.TOOLS_CHANGED,
        EventKind.DEPLOYED,
        EventKind.ROLLED_BACK,
        EventKind.READY,
        EventKind.STOPPED,
        EventKind.EXIT,
        EventKind.ERRORED,
        EventKind.DAEMON_START,
    )
)
"""Event types after which a skill's tools may differ."""

UP_POLL_S = 5.0
"""Refresh this often with no event, while the daemon answers."""

DOWN_POLL_S = 1.0
"""...and this often after a refresh failed (the daemon may be back any moment)."""


class Bridge:
    """The MCP server for one host connection, backed by one AsyncClient."""

    def __init__(self, client: AsyncClient, *, call_timeout_s: float, run_dir: str = "") -> None:
        self._client = client
        self._call_timeout_s = call_timeout_s
        self._catalog = Catalog()
        self._filled = False  # a catalog was ever fetched
        # Every name ever served: a host that cached its list keeps reaching a
        # tool whose skill was stopped (and gets the daemon's clear answer) or
        # restarted (and gets its result), without listing again.
        self._known: dict[str, tuple[str, str]] = {}
        self._lock = anyio.Lock()
        self._daemon_up = True
        self._bus = InMemorySubscriptionBus()
        self._legacy: ServerSession | None = None
        self.server: Server[Any] = Server(
            "zskill",
            version=_version(),
            instructions=_instructions(run_dir),
            # Listings must never be served from a host's cache: they change live.
            cache_hints={"tools/list": CacheHint(ttl_ms=0)},
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=ListenHandler(self._bus),
        )
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._initialized
        )

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def init_options(self) -> InitializationOptions:
        # What an `initialize` host is told; 2026-07-28 hosts learn theirs from
        # server/discover, where listChanged follows from serving listen.
        return self.server.create_initialization_options(NotificationOptions(tools_changed=True))

    # --- the catalog ----------------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch the skills' tools; tell the host when they changed. Raises
        ZskillError (DaemonUnavailable...) when the daemon cannot answer."""
        async with self._lock:
            try:
                fresh = Catalog.from_wire(await self._client.tools())
            except ZskillError:
                self._daemon_up = False
                raise
            if not self._daemon_up:
                log.warning("the zskill daemon answers again")
                self._daemon_up = True
            changed = fresh != self._catalog
            first, self._filled = not self._filled, True
            self._catalog = fresh
            for entry in fresh.entries:
                self._known[entry.name] = (entry.skill, entry.tool)
        if changed:
            if not first:
                log.info("tool list changed: %d tools of %s", len(fresh.entries), fresh.skills)
            await self._announce()
        return changed

    async def refresh_quietly(self) -> None:
        """As :meth:`refresh`; a daemon that cannot answer keeps the last list."""
        was_up = self._daemon_up
        try:
            await self.refresh()
        except ZskillError as exc:
            if was_up:
                log.warning("cannot refresh the tool list: %s", exc.message)

    async def _announce(self) -> None:
        await self._bus.publish(ToolsListChanged())
        session = self._legacy
        if session is not None:
            try:
                await session.send_tool_list_changed()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                log.debug("host connection closed; list change not sent")

    async def watch(self) -> None:
        """Refresh on the daemon's events and on a timer, until cancelled."""
        stream = await self._client.subscribe()
        try:
            while True:
                wait_s = UP_POLL_S if self._daemon_up else DOWN_POLL_S
                try:
                    event = await stream.next(timeout=wait_s)
                    if event is None or event.type in REFRESH_ON:
                        await self.refresh_quietly()
                except Exception:
                    # The host's session outlives any hiccup here: log, pause, go on.
                    log.exception("watching the daemon's events failed; retrying")
                    await anyio.sleep(DOWN_POLL_S)
        finally:
            stream.close()

    # --- MCP handlers -----------------------------------------------------------------

    async def _initialized(self, ctx: Ctx, params: types.NotificationParams) -> None:
        self._adopt(ctx)

    def _adopt(self, ctx: Ctx) -> None:
        """Keep the session of a host on an `initialize` protocol: list changes
        are sent to it as notifications on its connection."""
        if self._legacy is None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            self._legacy = ctx.session

    async def _list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        self._adopt(ctx)
        await self.refresh_quietly()
        tools = [*META_TOOLS, *(entry.to_mcp() for entry in self._catalog.entries)]
        return types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: Ctx, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        self._adopt(ctx)
        args: dict[str, Any] = params.arguments or {}
        if params.name == LIST_TOOLS:
            return await self._meta_list(args)
        if params.name == CALL_TOOL:
            return await self._meta_call(args)
        target = self._known.get(params.name)
        if target is None:
            await self.refresh_quietly()  # a tool added since the last refresh
            target = self._known.get(params.name)
        if target is None:
            return failure(
                f"no zskill tool is named {params.name!r}; {LIST_TOOLS} lists the tools "
                f"there are now, and {CALL_TOOL} calls one by skill and tool name"
            )
        return await self.forward(*target, args)

    async def forward(self, skill: str, tool: str, args: Mapping[str, Any]) -> types.CallToolResult:
        """Call ``skill.tool`` through the daemon; its outcome as an MCP result."""
        try:
            result = await self._client.call_detailed(
                skill, tool, args, timeout=self._call_timeout_s
            )
        except ZskillError as exc:
            return error_result(skill, tool, exc)
        return value_result(result.value, version=result.version)

    async def _meta_list(self, args: Mapping[str, Any]) -> types.CallToolResult:
        skill = args.get("skill")
        if skill is not None and not isinstance(skill, str):
            return failure(f"{LIST_TOOLS}: 'skill' must be a string")
        try:
            await self.refresh()
        except ZskillError as exc:
            return failure(f"{LIST_TOOLS}: cannot reach the zskill daemon: {exc.message}")
        listed = [entry.describe() for entry in self._catalog.of_skill(skill)]
        return value_result({"tools": listed})

    async def _meta_call(self, args: Mapping[str, Any]) -> types.CallToolResult:
        skill, tool, arguments = args.get("skill"), args.get("tool"), args.get("arguments")
        if not isinstance(skill, str) or not isinstance(tool, str):
            return failure(f"{CALL_TOOL} needs 'skill' and 'tool', both strings")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            return failure(f"{CALL_TOOL}: 'arguments' must be an object")
        self._known.setdefault(tool_name(skill, tool), (skill, tool))
        return await self.forward(skill, tool, arguments)


def _version() -> str:
    from .. import __version__

    return __version__


def _instructions(run_dir: str) -> str:
    where = f" on {run_dir}" if run_dir else ""
    return (
        f"The tools of the zskill skills running{where}, named <skill>__<tool> "
        "(e.g. echo__say). Skills are upgraded live: the list may change while you "
        f"work. If a tool seems missing, {LIST_TOOLS} lists the current tools and "
        f"{CALL_TOOL} calls any of them by skill and tool name."
    )


# --- the process ----------------------------------------------------------------------


def serve(config: Config) -> None:
    """Serve MCP on stdin/stdout until the host closes stdin.

    Fails fast (DaemonUnavailable) when no daemon runs for ``config``, before
    touching stdio: the host then shows our one line on stderr.
    """
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="zskill mcp: %(levelname)s %(message)s"
    )
    # The SDK logs each host disconnect and such at INFO; keep the host's log readable.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    anyio.run(_serve, config, backend="asyncio")  # zmq.asyncio needs asyncio


async def _serve(config: Config) -> None:
    client = AsyncClient(config, timeout=config.daemon.call_timeout_s)
    try:
        await client.ping()
        bridge = Bridge(
            client, call_timeout_s=config.daemon.call_timeout_s, run_dir=str(config.run_dir)
        )
        await bridge.refresh_quietly()
        log.info(
            "serving %d tools of %s from %s",
            len(bridge.catalog.entries),
            bridge.catalog.skills,
            config.run_dir,
        )
        async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as tg:
            tg.start_soon(bridge.watch)
            await bridge.server.run(read_stream, write_stream, bridge.init_options())
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
