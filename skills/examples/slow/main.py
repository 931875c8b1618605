"""slow: tools that take time, for drain and upgrade tests and benchmarks."""

import os
import time

from skills import Skill

skill = Skill("slow", version=os.environ.get("SLOW_VERSION", "1.0.0"))


@skill.tool()
def sleep(seconds: float) -> float:
    """Sleep (blocking a worker thread), then return seconds."""
    time.sleep(seconds)
    return seconds


@skill.tool(idempotent=True)
def sleep_idem(seconds: float) -> float:
    """Like sleep, but declared safe to retry."""
    time.sleep(seconds)
    return seconds


@skill.tool(inline=True)
def stall(seconds: float) -> float:
    """Sleep on the I/O thread (inline=True, misused on purpose): another thread
    must take the I/O over meanwhile."""
    time.sleep(seconds)
    return seconds


@skill.tool()
def work(ms: float) -> float:
    """Busy the CPU for about ms milliseconds; return the milliseconds spent."""
    start = time.perf_counter()
    deadline = start + ms / 1000
    n = 0
    while time.perf_counter() < deadline:
        n += 1
    return (time.perf_counter() - start) * 1000


@skill.health
def healthy() -> bool:
    return True


if __name__ == "__main__":
    skill.run()
