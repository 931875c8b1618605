"""The SDK's own diagnostics.

Warnings and errors (:func:`log`) go straight to stderr, which the daemon
captures into the skill's log, rather than through :mod:`logging`: the
author owns the logging configuration of their program, and those messages
must show up even when nothing is configured (or when the author silences
the root logger).

Routine news (:func:`debug`: "draining: 0 calls in flight", at every
upgrade, restart and stop) goes to the ``skills`` logger at DEBUG level: a
skill's stderr is its author's, and the daemon's events already say when a
process drains. ``logging.getLogger("skills").setLevel(logging.DEBUG)``
with a handler shows them.
"""

from __future__ import annotations

import logging
import sys

_logger = logging.getLogger("skills")


def log(message: str) -> None:
    """Write one ``zskill:``-prefixed line to stderr, flushed at once so the
    line is not lost if the process exits right after."""
    try:
        sys.stderr.write(f"zskill: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        # stderr closed or broken: diagnostics must never take the skill down.
        pass


def debug(message: str) -> None:
    """Routine news, at DEBUG level on the ``skills`` logger (silent unless
    the author configured it)."""
    _logger.debug("zskill: %s", message)
