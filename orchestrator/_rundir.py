"""The run dir: every file and socket a daemon keeps, named in one place.

    <run_dir>/
      zskilld.pid            the daemon's pid, flock()ed while it runs
      events.jsonl           lifecycle and deployment history
      logs/zskilld.log       the daemon's own log
      logs/zskilld.out       stdout and stderr of a detached daemon
      logs/SKILL.log         each skill's captured output (JSON lines)
      releases/SKILL/        kept releases, for rollback
      keys/                  CurveZMQ keys for tcp:// (see ``_curve``)
      control.sock           ROUTER  clients: calls and control operations
      workers.sock           ROUTER  skill processes
      events.sock            PUB     lifecycle and deployment events

ipc:// paths are limited to about 107 bytes (sun_path). When a run dir's
socket paths would be longer, the sockets go to a short directory under
``/tmp`` whose name is a hash of the run dir, so daemon and clients compute
the same place from the same run dir.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ipc import Endpoints

_SUN_PATH_MAX = 107
_SOCKETS = ("control.sock", "workers.sock", "events.sock")


@dataclass(frozen=True, slots=True)
class RunDir:
    """A run dir's layout. ``path`` is made absolute; nothing is created."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(os.path.abspath(Path(path).expanduser())))

    # --- files -------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.path / "zskilld.pid"

    @property
    def events_file(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "zskilld.log"

    @property
    def detached_output(self) -> Path:
        return self.logs / "zskilld.out"

    def skill_log(self, skill: str) -> Path:
        return self.logs / f"{skill}.log"

    @property
    def releases(self) -> Path:
        return self.path / "releases"

    @property
    def keys(self) -> Path:
        return self.path / "keys"

    @property
    def client_keys(self) -> Path:
        return self.keys / "clients"

    @property
    def server_secret_key(self) -> Path:
        return self.keys / "server.key_secret"

    # --- sockets -----------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """Where the ipc:// sockets live: the run dir itself, or a short
        directory under /tmp when the run dir's path is too long for them."""
        longest = max(_SOCKETS, key=len)
        if len(str(self.path / longest)) <= _SUN_PATH_MAX:
            return self.path
        digest = hashlib.sha256(str(self.path).encode()).hexdigest()[:16]
        return Path("/tmp") / f"zskill-{os.getuid()}" / digest

    @property
    def endpoints(self) -> Endpoints:
        d = self.socket_dir
        control, workers, events = (f"ipc://{d / name}" for name in _SOCKETS)
        return Endpoints(control=control, workers=workers, events=events)


__all__ = ["RunDir"]
