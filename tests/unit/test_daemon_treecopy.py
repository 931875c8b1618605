"""Release copies: what is left out, and how each file is placed (hard
link only for large read-only files, so an edit in place never reaches a
release)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orchestrator._daemon.releases import ReleaseStore, tree_digest
from orchestrator._daemon.treecopy import LINK_MIN_BYTES, Exclude, walk


def tree(root: Path) -> Path:
    src = root / "src"
    for rel, data in {
        "main.py": b"print(1)\n",
        ".venv/bin/python": b"#!",
        "__pycache__/main.cpython-311.pyc": b"junk",
        "data/notes.db": b"state",
        "logs/today.log": b"log",
        "models/weights.bin": b"w" * LINK_MIN_BYTES,
        "models/cache.bin": b"c" * LINK_MIN_BYTES,
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    os.chmod(src / "models/weights.bin", 0o444)  # read-only: immutable in practice
    os.symlink("main.py", src / "entry.py")
    return src


def names(root: Path, exclude: Exclude) -> list[str]:
    return [str(p.relative_to(root)) for p in walk(root, exclude)]


def test_defaults_leave_out_venvs_and_caches_and_the_data_dir(tmp_path: Path) -> None:
    src = tree(tmp_path)
    got = sorted(names(src, Exclude.of(None, src / "data")))
    assert got == [
        "entry.py",
        "logs/today.log",
        "main.py",
        "models/cache.bin",
        "models/weights.bin",
    ]


def test_release_exclude_names_globs_and_relative_paths(tmp_path: Path) -> None:
    src = tree(tmp_path)
    got = names(src, Exclude.of([".venv", "*.log", "models/cache.bin"], None))
    assert "logs/today.log" not in got and "models/cache.bin" not in got
    assert ".venv/bin/python" not in got
    # A list of one's own replaces the defaults: caches are no longer left out.
    assert "__pycache__/main.cpython-311.pyc" in got and "data/notes.db" in got


def test_large_read_only_files_are_linked_writable_ones_copied(tmp_path: Path) -> None:
    src = tree(tmp_path)
    store = ReleaseStore(tmp_path / "releases", keep=3)
    rel = store.prepare("echo", src, exclude=Exclude.of(None, src / "data"))
    copy = Path(rel.path)
    weights, cache = copy / "models/weights.bin", copy / "models/cache.bin"
    # Either a reflink (its own inode, shared blocks) or a hard link (same inode).
    linked = weights.stat().st_ino == (src / "models/weights.bin").stat().st_ino
    assert linked or "reflinked" in rel.placed
    assert cache.stat().st_ino != (src / "models/cache.bin").stat().st_ino
    assert not (copy / "data").exists() and not (copy / ".venv").exists()
    assert os.readlink(copy / "entry.py") == "main.py"
    assert "shared" in rel.placed
    # An edit in place of a writable source file never reaches the release.
    with open(src / "models/cache.bin", "r+b") as f:
        f.write(b"EDITED")
    assert cache.read_bytes()[:6] == b"cccccc"
    assert not stat.S_IMODE(weights.stat().st_mode) & 0o222


def test_digest_ignores_what_releases_leave_out(tmp_path: Path) -> None:
    src = tree(tmp_path)
    skip = Exclude.of(None, src / "data")
    before = tree_digest(src, exclude=skip)
    (src / "data/notes.db").write_bytes(b"more state")
    assert tree_digest(src, exclude=skip) == before
    (src / "main.py").write_text("print(2)\n")
    assert tree_digest(src, exclude=skip) != before
