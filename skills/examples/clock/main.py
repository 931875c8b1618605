"""clock: async tools, run on the SDK's event loop."""

import asyncio
import os
import time

from skills import Skill

skill = Skill("clock", version=os.environ.get("CLOCK_VERSION", "1.0.0"))


@skill.tool()
async def now() -> float:
    """The current time, in seconds since the epoch."""
    return time.time()


@skill.tool()
async def wait(seconds: float) -> float:
    """Wait without blocking (asyncio.sleep), then return seconds."""
    await asyncio.sleep(seconds)
    return seconds


@skill.health
async def healthy() -> bool:
    return True


if __name__ == "__main__":
    skill.run()
