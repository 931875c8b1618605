"""Releases kept for rollback.

Every rollout that brings new code into service records a release: where
the code came from, a private copy of it, the version and tools it served,
and when. The copy is what makes a rollback safe: editing or deleting the
directory a release came from cannot break it.

    releases/<skill>/index.json     the list, oldest first, "current" marked
    releases/<skill>/<id>/          the code as it was started
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("zskill.releases")

IGNORED = {".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache"}
MAX_COPY_BYTES = 256 * 1024 * 1024


@dataclass(slots=True)
class Release:
    id: int
    source: str  # the directory the code came from
    path: str  # the private copy rollouts run from ("" if it could not be copied)
    digest: str
    created_at: float
    version: str = ""
    tools: list[str] = field(default_factory=list)
    current: bool = False

    def run_dir(self) -> Path:
        return Path(self.path or self.source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReleaseStore:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def all(self, skill: str) -> list[Release]:
        try:
            data = json.loads((self.root / skill / "index.json").read_text())
            return [Release(**r) for r in data]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError) as exc:
            log.warning("%s: unreadable release index (%s); starting a new one", skill, exc)
            return []

    def current(self, skill: str) -> Release | None:
        return next((r for r in self.all(skill) if r.current), None)

    def previous(self, skill: str) -> Release | None:
        """The release before the current one."""
        rels = self.all(skill)
        idx = next((i for i, r in enumerate(rels) if r.current), None)
        if idx is None or idx == 0:
            return None
        return rels[idx - 1]

    def prepare(
        self, skill: str, source: Path, cancelled: threading.Event | None = None
    ) -> Release:
        """Copy ``source`` aside as a candidate release (not yet current).

        Reads and copies a whole tree: the daemon runs it off its own thread
        (see ``jobs``). ``cancelled``, once set, makes it stop at the next
        directory and raise PrepareCancelled, leaving nothing behind."""
        digest = tree_digest(source, cancelled)
        rels = self.all(skill)
        rid, dest = self._claim(skill, max((r.id for r in rels), default=0) + 1)
        path = ""
        try:
            if dir_size(source) <= MAX_COPY_BYTES:
                shutil.copytree(
                    source, dest, ignore=_ignorer(cancelled), symlinks=True, dirs_exist_ok=True
                )
                path = str(dest)
            else:
                log.warning("%s: %s is too large to keep a copy; rollback reruns it", skill, source)
        except PrepareCancelled:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        except OSError as exc:
            log.warning("%s: cannot copy %s for rollback: %s", skill, source, exc)
        if not path:
            shutil.rmtree(dest, ignore_errors=True)
        return Release(rid, str(source), path, digest, time.time())

    def _claim(self, skill: str, rid: int) -> tuple[int, Path]:
        """The first release id from ``rid`` on whose directory nobody has:
        made here, so a candidate still being copied is never shared."""
        (self.root / skill).mkdir(parents=True, exist_ok=True)
        while True:
            dest = self.root / skill / str(rid)
            try:
                dest.mkdir()
            except FileExistsError:
                rid += 1
                continue
            return rid, dest

    def discard(self, skill: str, rel: Release) -> None:
        """Remove a candidate that never became current."""
        if any(r.id == rel.id for r in self.all(skill)):
            return
        if rel.path:
            shutil.rmtree(rel.path, ignore_errors=True)

    def commit(self, skill: str, rel: Release, version: str, tools: list[str]) -> None:
        """Make ``rel`` current (recording it if new); prune old releases."""
        rels = [r for r in self.all(skill) if r.id != rel.id]
        rel.version, rel.tools, rel.current = version, tools, True
        for r in rels:
            r.current = False
        rels.append(rel)
        rels.sort(key=lambda r: r.id)
        while len(rels) > self.keep:
            old = rels.pop(0)
            if old.path:
                shutil.rmtree(old.path, ignore_errors=True)
        self._write(skill, rels)

    def _write(self, skill: str, rels: list[Release]) -> None:
        d = self.root / skill
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "index.json.tmp"
        tmp.write_text(json.dumps([asdict(r) for r in rels], indent=1))
        os.replace(tmp, d / "index.json")


class PrepareCancelled(Exception):
    """The release being prepared is no longer wanted."""


def _ignorer(cancelled: threading.Event | None) -> Callable[[str, list[str]], set[str]]:
    """copytree's ``ignore``: called once per directory, so also where a
    copy that is no longer wanted stops."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        if cancelled is not None and cancelled.is_set():
            raise PrepareCancelled(directory)
        return {n for n in names if n in IGNORED or n.endswith(".pyc")}

    return ignore


def _walk(root: Path, cancelled: threading.Event | None = None) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if cancelled is not None and cancelled.is_set():
            raise PrepareCancelled(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED)
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.endswith(".pyc"))
    return out


def tree_digest(root: Path, cancelled: threading.Event | None = None) -> str:
    """A digest to tell whether code changed: of the files' contents, or, past
    MAX_COPY_BYTES (a tree too large to copy, and to read at every start), of
    their names, sizes and modification times."""
    files = _walk(root, cancelled)
    by_content = dir_size(root) <= MAX_COPY_BYTES
    h = hashlib.sha256()
    for f in files:
        try:
            h.update(str(f.relative_to(root)).encode())
            if by_content:
                h.update(f.read_bytes())
            else:
                st = f.stat()
                h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            continue
    return h.hexdigest()[:16]


def dir_size(root: Path) -> int:
    total = 0
    for f in _walk(root):
        with contextlib.suppress(OSError):
            total += f.lstat().st_size
        if total > MAX_COPY_BYTES:
            break
    return total
