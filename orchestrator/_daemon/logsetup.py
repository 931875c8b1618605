"""The daemon's own log: ``logs/zskilld.log``, rotated like the skills'
logs, and stderr too when it is a terminal nobody else draws on (a
foreground ``zskill up`` with its view shows the events instead)."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from .._config import Config
from .._rundir import RunDir


class DaemonLog:
    """The handlers zskilld adds to the ``zskill`` logger, and removes at its end."""

    def __init__(self, layout: RunDir, config: Config, *, to_stderr: bool) -> None:
        layout.logs.mkdir(parents=True, exist_ok=True)
        self._root = logging.getLogger("zskill")
        self._root.setLevel(logging.INFO)
        handler = logging.handlers.RotatingFileHandler(
            layout.daemon_log,
            maxBytes=config.daemon.log_max_bytes,
            backupCount=config.daemon.log_keep,
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handlers: list[logging.Handler] = [handler]
        if to_stderr and sys.stderr.isatty():
            err = logging.StreamHandler()
            err.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
            self._handlers.append(err)
        for h in self._handlers:
            self._root.addHandler(h)

    def close(self) -> None:
        for h in self._handlers:
            self._root.removeHandler(h)
            h.close()


__all__ = ["DaemonLog"]
