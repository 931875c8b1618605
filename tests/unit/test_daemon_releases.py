"""ReleaseStore in a tmp dir: prepare, commit, discard, previous, how many
are kept, and the digest that tells whether code changed."""

from __future__ import annotations

from pathlib import Path

from orchestrator._daemon.releases import ReleaseStore, tree_digest


def code(base: Path, name: str, text: str) -> Path:
    src = base / name
    (src / "__pycache__").mkdir(parents=True, exist_ok=True)
    (src / "main.py").write_text(text)
    (src / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    return src


def test_prepare_copies_aside_without_making_it_current(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", keep=3)
    src = code(tmp_path, "v1", "print(1)\n")
    rel = store.prepare("echo", src)
    assert rel.id == 1 and rel.source == str(src) and not rel.current
    copy = Path(rel.path)
    assert (copy / "main.py").read_text() == "print(1)\n"
    assert not (copy / "__pycache__").exists()  # caches are not kept
    assert rel.run_dir() == copy
    assert store.all("echo") == [] and store.current("echo") is None
    (src / "main.py").write_text("print('edited')\n")
    assert (copy / "main.py").read_text() == "print(1)\n"  # the copy is private


def test_commit_discard_previous(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", keep=3)
    r1 = store.prepare("echo", code(tmp_path, "v1", "1"))
    store.commit("echo", r1, "1.0.0", ["say"])
    r2 = store.prepare("echo", code(tmp_path, "v2", "2"))
    assert r2.id == 2
    store.discard("echo", r2)  # a candidate that never served leaves nothing
    assert not Path(r2.path).exists()
    assert [r.id for r in store.all("echo")] == [1]
    r3 = store.prepare("echo", code(tmp_path, "v3", "3"))
    store.commit("echo", r3, "3.0.0", ["say", "shout"])
    current = store.current("echo")
    assert current is not None and (current.id, current.version) == (r3.id, "3.0.0")
    assert current.tools == ["say", "shout"]
    prev = store.previous("echo")
    assert prev is not None and prev.id == 1 and not prev.current
    store.discard("echo", r3)  # committed: discard keeps it
    assert Path(r3.path).exists()
    # Committing an earlier release again makes it current; previous walks back.
    store.commit("echo", r1, "1.0.0", ["say"])
    assert store.current("echo").id == 1  # type: ignore[union-attr]
    assert store.previous("echo") is None


def test_only_releases_kept_remain(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", keep=2)
    rels = []
    for i in range(4):
        rel = store.prepare("echo", code(tmp_path, f"v{i}", str(i)))
        store.commit("echo", rel, f"{i}.0", [])
        rels.append(rel)
    assert [r.id for r in store.all("echo")] == [3, 4]
    assert not Path(rels[0].path).exists() and not Path(rels[1].path).exists()
    assert Path(rels[3].path).exists()


def test_an_unreadable_index_starts_afresh(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases", keep=2)
    (tmp_path / "releases" / "echo").mkdir(parents=True)
    (tmp_path / "releases" / "echo" / "index.json").write_text("{not json")
    assert store.all("echo") == [] and store.previous("echo") is None
    rel = store.prepare("echo", code(tmp_path, "v1", "1"))
    store.commit("echo", rel, "1", [])
    assert [r.id for r in store.all("echo")] == [1]


def test_tree_digest_follows_content_not_caches(tmp_path: Path) -> None:
    src = code(tmp_path, "v1", "a")
    d1 = tree_digest(src)
    (src / "__pycache__" / "other.pyc").write_bytes(b"more junk")
    assert tree_digest(src) == d1
    (src / "main.py").write_text("b")
    assert tree_digest(src) != d1
