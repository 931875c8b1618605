"""Watch mode's pure parts: which changes of a batch count, and --watch
turning watch on for every skill."""

from __future__ import annotations

from pathlib import Path

from watchfiles import Change

from orchestrator._config import parse
from orchestrator._daemon.reload import watching_all
from orchestrator._daemon.watch import _lasting


def test_a_temporary_file_that_came_and_went_is_no_change(tmp_path: Path) -> None:
    main, gone, kept = tmp_path / "main.py", tmp_path / "sedAb12", tmp_path / "new.py"
    main.write_text("x")
    kept.write_text("y")
    changes = {
        (Change.deleted, str(main)),  # an editor's save by rename: deleted, then added
        (Change.added, str(main)),
        (Change.added, str(gone)),  # created and removed within the batch
        (Change.deleted, str(gone)),
        (Change.added, str(kept)),
        (Change.deleted, str(tmp_path / "old.py")),  # a real deletion counts
    }
    assert _lasting(changes) == {str(main), str(kept), str(tmp_path / "old.py")}


def test_watching_all_sets_watch_on_every_skill() -> None:
    table = {"path": "e", "command": ["x"]}
    cfg = parse({"skills": {"a": table, "b": {**table, "watch": False}}}, Path("/z/zskill.toml"))
    assert [sc.settings.watch for sc in watching_all(cfg).skills.values()] == [True, True]
    assert [sc.settings.watch for sc in cfg.skills.values()] == [False, False]
