"""notes: a skill with state, both kinds.

- Durable state, the notes themselves, lives in ``skill.data_dir``: the
  same directory for every version, restart and rollback. (The code runs
  from a release copy: a notes file beside main.py would be lost at the
  next upgrade, and a stale one brought back by a rollback.)
- In-memory state, a count of the calls served, crosses an upgrade through
  ``export_state`` (old version) and ``import_state`` (new version).
- ``on_start`` opens the notes before the process says hello; ``on_stop``
  records, once the process has drained, which version stopped.
"""

import json
import os
import threading
from pathlib import Path

from skills import Skill

skill = Skill("notes", version=os.environ.get("NOTES_VERSION", "1.0.0"))

_lock = threading.Lock()
_served = 0  # calls served since the skill first started, across upgrades
_notes: Path | None = None


@skill.on_start
def open_notes() -> None:
    global _notes
    _notes = skill.data_dir / "notes.jsonl"
    _notes.touch()


@skill.on_stop
def closed() -> None:
    with (skill.data_dir / "stopped.log").open("a") as f:
        f.write(f"{skill.version} {os.getpid()}\n")


def _count() -> int:
    global _served
    with _lock:
        _served += 1
        return _served


@skill.tool()
def add(text: str) -> int:
    """Keep a note; return how many notes there are."""
    _count()
    assert _notes is not None
    with _lock, _notes.open("a") as f:
        f.write(json.dumps(text) + "\n")
    return len(read())


@skill.tool()
def read() -> list[str]:
    """Every note, oldest first."""
    assert _notes is not None
    return [json.loads(line) for line in _notes.read_text().splitlines() if line]


@skill.tool()
def hit() -> int:
    """Count a call; return the count (the state an upgrade hands over)."""
    return _count()


@skill.tool()
def where() -> dict[str, str]:
    """Where this process runs from and keeps its data."""
    return {
        "cwd": os.getcwd(),
        "data_dir": str(skill.data_dir),
        "version": skill.version,
        "venv": os.environ.get("VIRTUAL_ENV", ""),
    }


@skill.export_state
def export() -> dict[str, int]:
    return {"served": _served}


@skill.import_state
def take_over(state: dict[str, int], from_version: str) -> None:
    global _served
    with _lock:
        _served = state["served"]


@skill.health
def healthy() -> bool:
    return _notes is not None and _notes.exists()


if __name__ == "__main__":
    skill.run()
