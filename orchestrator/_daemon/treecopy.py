"""A skill's code tree as a release keeps it: which files, and how each is
placed in the copy.

Which files: everything under the skill's directory but what
``release_exclude`` names (by default ``DEFAULT_EXCLUDE``: virtualenvs,
caches, ``.git``), and never the skill's data_dir -- state is not code, and
a rollback must not bring old data back.

How each file is placed, cheapest safe way first:

1. **reflink** (``FICLONE``: btrfs, XFS, bcachefs...): the copy shares the
   source's blocks until either is written, copy-on-write, so an edit of
   the source in place can never reach the release. Free and always safe.
2. **hard link**, for a large file (``LINK_MIN_BYTES``) that nobody may
   write (no ``w`` bit in its mode: model weights, vendored archives the
   owner made read-only). A hard link *is* the same file: had the source
   been writable, an edit in place (``>>``, an editor that does not write
   a new file and rename it) would change the release too. Tools that
   replace a file (git checkout, pip, most editors' save, ``sed -i``) make
   a new inode and leave the link alone; a read-only mode is the owner's
   promise that nothing writes the old one. (root ignores modes: a
   ``cp`` as root onto such a file would reach the release.)
3. **copy**, for everything else.

A file system that does not support a step (or a link across devices)
falls to the next one; nothing here fails a release that a plain copy
would have made.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import shutil
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_EXCLUDE = (
    ".venv",
    "venv",
    "__pycache__",
    ".git",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    "*.pyc",
)
LINK_MIN_BYTES = 1 << 20
"""Files from this size are reflinked or, if read-only, hard-linked."""
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)


class PrepareCancelled(Exception):
    """The release being prepared is no longer wanted."""


@dataclass(frozen=True, slots=True)
class Exclude:
    """What a release leaves out: ``patterns`` match a file or directory
    name (``.venv``, ``*.log``) or, holding a ``/``, its path relative to
    the tree's root (``data/cache``); ``paths`` are absolute (the data_dir)."""

    patterns: tuple[str, ...] = DEFAULT_EXCLUDE
    paths: frozenset[Path] = frozenset()
    rel_paths: frozenset[str] = frozenset()  # ``paths`` below the root at hand

    @classmethod
    def of(cls, patterns: Iterable[str] | None, data_dir: Path | None) -> Exclude:
        pats = DEFAULT_EXCLUDE if patterns is None else tuple(patterns)
        return cls(pats, frozenset([data_dir.resolve()]) if data_dir is not None else frozenset())

    def under(self, root: Path) -> Exclude:
        """This exclusion for a walk of ``root``: ``paths`` inside it become
        paths relative to it (compared as resolved paths, once)."""
        real = root.resolve()
        rel = {p.relative_to(real).as_posix() for p in self.paths if p.is_relative_to(real)}
        return Exclude(self.patterns, self.paths, frozenset(rel))

    def skips(self, root: Path, path: Path) -> bool:
        rel = path.relative_to(root).as_posix()
        if rel in self.rel_paths:
            return True
        for pat in self.patterns:
            target = rel if "/" in pat else path.name
            if fnmatch.fnmatchcase(target, pat.strip("/")):
                return True
        return False


def walk(root: Path, exclude: Exclude, cancelled: threading.Event | None = None) -> list[Path]:
    """Every file a release of ``root`` holds, in a stable order."""
    exclude = exclude.under(root)
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if cancelled is not None and cancelled.is_set():
            raise PrepareCancelled(dirpath)
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not exclude.skips(root, here / d))
        out.extend(here / f for f in sorted(filenames) if not exclude.skips(root, here / f))
    return out


def copy_cost(root: Path, exclude: Exclude, limit: int) -> int:
    """Bytes a release of ``root`` must copy (read-only large files are
    linked, not copied), counted up to just past ``limit``."""
    total = 0
    for f in walk(root, exclude):
        with contextlib.suppress(OSError):
            st = f.lstat()
            if not _linkable(st):
                total += st.st_size
        if total > limit:
            break
    return total


@dataclass(slots=True)
class Placed:
    """How a tree's files were placed in a release."""

    copied: int = 0
    reflinked: int = 0
    linked: int = 0
    shared_bytes: int = field(default=0)  # reflinked or linked: no new blocks

    def describe(self) -> str:
        if not (self.reflinked or self.linked):
            return ""
        parts = [f"{n} {how}" for n, how in ((self.reflinked, "reflinked"), (self.linked,
                 "hard-linked")) if n]  # fmt: skip
        return f"{', '.join(parts)} ({_mib(self.shared_bytes)} shared)"


def copy_tree(
    src: Path, dest: Path, exclude: Exclude, cancelled: threading.Event | None = None
) -> Placed:
    """Place the release's files of ``src`` under ``dest`` (which exists)."""
    exclude = exclude.under(src)
    placed = Placed()
    for dirpath, dirnames, filenames in os.walk(src):
        if cancelled is not None and cancelled.is_set():
            raise PrepareCancelled(dirpath)
        here = Path(dirpath)
        to = dest / here.relative_to(src)
        kept = [d for d in dirnames if not exclude.skips(src, here / d)]
        dirnames[:] = [d for d in kept if not (here / d).is_symlink()]
        for d in kept:
            if (here / d).is_symlink():
                os.symlink(os.readlink(here / d), to / d)
            else:
                (to / d).mkdir(exist_ok=True)
        for name in filenames:
            if not exclude.skips(src, here / name):
                _place(here / name, to / name, placed)
    return placed


def _place(src: Path, dst: Path, placed: Placed) -> None:
    st = src.lstat()
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        return
    if st.st_size >= LINK_MIN_BYTES:
        if _reflink(src, dst):
            shutil.copystat(src, dst)
            placed.reflinked += 1
            placed.shared_bytes += st.st_size
            return
        if _linkable(st):
            try:
                os.link(src, dst)
            except OSError:
                pass  # another device, or links not allowed: copy it
            else:
                placed.linked += 1
                placed.shared_bytes += st.st_size
                return
    shutil.copy2(src, dst)
    placed.copied += 1


def _linkable(st: os.stat_result) -> bool:
    """A large regular file nobody may write: immutable in practice."""
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size >= LINK_MIN_BYTES
        and not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    )


def _reflink(src: Path, dst: Path) -> bool:
    """Copy-on-write clone of ``src`` as ``dst``; False (and no ``dst``)
    where the file system cannot."""
    created = False
    try:
        with open(src, "rb") as fin, open(dst, "xb") as fout:
            created = True
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return True
    except OSError:
        pass
    if created:
        with contextlib.suppress(OSError):
            dst.unlink()
    return False


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


__all__ = [
    "DEFAULT_EXCLUDE",
    "LINK_MIN_BYTES",
    "Exclude",
    "Placed",
    "PrepareCancelled",
    "copy_cost",
    "copy_tree",
    "walk",
]
