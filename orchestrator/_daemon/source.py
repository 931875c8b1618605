"""Where a rollout runs new code from, checked before anything is spawned:
a directory that exists and holds the skill's entry file."""

from __future__ import annotations

import shlex
from pathlib import Path

from ipc import BadRequest

from .runtime import SkillRuntime


def check_source(rt: SkillRuntime, src: Path) -> None:
    """A clear error before anything is spawned when ``src`` cannot run the skill."""
    if not src.exists():
        raise BadRequest(f"cannot upgrade {rt.name!r}: {src} does not exist", skill=rt.name)
    if not src.is_dir():
        raise BadRequest(f"cannot upgrade {rt.name!r}: {src} is not a directory", skill=rt.name)
    entry = entry_file(rt.config.command)
    if entry is not None and not (src / entry).is_file():
        raise BadRequest(
            f"cannot upgrade {rt.name!r}: {src} has no {entry} "
            f"(the skill's command is `{shlex.join(rt.config.command)}`)",
            skill=rt.name,
        )


def entry_file(command: tuple[str, ...]) -> str | None:
    """The script a python command runs (``python main.py`` -> main.py)."""
    if not command or "python" not in Path(command[0]).name:
        return None
    for arg in command[1:]:
        if arg in ("-m", "-c"):
            return None
        if arg.startswith("-"):
            continue
        return arg if not Path(arg).is_absolute() else None
    return None


__all__ = ["check_source", "entry_file"]
