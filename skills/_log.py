"""The SDK's own diagnostics.

They go straight to stderr, which the daemon captures into the skill's log,
rather than through :mod:`logging`: the author owns the logging configuration
of their program, and SDK messages must show up even when nothing is
configured (or when the author silences the root logger).
"""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """Write one ``zskill:``-prefixed line to stderr, flushed at once so the
    line is not lost if the process exits right after."""
    try:
        sys.stderr.write(f"zskill: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        # stderr closed or broken: diagnostics must never take the skill down.
        pass
