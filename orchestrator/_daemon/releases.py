"""Releases kept for rollback.

Every rollout that brings new code into service records a release: where
the code came from, a private copy of it, the version and tools it served,
and when. The copy is what makes a rollback safe: editing or deleting the
directory a release came from cannot break it.

    releases/<skill>/index.json     the list, oldest first, "current" marked
    releases/<skill>/<id>/          the code as it was started

Which files a release holds and how each is placed (reflink, hard link of
a read-only large file, or copy) is :mod:`.treecopy`'s business.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .treecopy import Exclude, PrepareCancelled, copy_cost, copy_tree, walk

log = logging.getLogger("zskill.releases")

MAX_COPY_BYTES = 256 * 1024 * 1024
"""Past this many bytes to copy (linked files aside), no copy is kept."""


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
    placed: str = ""  # files linked rather than copied, if any (see treecopy)

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
        self,
        skill: str,
        source: Path,
        cancelled: threading.Event | None = None,
        exclude: Exclude | None = None,
    ) -> Release:
        """Copy ``source`` aside as a candidate release (not yet current),
        without what ``exclude`` names.

        Reads and copies a whole tree: the daemon runs it off its own thread
        (see ``jobs``). ``cancelled``, once set, makes it stop at the next
        directory and raise PrepareCancelled, leaving nothing behind."""
        exclude = exclude or Exclude()
        digest = tree_digest(source, cancelled, exclude)
        rels = self.all(skill)
        rid, dest = self._claim(skill, max((r.id for r in rels), default=0) + 1)
        path = placed = ""
        try:
            if copy_cost(source, exclude, MAX_COPY_BYTES) <= MAX_COPY_BYTES:
                placed = copy_tree(source, dest, exclude, cancelled).describe()
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
        return Release(rid, str(source), path, digest, time.time(), placed=placed)

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


def tree_digest(
    root: Path, cancelled: threading.Event | None = None, exclude: Exclude | None = None
) -> str:
    """A digest to tell whether code changed: of the files' contents, or, past
    MAX_COPY_BYTES (a tree too large to copy, and to read at every start), of
    their names, sizes and modification times. What a release excludes
    (the data_dir, caches) counts for nothing."""
    exclude = exclude or Exclude()
    files = walk(root, exclude, cancelled)
    by_content = copy_cost(root, exclude, MAX_COPY_BYTES) <= MAX_COPY_BYTES
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


__all__ = ["MAX_COPY_BYTES", "PrepareCancelled", "Release", "ReleaseStore", "tree_digest"]
