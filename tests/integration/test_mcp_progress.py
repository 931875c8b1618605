"""`zskill mcp` and long calls, driven by the MCP SDK's client over stdio in
both protocol generations: a host that sends a progressToken gets the tool's
progress as notifications/progress, in order; a host that cancels a call
(notifications/cancelled) stops the handler in the skill."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
import test_mcp as host_helpers  # the module, not its names: pytest would collect its tests
from helpers import Daemon, example, running_daemon


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", list(host_helpers.MODES))
def test_progress_and_cancel_through_the_bridge(mode: str) -> None:
    with running_daemon({"batch": example("batch")}) as d:
        d.wait_running("batch")
        anyio.run(_progress_and_cancel, d, mode)


async def _progress_and_cancel(d: Daemon, mode: str) -> None:
    async with host_helpers.mcp_host(d, mode) as (host, _):
        seen: list[tuple[float, float | None, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        result = await host.call_tool(
            "batch__process", {"items": 4, "step_s": 0.1}, progress_callback=on_progress
        )
        assert not result.is_error, host_helpers.text(result)
        assert result.structured_content == {"processed": 4}
        assert [p for p, _, _ in seen] == [1.0, 2.0, 3.0, 4.0]
        assert seen[-1] == (4.0, 4.0, "item 4")

        # The host gives up on a call: the bridge's handler is cancelled, and
        # with it the call; the skill's handler stops.
        log = d.root / f"mcp-{mode}.log"
        t0 = 0.0
        with anyio.CancelScope() as scope:

            async def give_up_when_busy() -> None:
                nonlocal t0
                await host_helpers.wait_async(lambda: len(lines(log)) >= 3, what="working")
                t0 = time.monotonic()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(give_up_when_busy)
                await host.call_tool(
                    "batch__process_async", {"items": 500, "step_s": 0.02, "log": str(log)}
                )
        assert scope.cancelled_caught
        await host_helpers.wait_async(lambda: "end" in lines(log), 5.0, what="the handler ended")
        assert time.monotonic() - t0 < 1.5
        await host_helpers.wait_async(
            lambda: d.status("batch")["in_flight"] == 0, 5.0, what="the slot freed"
        )
        # The bridge still serves the host.
        pong = await host.call_tool("batch__ping", {})
        assert not pong.is_error and "pong" in host_helpers.text(pong)
