"""Broken echo: says hello, is welcomed, then exits 1 at once.

The SDK runs in a thread; the main thread waits for the Welcome (a private
event of the SDK) and ends the process the way a crash would.
"""

import os
import threading

from skills import Skill

skill = Skill("echo", version=os.environ.get("ECHO_VERSION", "2.0.0-exit-after-hello"))


@skill.tool()
def say(text: str, times: int = 1) -> str:
    """Repeat text."""
    return " ".join([text] * times)


@skill.tool(idempotent=True)
def ping() -> str:
    """Answer "pong"."""
    return "pong"


@skill.tool()
def noop() -> None:
    """Do nothing."""


@skill.tool()
def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


@skill.tool()
def unencodable() -> object:
    """Return a value msgpack cannot encode."""
    return {1, 2, 3}


@skill.tool()
def big(n: int) -> str:
    """Return a string of n bytes."""
    return "x" * n


@skill.tool()
def env(name: str) -> str | None:
    """Return the environment variable name (None if unset)."""
    return os.environ.get(name)


@skill.health
def healthy() -> bool:
    return True


if __name__ == "__main__":
    runner = threading.Thread(target=skill.run, daemon=True)
    runner.start()
    while not skill._welcomed.wait(0.1):
        if not runner.is_alive():  # never welcomed (rejected, no daemon...)
            os._exit(2)
    os._exit(1)
