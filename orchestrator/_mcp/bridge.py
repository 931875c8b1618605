"""``zskill mcp``: every running skill's tools served to MCP hosts over stdio.

    MCP host ──stdio── Bridge ──AsyncClient── zskilld ── skills
                        │  tools/list   -> the daemon's ``tools`` op (Catalog)
                        │  tools/call   -> ``call`` (results: _mcp_results; a host's
                        │     progressToken and notifications/cancelled: .relay)
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

Through a daemon restart the last catalog stays listed. From the daemon's
``daemon.stop`` event (a graceful ``down``), or its first unanswered refresh (a
crash), no refresh replaces the list until a daemon with another pid answers;
then each skill that is on its way back up (starting) keeps its last tools
until it serves, for at most ``HOLD_S``. Meanwhile calls answer a tool error
saying the daemon is restarting; the client reconnects by itself.

Arguments are checked against the schema the host was shown (``arguments``),
and a result gets structured content that matches the tool's output schema
(``results``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import anyio
import mcp.types as types
from mcp.server import CacheHint, NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

from ipc import ZskillError

from .._client.aio import AsyncClient
from .._status import EventKind, SkillState
from . import relay
from .arguments import ArgumentCheck
from .catalog import Catalog, ToolEntry, tool_name
from .meta import CALL_TOOL, LIST_TOOLS, META_TOOLS, MetaError, list_skill, parse_call
from .results import error_result, failure, restarting, value_result

__all__ = ["Bridge"]

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

HOLD_S = 30.0
"""After a daemon restart, how long a skill still starting keeps its last tools."""

COMING_UP = frozenset({SkillState.STARTING.value, SkillState.UPGRADING.value})
"""States of a skill that will serve again soon: its last tools stay listed."""


class Bridge:
    """The MCP server for one host connection, backed by one AsyncClient."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        call_timeout_s: float,
        run_dir: str = "",
        daemon_pid: int | None = None,
    ) -> None:
        self._client = client
        self._call_timeout_s = call_timeout_s
        self._catalog = Catalog()
        self._filled = False  # a catalog was ever fetched
        # Every name ever served: a host that cached its list keeps reaching a
        # tool whose skill was stopped (and gets the daemon's clear answer) or
        # restarted (and gets its result), without listing again.
        self._known: dict[str, tuple[str, str]] = {}
        self._checks: dict[str, tuple[dict[str, Any], ArgumentCheck]] = {}
        self._lock = anyio.Lock()
        self._daemon_up = True
        self._daemon_pid = daemon_pid
        self._stopping = False  # the daemon said it shuts down; hold the list
        self._hold_until = 0.0  # after a restart: skills starting keep their tools
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
                if (self._stopping or not self._daemon_up) and not await self._new_daemon():
                    return False  # the old daemon is still shutting down: hold
                fresh = Catalog.from_wire(await self._client.tools())
                if anyio.current_time() < self._hold_until:
                    fresh = await self._holding(fresh)
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

    async def _new_daemon(self) -> bool:
        """After ``daemon.stop`` or a failed refresh: is a new daemon serving?
        If so, skills on their way up keep their tools for ``HOLD_S``."""
        pid = (await self._client.ping()).get("pid")
        if pid == self._daemon_pid and self._stopping:
            return False
        if pid != self._daemon_pid:
            log.info("a new zskill daemon serves (pid %s)", pid)
            self._hold_until = anyio.current_time() + HOLD_S
        else:
            self._hold_until = 0.0  # the same daemon, answering again
        self._daemon_pid = pid if isinstance(pid, int) else None
        self._stopping = False
        return True

    async def _holding(self, fresh: Catalog) -> Catalog:
        coming = [
            str(s.get("name"))
            for s in await self._client.list()
            if s.get("state") in COMING_UP and s.get("name") not in fresh.skills
        ]
        kept = fresh.keeping(self._catalog, coming)
        if kept is fresh:
            self._hold_until = 0.0  # every skill that was listed is back, or gone for good
        return kept

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
                    if event is not None and event.type == EventKind.DAEMON_STOP:
                        # Its skills are about to stop: keep listing them.
                        log.warning("the zskill daemon is shutting down; keeping the tool list")
                        self._stopping = True
                    elif event is None or event.type in REFRESH_ON:
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
            return await self._meta_call(args, ctx)
        target = self._known.get(params.name)
        if target is None:
            await self.refresh_quietly()  # a tool added since the last refresh
            target = self._known.get(params.name)
        if target is None:
            return failure(
                f"no zskill tool is named {params.name!r}; {LIST_TOOLS} lists the tools "
                f"there are now, and {CALL_TOOL} calls one by skill and tool name"
            )
        return await self.forward(*target, args, ctx)

    async def forward(
        self, skill: str, tool: str, args: Mapping[str, Any], ctx: Ctx | None = None
    ) -> types.CallToolResult:
        """Call ``skill.tool`` through the daemon; its outcome as an MCP result.
        With ``ctx``, the host's progressToken and cancellation are honoured
        (see :mod:`.relay`)."""
        wrong = await self._argument_problems(skill, tool, args)
        if wrong:
            return failure(f"{skill}.{tool}: invalid arguments: {'; '.join(wrong)}")
        entry = self._catalog.get(tool_name(skill, tool))
        if self._stopping:
            return failure(restarting(f"{skill}.{tool}", "it is shutting down"))
        try:
            result = await relay.call(self._client, skill, tool, args, self._call_timeout_s, ctx)
        except ZskillError as exc:
            if self._stopping:  # refused because the daemon shuts down
                return failure(restarting(f"{skill}.{tool}", exc.message))
            return error_result(skill, tool, exc)
        output = entry.output_schema if entry is not None else None
        return value_result(result.value, version=result.version, output_schema=output)

    async def _argument_problems(self, skill: str, tool: str, args: Mapping[str, Any]) -> list[str]:
        """What the tool's advertised schema refuses in ``args`` ([] if none,
        or if the bridge does not know the tool or it coerces). Refused by a
        list that may predate an upgrade (the watcher not yet refreshed), they
        are checked again against the daemon's current schema."""
        problems: list[str] = []
        for attempt in range(2):
            entry = self._catalog.get(tool_name(skill, tool))
            if entry is None or (entry.skill, entry.tool) != (skill, tool) or entry.coerces:
                return []
            problems = self._check(entry).problems(args)
            if not problems or attempt:
                break
            await self.refresh_quietly()
        return problems

    def _check(self, entry: ToolEntry) -> ArgumentCheck:
        cached = self._checks.get(entry.name)
        if cached is None or cached[0] is not entry.input_schema:
            cached = (entry.input_schema, ArgumentCheck(entry.input_schema))
            self._checks[entry.name] = cached
        return cached[1]

    async def _meta_list(self, args: Mapping[str, Any]) -> types.CallToolResult:
        try:
            skill = list_skill(args)
        except MetaError as exc:
            return failure(str(exc))
        try:
            await self.refresh()
        except ZskillError as exc:
            return failure(restarting(LIST_TOOLS, exc.message))
        if skill is not None and skill not in self._catalog.skills:
            running = ", ".join(self._catalog.skills) or "none"
            return failure(
                f"{LIST_TOOLS}: no skill named {skill!r} is running (running: {running})"
            )
        listed = [entry.describe() for entry in self._catalog.of_skill(skill)]
        return value_result({"tools": listed})

    async def _meta_call(self, args: Mapping[str, Any], ctx: Ctx) -> types.CallToolResult:
        try:
            call = parse_call(args)
        except MetaError as exc:
            return failure(str(exc))
        self._known.setdefault(tool_name(call.skill, call.tool), (call.skill, call.tool))
        return await self.forward(call.skill, call.tool, call.arguments, ctx)


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
