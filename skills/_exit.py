"""How a skill process ends: its exit codes, which the daemon may read."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """How a skill process ends; the daemon may read them from its exit status."""

    DRAINED = 0
    """Drained on request (Drain, SIGTERM, SIGINT): every accepted call answered."""
    CRASHED = 1
    """The I/O loop itself raised (a bug in zskill): the traceback is logged."""
    NOT_UNDER_DAEMON = 2
    """No (usable) ZSKILL_ENDPOINT: the program was not started by zskilld."""
    REJECTED = 3
    """The daemon answered the Hello with Reject."""
    NO_WELCOME = 4
    """No answer to the Hello within WELCOME_TIMEOUT_S."""
    DAEMON_GONE = 5
    """Nothing heard from the daemon for liveness_s."""
    START_FAILED = 6
    """The skill's on_start hook raised: the process never said hello (its
    traceback went to the daemon in a Bye, and to stderr)."""


__all__ = ["ExitCode"]
