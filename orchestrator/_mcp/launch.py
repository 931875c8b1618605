"""The ``zskill mcp`` process: connect to the daemon, then serve one host on
stdin/stdout until it closes stdin.

A host launches this as a command and shows its stderr, so everything said
before serving goes there, in one line each; stdout carries MCP only.

Which protocol generations are served (``protocol``):

- ``"auto"`` (the default): the one the host opens with. A 2026-07-28 host
  hears of tool-list changes only on a ``subscriptions/listen`` stream it
  opens; one that never opens one is never told (its host must list again).
- ``"legacy"``: the ``initialize`` handshake only; a dual-era host's
  ``server/discover`` probe is refused, so it falls back to the handshake, where
  every change is sent as ``notifications/tools/list_changed``. For hosts that
  negotiate 2026-07-28 but never listen and cache the list until told.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import anyio
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server

from .._client.aio import AsyncClient
from .._config import Config
from .bridge import Bridge

__all__ = ["Protocol", "serve"]

Protocol = Literal["auto", "legacy"]

log = logging.getLogger("zskill.mcp")


def serve(config: Config, *, protocol: Protocol = "auto") -> None:
    """Serve MCP on stdin/stdout until the host closes stdin.

    Fails fast (DaemonUnavailable) when no daemon runs for ``config``, before
    touching stdio: the host then shows our one line on stderr.
    """
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="zskill mcp: %(levelname)s %(message)s"
    )
    # The SDK logs each host disconnect and such at INFO; keep the host's log readable.
    logging.getLogger("mcp").setLevel(logging.WARNING)
    anyio.run(_serve, config, protocol, backend="asyncio")  # zmq.asyncio needs asyncio


async def _serve(config: Config, protocol: Protocol) -> None:
    client = AsyncClient(config, timeout=config.daemon.call_timeout_s)
    try:
        pong = await client.ping()
        pid = pong.get("pid")
        bridge = Bridge(
            client,
            call_timeout_s=config.daemon.call_timeout_s,
            run_dir=str(config.run_dir),
            daemon_pid=pid if isinstance(pid, int) else None,
        )
        await bridge.refresh_quietly()
        log.info(
            "serving %d tools of %s from %s (protocol: %s)",
            len(bridge.catalog.entries),
            bridge.catalog.skills,
            config.run_dir,
            protocol,
        )
        async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as tg:
            tg.start_soon(bridge.watch)
            server, options = bridge.server, bridge.init_options()
            if protocol == "legacy":
                async with server.lifespan(server) as state:
                    await serve_loop(
                        server,
                        read_stream,
                        write_stream,
                        lifespan_state=state,
                        init_options=options,
                    )
            else:
                await server.run(read_stream, write_stream, options)
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
