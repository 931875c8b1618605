"""batch: long-running tools that report progress and honour cancellation.

Each tool can append one line per step to a ``log`` file, so that a test (or
you, with ``tail -f``) sees the work happen, and stop.
"""

import asyncio
import os
import time

from skills import Context, Skill

skill = Skill("batch", version=os.environ.get("BATCH_VERSION", "1.0.0"))


def _note(log: str | None, line: str) -> None:
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


@skill.tool()
def process(items: int, ctx: Context, step_s: float = 0.1, log: str | None = None) -> dict:
    """Process items one by one, reporting progress; stops when cancelled.

    Args:
        items: How many items to process.
        step_s: Seconds each item takes.
        log: A file to append one line per item to.
    """
    _note(log, "start")
    try:
        for i in range(items):
            ctx.raise_if_cancelled()  # a sync handler looks between steps
            time.sleep(step_s)
            _note(log, f"item {i + 1}")
            ctx.progress(i + 1, items, f"item {i + 1}")
        return {"processed": items}
    finally:
        _note(log, "end")


@skill.tool()
async def process_async(
    items: int, ctx: Context, step_s: float = 0.1, log: str | None = None
) -> dict:
    """As process, in an async handler: a cancel cancels its task.

    Args:
        items: How many items to process.
        step_s: Seconds each item takes.
        log: A file to append one line per item to.
    """
    _note(log, "start")
    try:
        for i in range(items):
            await asyncio.sleep(step_s)  # where a cancel lands
            _note(log, f"item {i + 1}")
            ctx.progress(i + 1, items, f"item {i + 1}")
        return {"processed": items}
    finally:
        _note(log, "end")


@skill.tool()
def stubborn(seconds: float, log: str | None = None) -> float:
    """Block for seconds and ignore cancellation (a handler stuck in a call
    that cannot be interrupted).

    Args:
        seconds: How long to block.
        log: A file to append "start" to.
    """
    _note(log, "start")
    time.sleep(seconds)
    return seconds


@skill.tool()
def ping() -> str:
    """Answer at once, with this process's pid."""
    return f"pong from {os.getpid()}"


if __name__ == "__main__":
    skill.run()
