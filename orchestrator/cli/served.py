"""Which run dir serves a config file, remembered outside the file.

Commands find the daemon through the config file's run dir. When the file
changes under a running daemon -- a TOML error, or a new ``run_dir`` -- that
road is gone: ``down`` said "nothing to stop" while the daemon ran on, and
``up`` started a second daemon running the same skills. So a daemon started
by ``zskill up`` leaves a note, per config file, of the run dir it serves:
``$XDG_STATE_HOME/zskill/served/<hash of the config path>`` (default
``~/.local/state``), removed when it stops. Commands that talk to a running
daemon follow the note when the file cannot lead them (:func:`follow`), and
``up`` refuses to start a second daemon for the same file (:func:`elsewhere`).
A note whose daemon is gone (killed) is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path


def _notes_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zskill" / "served"


def _note(config: Path) -> Path:
    digest = hashlib.sha256(str(config.absolute()).encode()).hexdigest()[:24]
    return _notes_dir() / digest


def running_run_dir(config: Path) -> Path | None:
    """The run dir a live daemon serves ``config`` from, per its note."""
    from .._rundir import RunDir

    try:
        data = json.loads(_note(config).read_text())
        run_dir = Path(data["run_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if data.get("config") != str(config.absolute()):
        return None
    return run_dir if RunDir(run_dir).daemon_running() else None


def elsewhere(config: Path, run_dir: Path) -> Path | None:
    """A run dir other than ``run_dir`` where a daemon serves ``config``."""
    found = running_run_dir(config)
    return found if found is not None and found != run_dir else None


@contextlib.contextmanager
def noted(config: Path, run_dir: Path) -> Iterator[None]:
    """Leave the note while the daemon of this process serves ``config``."""
    note = _note(config)
    body = {"config": str(config.absolute()), "run_dir": str(run_dir), "pid": os.getpid()}
    written = False
    # A live daemon's note stays: this one is about to find its run dir taken.
    if running_run_dir(config) is None:
        with contextlib.suppress(OSError):  # no state dir: commands follow the file alone
            note.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = note.with_name(f"{note.name}.{os.getpid()}")
            tmp.write_text(json.dumps(body))
            tmp.replace(note)
            written = True
    try:
        yield
    finally:
        if written:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if json.loads(note.read_text())["pid"] == os.getpid():
                    note.unlink()


__all__ = ["elsewhere", "noted", "running_run_dir"]
