"""Where a rollout runs new code from, checked before anything is spawned:
a directory that exists and holds the skill's entry file."""

from __future__ import annotations

import shlex
from pathlib import Path

from ipc import BadRequest

from .releases import Release, ReleaseStore
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


def rollback_target(releases: ReleaseStore, rt: SkillRuntime, to: int | None) -> Release:
    """The release a rollback runs: the previous one, or release ``to`` (any
    kept one but the current); BadRequest when there is none or it is gone."""
    kept = {r.id: r for r in releases.all(rt.name)}
    prev = releases.previous(rt.name) if to is None else kept.get(to)
    if prev is None or (to is not None and prev.current):
        which = "an earlier release" if to is None else f"a release {to} (other than current)"
        raise BadRequest(
            f"skill {rt.name!r} has no {which} to roll back to "
            f"(`zskill releases {rt.name}` lists what is kept: {sorted(kept) or 'none'})",
            skill=rt.name,
        )
    if not prev.run_dir().is_dir():
        raise BadRequest(
            f"release {prev.id} of {rt.name!r} can no longer run: {prev.run_dir()} is gone",
            skill=rt.name,
        )
    return prev


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


__all__ = ["check_source", "entry_file", "rollback_target"]
