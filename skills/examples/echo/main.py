"""echo: the reference skill that tests and benchmarks drive.

ECHO_VERSION overrides the version, so a test can fake an upgrade by
starting the same code again as another version.
"""

import os

from skills import Skill

skill = Skill("echo", version=os.environ.get("ECHO_VERSION", "1.0.0"))


@skill.tool()
def say(text: str, times: int = 1) -> str:
    """Repeat text.

    Args:
        text: the text to repeat.
        times: how many times to repeat it.
    """
    return " ".join([text] * times)


@skill.tool(idempotent=True)
def ping() -> str:
    """Answer "pong"."""
    return "pong"


@skill.tool()
def noop() -> None:
    """Do nothing (the call benchmark's tool)."""


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
    """Return the environment variable ``name`` (None if unset)."""
    return os.environ.get(name)


@skill.health
def healthy() -> bool:
    return True


if __name__ == "__main__":
    skill.run()
