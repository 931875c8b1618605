"""The CLI's own failures: a message for the user and the exit code.

Exit codes of every ``zskill`` command:

    0  ok
    1  the operation failed (an error from the daemon, a rolled-back upgrade)
    2  usage or config error (bad option, invalid zskill.toml)
    3  no daemon is running
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_DAEMON = 3


class CliError(Exception):
    """Printed as ``error: <message>`` (no type, no traceback), then exit."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)
