"""``zskill new NAME``: a new skill's directory from the templates shipped in
``skills/templates/skill/`` (``__SKILL_NAME__`` and ``__SKILL_PATH__``
filled in)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import UsageError

# The rule of orchestrator._config.SKILL_NAME, kept here so that `zskill new`
# does not import pydantic; test_cli_scaffold checks that the two agree.
SKILL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
TEMPLATE_FILES = ("main.py", "README.md")


@dataclass(frozen=True, slots=True)
class Scaffold:
    name: str
    directory: Path
    files: tuple[Path, ...]
    toml_path: str
    """The directory as zskill.toml's ``path`` (relative to the config's directory)."""

    def toml_table(self) -> str:
        return (
            f"[skills.{self.name}]\n"
            f"path = {json.dumps(self.toml_path)}\n"
            'command = ["python", "main.py"]\n'
        )


def check_name(name: str) -> None:
    if not SKILL_NAME.match(name):
        raise UsageError(
            f"invalid skill name {name!r}: it must start with a letter and hold only "
            "letters, digits, '-' and '_' (at most 64)"
        )


def _toml_path(directory: Path, config_dir: Path) -> str:
    rel = os.path.relpath(directory, config_dir)
    return Path(rel).as_posix()


def template(name: str) -> str:
    return (
        resources.files("skills").joinpath("templates", "skill", name).read_text(encoding="utf-8")
    )


def scaffold(name: str, parent: Path, *, config_dir: Path | None = None) -> Scaffold:
    """Create ``parent/name/`` with a working skill. Refuses an invalid name
    and a directory that exists and is not empty (UsageError)."""
    check_name(name)
    directory = (parent / name).absolute()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} already exists and is not empty")
    toml_path = _toml_path(directory, (config_dir or Path.cwd()).absolute())
    contents = {
        fname: template(fname).replace("__SKILL_NAME__", name).replace("__SKILL_PATH__", toml_path)
        for fname in TEMPLATE_FILES
    }
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for fname, text in contents.items():
        path = directory / fname
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return Scaffold(name, directory, tuple(files), toml_path)
